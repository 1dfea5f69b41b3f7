"""Mailboxes and the mail they hold: folders, messages, locations, threads, attachments,
filings on CRM records, the outbox, and the sync ledger.

Identity rules (docs/product.md §3.4, docs/reliability.md S-05..S-09): within a mailbox a
message is one row per distinct content (sha256 of the raw bytes); each copy on the server is a
Location (folder, UIDVALIDITY, UID). Message-ID is a threading hint, never an identity: a forged
or missing one can neither hide nor double another message. Mailboxes never share Message rows
(privacy).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from crm.models import Account, Contact, Lead, Opportunity, Ticket

from .crypto import EncryptedTextField, Secret, encrypt


class Security(models.TextChoices):
    SSL = "ssl", "SSL/TLS"
    STARTTLS = "starttls", "STARTTLS"
    NONE = "none", "None (plain text)"


# The owner (or, for a shared mailbox, its admins) is warned this long before an OAuth sign-in
# is known to die (docs/product.md §2.9).
GRANT_WARNING = dt.timedelta(days=7)


class WatchState(models.TextChoices):
    """How new mail reaches a mailbox (docs/product.md §3.11)."""

    POLLING = "polling", "Polling"  # no gateway watches it: synced every refresh interval
    CONNECTING = "connecting", "Connecting"  # a gateway claimed it and is logging in
    LIVE = "live", "Live"  # a gateway holds IDLE/NOTIFY open: mail arrives within seconds
    RECONNECTING = "reconnecting", "Reconnecting"  # the connection broke; polled meanwhile


class PushGateway(models.Model):
    """One running `manage.py push_gateway` process. Its id is the fencing number of every
    watch it holds: a gateway declared dead (its lease expired) is deleted with its claims, and
    a late write from it matches no row (connector/sync/watches.py,
    docs/reliability.md P-15)."""

    name = models.CharField(max_length=200)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    sessions = models.PositiveIntegerField(default=0)
    live = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class SmtpAuth(models.TextChoices):
    SAME = "same", "The mailbox's login and password"
    SEPARATE = "separate", "A separate login and password"
    NONE = "none", "No login (a relay that accepts mail from this server)"


class Mailbox(models.Model):
    class Kind(models.TextChoices):
        SHARED = "shared", "Shared"
        PERSONAL = "personal", "Personal"

    class ConnectionType(models.TextChoices):
        IMAP = "imap", "IMAP and SMTP"
        GOOGLE = "google", "Google"
        MICROSOFT = "microsoft", "Microsoft"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        SYNCING = "syncing", "Syncing"
        ERROR = "error", "Error (retrying)"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"

    class Privacy(models.TextChoices):
        FULL = "full", "Everything"
        SUBJECT = "subject", "Subject and people"
        PEOPLE = "people", "People and time only"
        NOTHING = "nothing", "Nothing"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERSONAL)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="personal_mailboxes",
        help_text="Personal mailboxes only: the one user who reads it.",
    )
    granted_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="granted_mailboxes",
        help_text="Shared mailboxes: users who may read and send from it.",
    )
    granted_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="granted_mailboxes",
        help_text="Shared mailboxes: groups whose members may read and send from it.",
    )

    email_address = models.CharField(max_length=320, db_index=True)
    display_name = models.CharField(max_length=200, blank=True)
    connection_type = models.CharField(
        max_length=10, choices=ConnectionType.choices, default=ConnectionType.IMAP
    )
    login = models.CharField(
        max_length=320, blank=True, help_text="Login name, when it differs from the address."
    )
    password_encrypted = EncryptedTextField()
    oauth_access_token_encrypted = EncryptedTextField()
    oauth_refresh_token_encrypted = EncryptedTextField()
    oauth_expires_at = models.DateTimeField(null=True, blank=True)
    # Who signed in, when it is not the mailbox itself: a shared Microsoft 365 mailbox is opened
    # with an admin's sign-in, XOAUTH2 naming the shared mailbox as the user (docs/product.md
    # §2.9). Empty: the mailbox's own account.
    oauth_account = models.CharField(max_length=320, blank=True)
    # When the sign-in dies unless renewed: the refresh token's own expiry when the provider
    # says it, else the provider's documented lifetime (connector/transport/oauth.py); and the
    # expiry a warning was sent for, so each is told once (docs/product.md §2.9).
    oauth_grant_expires_at = models.DateTimeField(null=True, blank=True)
    oauth_expiry_warned_for = models.DateTimeField(null=True, blank=True)

    imap_host = models.CharField(max_length=253, blank=True)
    imap_port = models.PositiveIntegerField(default=993)
    imap_security = models.CharField(max_length=10, choices=Security.choices, default=Security.SSL)
    smtp_host = models.CharField(max_length=253, blank=True)
    smtp_port = models.PositiveIntegerField(default=465)
    smtp_security = models.CharField(max_length=10, choices=Security.choices, default=Security.SSL)
    # How the outgoing server is signed in to (docs/product.md §2.8): with the mailbox's own
    # login and password, with a login of its own, or not at all (a relay that accepts this
    # server's mail without one). OAuth mailboxes always use their tokens.
    smtp_auth = models.CharField(
        max_length=10, choices=SmtpAuth.choices, default=SmtpAuth.SAME, verbose_name="SMTP login"
    )
    smtp_login = models.CharField(
        max_length=320, blank=True, help_text="The SMTP server's own login name (separate login)."
    )
    smtp_password_encrypted = EncryptedTextField()
    allow_insecure_cert = models.BooleanField(
        default=False,
        help_text="Allow a certificate not signed by a trusted authority (off: certificates are "
        "verified).",
    )

    active_folders = models.JSONField(
        default=list, blank=True, help_text="Names of the folders to sync (Inbox and Sent first)."
    )
    sync_from = models.DateField(
        null=True, blank=True, help_text="Sync mail from this date on. Cannot change afterwards."
    )
    create_contacts = models.BooleanField(
        default=False, help_text="Create contacts for unknown senders."
    )
    create_tickets = models.BooleanField(
        default=False, help_text="Support mailbox: new mail opens a ticket."
    )
    forward_unplaced_to = models.CharField(
        max_length=320,
        blank=True,
        help_text="Internal support address to forward mail the rules cannot place to.",
    )
    refresh_interval = models.PositiveIntegerField(
        default=300, help_text="Seconds between two syncs."
    )
    signature = models.TextField(blank=True)
    # Reading is personal on a shared mailbox (docs/product.md §7.8): by default Relay keeps each
    # person's read state to itself and leaves \Seen on the server alone; a personal mailbox
    # writes it back. None = the default for the mailbox's kind (Mailbox.writes_seen).
    write_seen_to_server = models.BooleanField(
        null=True,
        blank=True,
        default=None,
        help_text="Write read/unread back to the mail server (\\Seen). Empty: off for shared "
        "mailboxes, on for personal ones.",
    )
    # docs/product.md §4.2: a support mailbox acknowledges each new ticket unless switched off.
    send_acknowledgements = models.BooleanField(
        default=True,
        help_text="Support mailbox: a new ticket sends the customer an acknowledgement quoting "
        "its reference.",
    )
    reply_sets_waiting = models.BooleanField(
        default=True,
        help_text="A reply sent by the team puts the conversation in Waiting (on the customer).",
    )
    # Subject and people unless the owner chooses otherwise: anyone who adds an address to a
    # record files past mail onto it (docs/product.md §4.5), so the default must not show the
    # text of personal mail to whoever did (docs/reliability.md C-13).
    privacy = models.CharField(
        max_length=10,
        choices=Privacy.choices,
        default=Privacy.SUBJECT,
        help_text="What other users see of this personal mailbox's mail on a record's Email tab.",
    )

    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    last_error = models.TextField(blank=True)
    # Why a person must reconnect when the server did not say so: someone changed where the
    # mailbox connects, and its secret was forgotten (docs/reliability.md C-21). Shown to the
    # owner until they reconnect.
    reconnect_reason = models.TextField(blank=True)
    # Which server refused the login when the state became "needs reconnect": "smtp" when a
    # send was refused, "imap" for the sync, "" when both (a revoked OAuth grant) or unknown.
    # The banners say which way mail stopped (docs/product.md §5.4).
    refused_by = models.CharField(max_length=4, blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True, db_index=True)
    sync_requested_at = models.DateTimeField(null=True, blank=True)
    first_sync_done = models.BooleanField(default=False)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # The sync lease: one sync per mailbox at a time across every worker and machine. The
    # generation is a fencing token: a holder whose lease expired (paused worker) finds its
    # generation changed and its late writes are refused (docs/reliability.md S-21).
    lease_holder = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_generation = models.PositiveBigIntegerField(default=0)
    # The push gateway's watch (docs/product.md §3.11): which gateway holds an IMAP connection
    # open on this mailbox, and how that connection is. Only the holder writes these
    # (connector/sync/watches.py); a gateway that stops renewing loses them all at once.
    watch_gateway = models.ForeignKey(
        "PushGateway",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mailboxes",
    )
    watch_state = models.CharField(
        max_length=12, choices=WatchState.choices, default=WatchState.POLLING
    )
    watch_error = models.CharField(max_length=500, blank=True)
    watch_changed_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email_address", "id"]
        verbose_name_plural = "mailboxes"
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="shared", owner__isnull=True)
                | Q(kind="personal", owner__isnull=False),
                name="inbox_mailbox_owner_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(imap_port__gte=1, imap_port__lte=65535)
                & Q(smtp_port__gte=1, smtp_port__lte=65535),
                name="inbox_mailbox_ports_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.email_address

    def get_absolute_url(self) -> str:
        return reverse("inbox:mailbox_health", args=[self.pk])

    def clean(self):
        errors = {}
        if self.kind == self.Kind.PERSONAL and not self.owner_id:
            errors["owner"] = "A personal mailbox needs an owner."
        if self.kind == self.Kind.SHARED and self.owner_id:
            errors["owner"] = "A shared mailbox has no owner: grant it to users and groups."
        if self.kind == self.Kind.PERSONAL and self.create_tickets:
            # Personal mail stays its owner's (docs/reliability.md C-22).
            errors["create_tickets"] = "Only a shared (support) mailbox opens tickets."
        if self.kind == self.Kind.PERSONAL and self.forward_unplaced_to:
            errors["forward_unplaced_to"] = "Only a shared mailbox forwards what it cannot place."
        if self.email_address:
            from crm.normalize import normalize_email

            try:
                self.email_address = normalize_email(self.email_address)
            except ValidationError as exc:
                errors["email_address"] = exc.messages
        if errors:
            raise ValidationError(errors)

    # Credentials: written encrypted, read only as a Secret that does not print itself.
    def set_password(self, raw: str) -> None:
        self.password_encrypted = encrypt(raw) if raw else ""

    @property
    def password(self) -> Secret:
        return Secret(self.password_encrypted)

    def set_smtp_password(self, raw: str) -> None:
        self.smtp_password_encrypted = encrypt(raw) if raw else ""

    @property
    def smtp_password(self) -> Secret:
        return Secret(self.smtp_password_encrypted)

    def set_oauth_tokens(
        self, *, access_token: str, refresh_token: str | None, expires_at: dt.datetime | None
    ) -> None:
        self.oauth_access_token_encrypted = encrypt(access_token) if access_token else ""
        if refresh_token:
            self.oauth_refresh_token_encrypted = encrypt(refresh_token)
        self.oauth_expires_at = expires_at

    @property
    def grant_expiring_soon(self) -> bool:
        """The OAuth sign-in dies within GRANT_WARNING (docs/product.md §2.9)."""
        return bool(
            self.oauth_grant_expires_at
            and self.oauth_grant_expires_at <= timezone.now() + GRANT_WARNING
        )

    @property
    def login_name(self) -> str:
        return self.login or self.email_address

    @property
    def writes_seen(self) -> bool:
        """Whether read/unread done in Relay is written to the server (docs/product.md §7.8)."""
        if self.write_seen_to_server is not None:
            return self.write_seen_to_server
        return self.kind == self.Kind.PERSONAL

    @property
    def reads_per_user(self) -> bool:
        """Shared mailboxes keep read/unread per user; a personal one has one reader."""
        return self.kind == self.Kind.SHARED


ENCRYPTED_FIELDS = {
    Mailbox: [
        "password_encrypted",
        "smtp_password_encrypted",
        "oauth_access_token_encrypted",
        "oauth_refresh_token_encrypted",
    ]
}


class PrimaryMailbox(models.Model):
    """Which of a user's mailboxes comes first and sends by default: one per user (the
    primary key is the user), and it may be a personal mailbox or a granted shared one."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="primary_mailbox",
    )
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="primary_for")

    def __str__(self) -> str:
        return f"{self.user} → {self.mailbox}"


class Folder(models.Model):
    class SpecialUse(models.TextChoices):
        NONE = "", "Folder"
        INBOX = "inbox", "Inbox"
        SENT = "sent", "Sent"
        DRAFTS = "drafts", "Drafts"
        TRASH = "trash", "Trash"
        JUNK = "junk", "Junk"
        ARCHIVE = "archive", "Archive"
        ALL = "all", "All mail"
        FLAGGED = "flagged", "Flagged"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(max_length=1000, help_text="The server's name (decoded UTF-8).")
    delimiter = models.CharField(max_length=4, blank=True)
    special_use = models.CharField(max_length=10, choices=SpecialUse.choices, blank=True)
    is_active = models.BooleanField(default=False)
    is_selectable = models.BooleanField(default=True)
    exists_on_server = models.BooleanField(default=True)
    is_local = models.BooleanField(
        default=False, help_text="Holds imported mail (.mbox/.eml); never synced with a server."
    )
    uidvalidity = models.PositiveBigIntegerField(null=True, blank=True)
    last_uid = models.PositiveBigIntegerField(default=0)
    uidnext = models.PositiveBigIntegerField(null=True, blank=True)
    highest_modseq = models.PositiveBigIntegerField(null=True, blank=True)
    messages_on_server = models.PositiveIntegerField(default=0)
    first_sync_total = models.PositiveIntegerField(default=0)
    first_sync_done = models.PositiveIntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    missed_listings = models.PositiveSmallIntegerField(
        default=0,
        help_text="Syncs in a row whose LIST left the folder out; it is gone only after two and "
        "a failed STATUS (docs/reliability.md S-31).",
    )
    history_below_uid = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="After a UIDVALIDITY reset: UIDs below this one were on the server when the "
        "reset was noticed, so mail stored from them is filed as history (no tickets, no "
        "acknowledgements; docs/reliability.md S-01).",
    )

    class Meta:
        ordering = ["mailbox", "name"]
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "name"], name="inbox_folder_name_once")
        ]

    def __str__(self) -> str:
        return self.name


class Thread(models.Model):
    """A conversation: the messages of one mailbox that answer each other, with an owner and a
    state (docs/product.md §7.8)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WAITING = "waiting", "Waiting"
        DONE = "done", "Done"
        SNOOZED = "snoozed", "Snoozed"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="threads")
    subject = models.CharField(max_length=500, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_threads",
    )
    # Snoozed until then; it counts as Open from that moment even before the beat wakes it.
    snoozed_until = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last marked Done (time to close)."
    )

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(fields=["mailbox", "status"], name="inbox_thread_mailbox_status"),
            models.Index(
                fields=["assignee"],
                condition=Q(assignee__isnull=False),
                name="inbox_thread_assignee_idx",
            ),
            models.Index(
                fields=["snoozed_until"],
                condition=Q(status="snoozed"),
                name="inbox_thread_snoozed_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


class ThreadEvent(models.Model):
    """Who changed what on a conversation: its timeline, shown to the team and never sent to
    the customer (docs/product.md §7.8)."""

    class Kind(models.TextChoices):
        ASSIGNED = "assigned", "Assigned"
        UNASSIGNED = "unassigned", "Unassigned"
        STATUS = "status", "Status changed"
        REOPENED = "reopened", "Reopened by the customer"
        WOKE = "woke", "Woke from snooze"

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who did it; empty when Relay did it (a reply came in, a snooze ended).",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # {"status": "done"}, {"assignee": 7, "assignee_name": "Lukas"}, {"until": "..."},
    # {"from": "ana@example.com"}: what the timeline needs, even after a user is gone.
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["thread", "created_at"], name="inbox_event_thread_time")]


class ThreadRead(models.Model):
    """How far one user has read one conversation of a shared mailbox: every message stored
    after `read_up_to` (a message id: ids grow as mail is stored) is unread for them. No row:
    the server's \\Seen decides (mail read in another client, history), docs/product.md §7.8."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="thread_reads"
    )
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="reads")
    read_up_to = models.BigIntegerField(default=0)
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["thread", "user"], name="inbox_thread_read_once")
        ]


class Message(models.Model):
    # Indexes: every index costs each stored message an insert (the initial sync's PostgreSQL
    # time, bench/sync.py), so there is none that another covers (mailbox: the unique
    # (mailbox, sha256) and (mailbox, date) lead with it) and no varchar_pattern_ops twin
    # (db_index=True on a CharField adds one for LIKE 'x%', which nothing here asks).
    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    thread = models.ForeignKey(
        Thread, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    sha256 = models.CharField(max_length=64, help_text="Hash of the raw bytes: the identity.")
    size = models.PositiveBigIntegerField(default=0)
    raw_file = models.CharField(
        max_length=300, blank=True, help_text="Storage path of the compressed raw source."
    )
    message_id = models.CharField(max_length=998, blank=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    subject = models.CharField(max_length=1000, blank=True)
    from_name = models.CharField(max_length=500, blank=True)
    from_address = models.CharField(max_length=320, blank=True)
    date = models.DateTimeField(null=True, blank=True, db_index=True)
    internal_date = models.DateTimeField(null=True, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    snippet = models.CharField(max_length=300, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    has_attachments = models.BooleanField(default=False)
    is_auto_reply = models.BooleanField(default=False)
    is_bounce = models.BooleanField(default=False)
    is_list = models.BooleanField(default=False)
    is_outgoing = models.BooleanField(default=False)
    too_large = models.BooleanField(default=False)
    parse_defects = models.JSONField(default=list, blank=True)
    on_server = models.BooleanField(
        default=True, help_text="False once every copy was expunged: the message stays filed."
    )
    seen = models.BooleanField(default=False)
    flagged = models.BooleanField(default=False)
    # Set by the filing pass in the same transaction as its filings. Still empty a while after
    # the message was stored means its filing task was lost: the beat sweep files it then.
    filed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "sha256"], name="inbox_message_content_once")
        ]
        indexes = [
            models.Index(fields=["mailbox", "-date"], name="inbox_msg_mailbox_date"),
            models.Index(fields=["message_id"], name="inbox_msg_message_id"),
            models.Index(fields=["in_reply_to"], name="inbox_msg_in_reply_to"),
            models.Index(fields=["from_address"], name="inbox_msg_from_address"),
        ]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


class MessageAddress(models.Model):
    """Every address of a message, normalised, one row each: matching looks them up in bulk."""

    class Role(models.TextChoices):
        FROM = "from", "From"
        SENDER = "sender", "Sender"
        REPLY_TO = "reply_to", "Reply-To"
        TO = "to", "To"
        CC = "cc", "Cc"
        BCC = "bcc", "Bcc"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="addresses")
    role = models.CharField(max_length=10, choices=Role.choices)
    address = models.CharField(max_length=320)
    name = models.CharField(max_length=500, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["message", "role", "position"]
        # Exact lookups only (matching, filing): no varchar_pattern_ops twin.
        indexes = [models.Index(fields=["address"], name="inbox_msgaddr_address")]


class Location(models.Model):
    """One copy of a message on the server: (folder, UIDVALIDITY, UID) and its flags."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="locations")
    # No index of its own: the unique (folder, uidvalidity, uid) leads with it.
    folder = models.ForeignKey(
        Folder, on_delete=models.CASCADE, related_name="locations", db_index=False
    )
    uidvalidity = models.PositiveBigIntegerField()
    uid = models.PositiveBigIntegerField()
    flags = models.JSONField(default=list, blank=True)
    modseq = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["folder", "uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["folder", "uidvalidity", "uid"], name="inbox_location_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.folder}:{self.uidvalidity}:{self.uid}"


class PendingChange(models.Model):
    """A change made in the CRM that the sync engine writes to the server (two-way sync)."""

    class Action(models.TextChoices):
        MARK_READ = "mark_read", "Mark read"
        MARK_UNREAD = "mark_unread", "Mark unread"
        FLAG = "flag", "Flag"
        UNFLAG = "unflag", "Unflag"
        MOVE = "move", "Move"
        DELETE = "delete", "Delete (to Trash)"

    location = models.ForeignKey(
        Location, null=True, on_delete=models.SET_NULL, related_name="pending_changes"
    )
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="pending_changes")
    folder_name = models.CharField(max_length=1000)
    uidvalidity = models.PositiveBigIntegerField()
    uid = models.PositiveBigIntegerField()
    action = models.CharField(max_length=20, choices=Action.choices)
    target_folder = models.CharField(max_length=1000, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True, db_index=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]


class AttachmentBlob(models.Model):
    """Attachment content, stored once by hash whatever the number of messages carrying it."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.PositiveBigIntegerField()
    file = models.CharField(max_length=300, help_text="Storage path (a generated name).")
    created_at = models.DateTimeField(auto_now_add=True)


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    blob = models.ForeignKey(AttachmentBlob, on_delete=models.PROTECT, related_name="uses")
    filename = models.CharField(max_length=500, blank=True, help_text="As sent: metadata only.")
    content_type = models.CharField(max_length=200, default="application/octet-stream")
    content_id = models.CharField(max_length=500, blank=True)
    is_inline = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["message", "position"]


def _record_link(model) -> models.ForeignKey:
    """A Filing's link to one kind of CRM record."""
    return models.ForeignKey(
        model,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="filings",
        db_index=False,
    )


class Filing(models.Model):
    """A message filed on one CRM record, with the rule that did it and the evidence.

    A person's filing is never undone by automation; an unlinked filing is kept (with
    `unlinked_at`) so automation never files the message there again."""

    class Rule(models.TextChoices):
        THREAD = "thread", "Reply in a filed thread"
        TOKEN = "token", "Reply to mail sent from this record"
        SUBJECT_REFERENCE = "subject_reference", "Reference in subject"
        SENDER = "sender", "Sender is a contact"
        RECIPIENT = "recipient", "Recipient is a contact"
        LEAD = "lead", "Sender is a lead"
        ACCOUNT_OF_CONTACT = "account_of_contact", "Contact's account"
        DOMAIN = "domain", "Sender's domain"
        CREATED_CONTACT = "created_contact", "New contact from sender"
        NEW_TICKET = "new_ticket", "Opened a ticket"
        SENT_FROM_RECORD = "sent_from_record", "Sent from this record"
        MANUAL = "manual", "Filed by hand"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="filings")
    record_type = models.CharField(max_length=20)
    # Exactly one of these is set (see the check constraint). Each has a partial index below
    # instead of a full one: a full index would hold a NULL for four rows in five.
    account = _record_link(Account)
    contact = _record_link(Contact)
    lead = _record_link(Lead)
    ticket = _record_link(Ticket)
    opportunity = _record_link(Opportunity)
    rule = models.CharField(max_length=30, choices=Rule.choices)
    evidence = models.CharField(max_length=1000, blank=True)
    by_person = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="filings_made",
        db_index=False,  # mostly empty: a partial index below
    )
    created_at = models.DateTimeField(auto_now_add=True)
    unlinked_at = models.DateTimeField(null=True, blank=True)
    unlinked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="filings_unlinked",
        db_index=False,  # mostly empty: a partial index below
    )
    # Records that matched as well as the chosen one (equal candidates: the earliest created
    # wins), as [{"record_type": "contact", "id": 7}, ...], so a person can re-file
    # (docs/product.md §4.6).
    alternatives = models.JSONField(default=list, blank=True)
    # Our receiving server's Authentication-Results said the sender failed SPF/DKIM/DMARC:
    # the filing stands but is shown as "unverified sender" (docs/reliability.md C-15).
    sender_unverified = models.BooleanField(default=False)

    RECORD_FIELDS = ("account", "contact", "lead", "ticket", "opportunity")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        record_type="account",
                        account__isnull=False,
                        contact__isnull=True,
                        lead__isnull=True,
                        ticket__isnull=True,
                        opportunity__isnull=True,
                    )
                    | Q(
                        record_type="contact",
                        contact__isnull=False,
                        account__isnull=True,
                        lead__isnull=True,
                        ticket__isnull=True,
                        opportunity__isnull=True,
                    )
                    | Q(
                        record_type="lead",
                        lead__isnull=False,
                        account__isnull=True,
                        contact__isnull=True,
                        ticket__isnull=True,
                        opportunity__isnull=True,
                    )
                    | Q(
                        record_type="ticket",
                        ticket__isnull=False,
                        account__isnull=True,
                        contact__isnull=True,
                        lead__isnull=True,
                        opportunity__isnull=True,
                    )
                    | Q(
                        record_type="opportunity",
                        opportunity__isnull=False,
                        account__isnull=True,
                        contact__isnull=True,
                        lead__isnull=True,
                        ticket__isnull=True,
                    )
                ),
                name="inbox_filing_exactly_one_record",
            ),
        ] + [
            models.UniqueConstraint(
                fields=["message", field],
                condition=Q(**{f"{field}__isnull": False}),
                name=f"inbox_filing_{field}_once",
            )
            for field in ("account", "contact", "lead", "ticket", "opportunity")
        ]
        # Each filing names one record of five, and few are made or unlinked by a person: an
        # index on each column would hold a NULL for almost every row and cost an insert each.
        # Partial indexes keep lookups by record (Email tab, deletes) and skip the NULLs; they
        # were most of the cost of filing a message (bench/matching.py).
        indexes = [
            models.Index(
                fields=[field],
                condition=Q(**{f"{field}__isnull": False}),
                name=f"inbox_filing_{field}_idx",
            )
            for field in (
                "account",
                "contact",
                "lead",
                "ticket",
                "opportunity",
                "by_person",
                "unlinked_by",
            )
        ]

    @property
    def record(self):
        return getattr(self, self.record_type)

    @property
    def is_active(self) -> bool:
        return self.unlinked_at is None


class TriageEntry(models.Model):
    class Reason(models.TextChoices):
        UNFILED = "unfiled", "No rule placed it"
        AMBIGUOUS_DOMAIN = "ambiguous_domain", "Ambiguous domain"
        FOREIGN_REFERENCE = "foreign_reference", "Reference from a non-participant"
        HELD = "held", "Could not be read"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="triage_entries")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    details = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "reason"],
                condition=Q(resolved_at__isnull=True),
                name="inbox_triage_open_once",
            )
        ]


class OutboxEntry(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        RETRYING = "retrying", "Retrying"
        FAILED = "failed", "Failed"
        VERIFY = "verify", "Outcome unknown: verifying"
        # A person cancelled it before any worker took it (docs/product.md §5.4).
        CANCELLED = "cancelled", "Cancelled"
        # Held for RELAY_UNDO_SEND_SECONDS after Send so that Undo can take it back; no worker
        # claims it until next_attempt_at (docs/product.md §5.5, docs/reliability.md M-12).
        SCHEDULED = "scheduled", "Scheduled: can still be undone"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="outbox")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outbox_entries",
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.QUEUED, db_index=True
    )
    message_id = models.CharField(max_length=998, unique=True)
    from_address = models.CharField(max_length=320)
    to = models.JSONField(default=list)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=1000, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    reply_to_message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    record_type = models.CharField(max_length=20, blank=True)
    record_id = models.PositiveBigIntegerField(null=True, blank=True)
    purpose = models.CharField(
        max_length=20,
        default="compose",
        help_text="compose, acknowledgement, forward_unplaced, test",
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    appended_to_sent = models.BooleanField(default=False)
    # A worker storing and APPENDing a sent entry holds it until then, so a second task for the
    # same entry never appends a second copy (connector/outbound/sent.py, docs/reliability.md
    # S-23).
    finishing_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Sending (docs/product.md §5). The exact bytes sent are kept (raw_file, in file storage) from
    # the first attempt on: every retry, the Sent-folder APPEND and the stored Message use the same
    # bytes, so the Sent-folder sync recognises the copy by its content hash
    # (docs/reliability.md S-23).
    raw_file = models.CharField(max_length=300, blank=True)
    sent_message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outbox_entries",
        help_text="The message this entry became once sent.",
    )
    # [{"blob": sha256, "filename": ..., "content_type": ...}]: new uploads and a forwarded
    # original's attachments, stored once by hash (AttachmentBlob).
    attachments = models.JSONField(default=list, blank=True)
    # {"addr@example.com": "accepted" | "refused: 550 ..."} after the SMTP transaction
    # (docs/reliability.md M-04).
    recipient_status = models.JSONField(default=dict, blank=True)
    # Edit and resend (docs/product.md §5.4): the corrected mail is a new entry with a new
    # Message-ID; the failed one stays, pointing at it, and is no longer offered for action.
    replaced_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "outbox entries"
        indexes = [models.Index(fields=["created_by", "state"], name="outbox_by_user_state")]


class Draft(models.Model):
    """What a person is writing, saved as they type (docs/product.md §5.5): at most one per
    user and conversation, any number of new messages. Private to its author: every read and
    write filters on `user` (inbox/selectors/drafts.py, inbox/services/drafts.py)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drafts"
    )
    mailbox = models.ForeignKey(
        Mailbox, null=True, blank=True, on_delete=models.CASCADE, related_name="drafts"
    )
    thread = models.ForeignKey(
        Thread, null=True, blank=True, on_delete=models.CASCADE, related_name="drafts"
    )
    # The message answered or forwarded (any message of the conversation, not only the last).
    reply_to_message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts"
    )
    mode = models.CharField(max_length=10, blank=True)  # "", reply, reply_all, forward
    record_type = models.CharField(max_length=20, blank=True)
    record_id = models.PositiveBigIntegerField(null=True, blank=True)
    to = models.TextField(blank=True)
    cc = models.TextField(blank=True)
    bcc = models.TextField(blank=True)
    subject = models.CharField(max_length=1000, blank=True)
    # Already sanitised (inbox/services/drafts.py): never the browser's HTML as it came.
    body_html = models.TextField(blank=True)
    body_text = models.TextField(blank=True)
    # The same references as OutboxEntry.attachments: uploads stored once by hash.
    attachments = models.JSONField(default=list, blank=True)
    # Sent and held for Undo (docs/product.md §5.5): hidden while the entry is "scheduled",
    # deleted when it is released to the worker, back in the editor when it is undone (the
    # entry is then deleted and this becomes null again).
    sent_entry = models.OneToOneField(
        "OutboxEntry", null=True, blank=True, on_delete=models.SET_NULL, related_name="draft"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "thread"],
                condition=models.Q(thread__isnull=False, sent_entry__isnull=True),
                name="inbox_draft_one_per_conversation",
            )
        ]
        indexes = [models.Index(fields=["user", "-updated_at"], name="inbox_draft_user_recent")]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


class LedgerEntry(models.Model):
    """What the sync did with each UID it saw: every one is accounted for
    (docs/product.md §3.3)."""

    class Outcome(models.TextChoices):
        STORED = "stored", "Stored"
        DUPLICATE = "duplicate", "Duplicate"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed (will retry)"
        HELD = "held", "Held"

    # Indexed by (mailbox, outcome) and by the unique (folder, uidvalidity, uid): the sync
    # writes a row for every UID it sees, so no index another one covers.
    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.CASCADE, related_name="ledger", db_index=False
    )
    folder = models.ForeignKey(
        Folder, on_delete=models.CASCADE, related_name="ledger", db_index=False
    )
    uidvalidity = models.PositiveBigIntegerField()
    uid = models.PositiveBigIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    parse_failures = models.PositiveIntegerField(
        default=0, help_text="Attempts that failed in the parse: three hold the message."
    )
    next_retry_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set while a transient failure (network, server, storage) waits to be "
        "retried; such a message is never held (docs/reliability.md S-29).",
    )
    raw_file = models.CharField(max_length=300, blank=True)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="ledger_entries"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["mailbox", "outcome"], name="inbox_ledger_mailbox_outcome")]
        constraints = [
            models.UniqueConstraint(
                fields=["folder", "uidvalidity", "uid"], name="inbox_ledger_uid_once"
            )
        ]


class ExclusionPattern(models.Model):
    """A glob on a sender's address or domain (`*@noreply.*`, `mailer-daemon@*`,
    `*.example.org`): matching senders never become contacts or tickets
    (docs/product.md §4.1 rule 5)."""

    pattern = models.CharField(max_length=320, unique=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pattern"]

    def __str__(self) -> str:
        return self.pattern

    def save(self, *args, **kwargs):
        self.pattern = self.pattern.strip().lower()
        super().save(*args, **kwargs)

    @staticmethod
    def first_match(address: str, patterns) -> str | None:
        """The first pattern matching the address or its domain (fnmatch: `*`, `?`, `[..]`)."""
        from fnmatch import fnmatchcase

        address = (address or "").lower()
        domain = address.rpartition("@")[2]
        for pattern in patterns:
            # A pattern without "@" is about the domain (`*.example.org`); with one, the address.
            target = address if "@" in pattern else domain
            if fnmatchcase(target, pattern):
                return pattern
        return None


class MatchingSettings(models.Model):
    """The one row of matching settings (pk 1): created with the defaults on first read."""

    class Precedence(models.TextChoices):
        CONTACT_FIRST = "contact_first", "Contact first"
        LEAD_FIRST = "lead_first", "Lead first (as vtiger)"

    precedence = models.CharField(
        max_length=20,
        choices=Precedence.choices,
        default=Precedence.CONTACT_FIRST,
        help_text="When an address belongs to both a lead and a contact, which one mail is "
        "filed on.",
    )
    acknowledgements_per_hour = models.PositiveSmallIntegerField(
        default=3, help_text="At most this many ticket acknowledgements per sender per hour."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "matching settings"

    def __str__(self) -> str:
        return "Matching settings"

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> MatchingSettings:
        settings_row, _ = cls.objects.get_or_create(pk=1)
        return settings_row


class UserPreferences(models.Model):
    """A user's own inbox settings (one row per user, made with the defaults on first read)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="inbox_preferences",
    )
    emails_per_page = models.PositiveSmallIntegerField(
        default=25,
        help_text="How many conversations the inbox shows on one page.",
    )

    class Density(models.TextChoices):
        COMFORTABLE = "comfortable", "Comfortable"
        COMPACT = "compact", "Compact"

    # The conversation list's rows: two lines with the snippet, or one line each
    # (docs/product.md §7.2).
    density = models.CharField(
        max_length=12,
        choices=Density.choices,
        default=Density.COMFORTABLE,
        help_text="How tall the inbox's rows are.",
    )

    EMAILS_PER_PAGE_CHOICES = (10, 25, 50, 100)

    class Meta:
        verbose_name = verbose_name_plural = "user preferences"
        constraints = [
            models.CheckConstraint(
                condition=Q(emails_per_page__gte=5, emails_per_page__lte=200),
                name="inbox_preferences_page_size_sane",
            )
        ]

    def __str__(self) -> str:
        return f"Preferences of {self.user}"


class EmailApiSender(models.Model):
    """An address allowed to send Email API documents to a support mailbox (docs/product.md §6).
    Mail from anyone else is ordinary mail, whatever its body looks like."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="api_senders")
    address = models.CharField(max_length=320)
    note = models.CharField(max_length=200, blank=True)
    # A second factor beside the sender's authenticated From (docs/reliability.md C-17): when
    # set, every document must carry it in <request secret="...">. Only its hash is kept
    # (django.contrib.auth.hashers), so it is never shown again once set.
    secret_hash = models.CharField(max_length=256, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mailbox", "address"]
        verbose_name = "Email API sender"
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "address"], name="inbox_api_sender_once")
        ]

    def __str__(self) -> str:
        return self.address

    def set_secret(self, secret: str) -> None:
        """Keep only a salted hash of `secret` ("" removes it)."""
        self.secret_hash = make_password(secret) if secret else ""

    def secret_matches(self, given: str) -> bool:
        """Whether `given` is the secret (the hasher compares in constant time)."""
        return bool(self.secret_hash and given) and check_password(given, self.secret_hash)

    def save(self, *args, **kwargs):
        from crm.normalize import normalize_email

        self.address = normalize_email(self.address)
        super().save(*args, **kwargs)


class EmailApiRequest(models.Model):
    """One Email API document received, what became of it, and the reply it got. Unique per
    message: a filing task run twice (redelivery, the lost-task sweep) applies it once."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        REJECTED = "rejected", "Rejected (nothing saved)"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="api_request")
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="api_requests")
    sender = models.CharField(max_length=320)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    # [{"action": "created", "record_type": "ticket", "id": 7, "label": "TKT-1042"}, ...]
    results = models.JSONField(default=list, blank=True)
    errors = models.JSONField(default=list, blank=True)
    reply = models.ForeignKey(
        OutboxEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "Email API request"


class ImportJobManager(models.Manager):
    def get_queryset(self):
        # The pages name who uploaded each import: one query for the list, not one a row.
        return super().get_queryset().select_related("created_by")


class ImportJob(models.Model):
    """One upload of .mbox/.eml files into a mailbox's "Imported" folder and its progress
    (docs/product.md §3.10). The files wait under MEDIA_ROOT (`directory`) until a worker has
    read them; the counts move after every batch, so the page can show them while it runs."""

    class State(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Stopped"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_names = models.JSONField(default=list, help_text="The names the files were uploaded as.")
    directory = models.CharField(
        max_length=300, blank=True, help_text="Where the uploaded files wait (under MEDIA_ROOT)."
    )
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes uploaded.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Messages found in the files.")
    done = models.PositiveIntegerField(default=0, help_text="Messages read so far.")
    stored = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(
        default=0, help_text="Already in the mailbox (same bytes): nothing added."
    )
    failed = models.PositiveIntegerField(
        default=0, help_text="Could not be read: kept with their raw source, on the health page."
    )
    errors = models.JSONField(
        default=list, blank=True, help_text="What went wrong with which message, in plain words."
    )
    error = models.TextField(blank=True, help_text="Why the whole import stopped, if it did.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When its task was last enqueued, and when its worker last showed progress: a job is run
    # by one worker at a time, and taken over only once that worker has gone quiet
    # (connector/sync/importer.py).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = ImportJobManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["mailbox", "-created_at"], name="inbox_import_mailbox")]

    def __str__(self) -> str:
        return f"import {self.pk} into {self.mailbox_id}"

    @classmethod
    def max_bytes(cls) -> int:
        """The largest upload, all files together (RELAY_IMPORT_MAX_BYTES)."""
        return settings.RELAY_IMPORT_MAX_BYTES

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)

    @property
    def percent(self) -> int:
        if self.finished:
            return 100
        return min(99, self.done * 100 // self.total) if self.total else 0
