"""Services for mailboxes: the primary choice, pause and resume, Sync now, the connect wizard,
Reconnect, the options, finishing a Google or Microsoft connection, retrying held messages and
the outgoing-server tests. Keyword-only and transactional; bad input raises ValidationError
before anything is saved.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import dateformat, timezone

from crm.normalize import normalize_email

from .. import ports
from ..models import LedgerEntry, Mailbox, OutboxEntry, PrimaryMailbox, SmtpAuth
from ..permissions import can_manage_mailbox, readable_mailboxes
from ..signals import mailbox_needs_reconnect
from .composing import outbox_compose

audit = logging.getLogger("relay.audit")


@transaction.atomic
def mailbox_set_primary(*, user, mailbox: Mailbox) -> PrimaryMailbox:
    """Make `mailbox` the user's primary one (one per user: the row is keyed by the user)."""
    if not readable_mailboxes(user).filter(pk=mailbox.pk).exists():
        raise ValidationError("You can only make one of your own mailboxes primary.")
    primary, _ = PrimaryMailbox.objects.update_or_create(user=user, defaults={"mailbox": mailbox})
    return primary


def mailboxes_for_user(*, user) -> list[Mailbox]:
    """The user's readable mailboxes, primary first, then by address."""
    mailboxes = list(readable_mailboxes(user).order_by("email_address", "pk"))
    primary_id = (
        PrimaryMailbox.objects.filter(user=user).values_list("mailbox_id", flat=True).first()
    )
    mailboxes.sort(key=lambda m: m.pk != primary_id)
    return mailboxes


# What Sync now answers while the site's mail switch is off (docs/product.md §8.1).
MAIL_OFF_SYNC = "Mail is switched off for the whole site: nothing is synced until it is on again."


def mailbox_request_sync(*, mailbox: Mailbox) -> None:
    """ "Sync now": record the wish (the beat tick honours it even if the signal is lost)."""
    Mailbox.objects.filter(pk=mailbox.pk).update(sync_requested_at=timezone.now())
    ports.mail().sync_soon(mailbox.pk)


def mailbox_pause(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.PAUSED)


def mailbox_unsyncable(*, mailbox: Mailbox) -> str:
    """Why this mailbox cannot sync at all, in the words its manager sees; "" when it can. A
    demo mailbox points at a reserved `.invalid` host (RFC 2606) and has no password: resumed,
    it would show "Syncing" while every attempt fails (docs/reliability.md C-36)."""
    host = (mailbox.imap_host or "").strip().lower().rstrip(".")
    if not host or host == "invalid" or host.endswith(".invalid"):
        return (
            f"{mailbox.email_address} has no mail server behind it (a demo mailbox: its mail was "
            "loaded, not synced). Connect a real mailbox under Settings, or give this one a "
            "real server and password, then resume it."
        )
    if mailbox.connection_type == Mailbox.ConnectionType.IMAP:
        has_secret = bool(mailbox.password_encrypted)
    else:
        has_secret = bool(
            mailbox.oauth_refresh_token_encrypted or mailbox.oauth_access_token_encrypted
        )
    if not has_secret:
        return f"{mailbox.email_address} has no password or sign-in stored: reconnect it first."
    return ""


def mailbox_resume(*, mailbox: Mailbox) -> None:
    """Resume a paused mailbox; refused, with the reason, when it cannot sync at all."""
    reason = mailbox_unsyncable(mailbox=mailbox)
    if reason:
        raise ValidationError(reason)
    Mailbox.objects.filter(pk=mailbox.pk, state=Mailbox.State.PAUSED).update(
        state=Mailbox.State.ACTIVE, next_sync_at=None, consecutive_failures=0
    )


def mailbox_send_test_email(*, user, mailbox: Mailbox, to: str):
    """SMTP settings, "Send test email": one message to an address the user gives."""
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("Only the mailbox's owner or an admin can send a test email.")
    return outbox_compose(
        user=None,
        mailbox=mailbox,
        to=to,
        subject="Relay CRM test email",
        text_body=(
            f"This is a test email from Relay CRM, sent from {mailbox.email_address} through "
            f"{mailbox.smtp_host}:{mailbox.smtp_port}.\nIf you can read it, sending works.\n"
        ),
        purpose="test",
        include_signature=False,
    )


def mailbox_test_smtp(*, user, mailbox: Mailbox) -> str | None:
    """SMTP settings, "Test SMTP connection": log in and out now. None when it worked, else
    the fixed user-facing message of the failure's category (docs/reliability.md C-08)."""
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("Only the mailbox's owner or an admin can test its settings.")
    return ports.mail().test_smtp(mailbox)


def _provider_settings(provider: str) -> dict:
    providers = settings.RELAY_OAUTH_PROVIDERS
    if provider not in providers:
        raise ValidationError(f"Unknown OAuth provider {provider!r}.")
    return providers[provider]


@transaction.atomic
def mailbox_oauth_connected(
    *,
    user,
    provider: str,
    email: str,
    access_token: str,
    refresh_token: str,
    expires_at,
    mailbox: Mailbox | None = None,
    shared_address: str = "",
    grant_expires_at=None,
) -> Mailbox:
    """Save what an OAuth sign-in returned. With `mailbox` (Reconnect) the account must be
    the same address: another one is refused and nothing changes. Without, a new personal
    mailbox is created paused, for the connect wizard to pick folders and the sync-from date
    (or, if the user has one with that address, it is reconnected).

    `shared_address`: an admin connects (or, with `mailbox`, reconnects) the shared mailbox of
    that address (docs/product.md §2.9). With Microsoft the signed-in account may be another
    one: its token opens the shared mailbox, XOAUTH2 naming the shared address as the user (the
    server refuses a token without FullAccess at the first sync). Google opens no mailbox but
    the account's own, so there the shared mailbox's account must be the one signing in."""

    config = _provider_settings(provider)
    email = normalize_email(email)
    tokens = dict(access_token=access_token, refresh_token=refresh_token, expires_at=expires_at)
    if mailbox is None and shared_address:
        return _shared_oauth_connect(
            user=user,
            provider=provider,
            config=config,
            account=email,
            address=shared_address,
            tokens=tokens,
            grant_expires_at=grant_expires_at,
        )
    if mailbox is None:
        mailbox = (
            Mailbox.objects.filter(kind=Mailbox.Kind.PERSONAL, owner=user, email_address=email)
            .order_by("pk")
            .first()
        )
    if mailbox is not None:
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        if not can_manage_mailbox(user, mailbox):
            raise PermissionDenied("You may not reconnect this mailbox.")
        if mailbox.connection_type != provider:
            raise ValidationError(
                f"This mailbox connects with {mailbox.get_connection_type_display()}, not "
                f"{provider}; nothing was changed."
            )
        delegated = (
            mailbox.kind == Mailbox.Kind.SHARED
            and provider == Mailbox.ConnectionType.MICROSOFT
            and normalize_email(mailbox.email_address) != email
        )
        if normalize_email(mailbox.email_address) != email and not delegated:
            raise ValidationError(
                f"You signed in as {email}, but this mailbox is {mailbox.email_address}. "
                f"Sign in with {mailbox.email_address} to reconnect it; nothing was changed."
            )
        mailbox.set_oauth_tokens(**tokens)
        mailbox.reconnect_reason = ""
        mailbox.oauth_account = email if delegated else ""
        mailbox.oauth_grant_expires_at = grant_expires_at
        mailbox.oauth_expiry_warned_for = None
        fields = ["oauth_access_token_encrypted", "oauth_refresh_token_encrypted"]
        fields += ["oauth_expires_at", "reconnect_reason", "updated_at"]
        fields += ["oauth_account", "oauth_grant_expires_at", "oauth_expiry_warned_for"]
        if mailbox.state in (Mailbox.State.NEEDS_RECONNECT, Mailbox.State.ERROR):
            # Folder cursors are untouched: the next sync carries on where it stopped, so
            # nothing is imported twice (docs/product.md §2.5).
            mailbox.state = Mailbox.State.ACTIVE
            mailbox.last_error = ""
            mailbox.consecutive_failures = 0
            mailbox.next_sync_at = None
            fields += ["state", "last_error", "consecutive_failures", "next_sync_at"]
        mailbox.save(update_fields=fields)
        if delegated:
            audit.warning(
                "mailbox=%s %s reconnected with the sign-in of %s by user=%s",
                mailbox.pk,
                mailbox.email_address,
                email,
                user.pk,
            )
        return mailbox
    return _new_oauth_mailbox(
        provider=provider,
        config=config,
        tokens=tokens,
        grant_expires_at=grant_expires_at,
        kind=Mailbox.Kind.PERSONAL,
        owner=user,
        email_address=email,
    )


def _new_oauth_mailbox(
    *, provider: str, config: dict, tokens: dict, grant_expires_at, **fields
) -> Mailbox:
    """A mailbox a Google or Microsoft sign-in creates, personal or shared (`fields`): the
    provider's servers, its tokens, paused until its folders and sync-from date are picked
    (docs/product.md §2.4)."""
    mailbox = Mailbox(
        connection_type=provider,
        imap_host=config["imap_host"],
        imap_port=config.get("imap_port", 993),
        imap_security=config.get("imap_security", "ssl"),
        smtp_host=config["smtp_host"],
        smtp_port=config.get("smtp_port", 465),
        smtp_security=config.get("smtp_security", "ssl"),
        state=Mailbox.State.PAUSED,
        oauth_grant_expires_at=grant_expires_at,
        **fields,
    )
    mailbox.set_oauth_tokens(**tokens)
    mailbox.save()
    return mailbox


def clean_shared_address(address: str) -> str:
    """The shared mailbox's address typed before an admin signs in for it."""
    try:
        return normalize_email((address or "").strip())
    except ValidationError as exc:
        raise ValidationError(
            "Enter the shared mailbox's address, like support@example.com."
        ) from exc


def _shared_oauth_connect(
    *,
    user,
    provider: str,
    config: dict,
    account: str,
    address: str,
    tokens: dict,
    grant_expires_at,
) -> Mailbox:
    if user is None or not user.is_superuser:
        # Only admins create shared mailboxes (docs/product.md §2.1).
        raise PermissionDenied("Only an admin connects a shared mailbox.")
    address = clean_shared_address(address)
    if provider == Mailbox.ConnectionType.GOOGLE and account != address:
        raise ValidationError(
            f"You signed in to Google as {account}. Google opens only the mailbox of the "
            f"account that signs in: sign in as {address} itself; nothing was connected."
        )
    if Mailbox.objects.filter(kind=Mailbox.Kind.SHARED, email_address=address).exists():
        raise ValidationError(
            f"A shared mailbox {address} exists already: reconnect it from its settings page."
        )
    mailbox = _new_oauth_mailbox(
        provider=provider,
        config=config,
        tokens=tokens,
        grant_expires_at=grant_expires_at,
        kind=Mailbox.Kind.SHARED,
        email_address=address,
        oauth_account="" if account == address else account,
    )
    # Never readable by nobody (docs/product.md §2.7 item 1): its creator reads it at once.
    mailbox.granted_users.add(user)
    audit.warning(
        "mailbox=%s %s (shared) connected with %s as %s by user=%s",
        mailbox.pk,
        address,
        provider,
        account,
        user.pk,
    )
    return mailbox


# What a person may set when connecting a mailbox (the address, the password and the folders
# are arguments of their own).
CONNECT_FIELDS = (
    "display_name",
    "login",
    "imap_host",
    "imap_port",
    "imap_security",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_auth",
    "smtp_login",
    "allow_insecure_cert",
    "sync_from",
    "create_contacts",
    "refresh_interval",
    "signature",
    "privacy",
)
# ...and what only an admin sets, on a shared (support) mailbox.
ADMIN_CONNECT_FIELDS = ("create_tickets", "send_acknowledgements", "forward_unplaced_to")


def mailbox_audit_insecure_cert(user, mailbox: Mailbox) -> None:
    if mailbox.allow_insecure_cert:
        # docs/reliability.md C-04: the opt-in out of certificate checks is visible and
        # audit-logged.
        logging.getLogger("relay.audit").warning(
            "mailbox=%s %s allows an untrusted certificate (set by %s)",
            mailbox.pk,
            mailbox.email_address,
            f"user={user.pk}" if user is not None else "an operator at the command line",
        )


@transaction.atomic
def mailbox_connect(
    *,
    user,
    kind: str,
    email_address: str,
    password: str,
    active_folders: list[str] | None,
    owner=None,
    smtp_password: str = "",
    **fields,
) -> Mailbox:
    """Create a password (IMAP) mailbox: the one way every entry point does it (the connect
    wizard, the admin site, `manage.py mailbox add`), each having tested the connection
    first when it could. Encrypts the password (never logged), refuses an address that is
    connected already, audit-logs an untrusted-certificate opt-in, makes a user's first
    personal mailbox their primary one, grants a shared one to the user who creates it and
    asks for the first sync.

    `user` is who asks: a signed-in person, or None for an operator at the command line.
    `owner` (personal mailboxes) defaults to `user`; only an admin or an operator may name
    another.
    `active_folders` None means the defaults (Inbox and Sent), chosen at the first sync;
    an empty list is refused."""
    allowed = set(CONNECT_FIELDS) | (
        set(ADMIN_CONNECT_FIELDS) if kind == Mailbox.Kind.SHARED else set()
    )
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"Unknown mailbox fields: {sorted(unknown)}")
    if kind not in Mailbox.Kind.values:
        raise ValidationError("Pick a personal or a shared mailbox.")
    manager = user is None or user.is_superuser or user.has_perm("inbox.add_mailbox")
    if kind == Mailbox.Kind.SHARED:
        if not manager:
            raise PermissionDenied("Only admins create shared mailboxes.")
        if owner is not None:
            raise ValidationError({"owner": "A shared mailbox has no owner; grant it instead."})
    else:
        owner = owner or user
        if owner is None:
            raise ValidationError({"owner": "A personal mailbox needs its owner."})
        if owner != user and not manager:
            raise PermissionDenied("A personal mailbox is connected by its owner.")
    if not password:
        raise ValidationError({"password": "Enter the password."})
    if active_folders is not None and not active_folders:
        raise ValidationError({"active_folders": "Pick at least one folder to sync."})
    email_address = normalize_email(email_address)
    clash = Mailbox.objects.filter(email_address=email_address, kind=kind)
    if owner is not None:
        clash = clash.filter(owner=owner)
    if clash.exists():
        raise ValidationError({"email_address": "This address is connected already."})
    mailbox = Mailbox(
        kind=kind,
        owner=owner,
        email_address=email_address,
        connection_type=Mailbox.ConnectionType.IMAP,
        active_folders=list(active_folders or []),
        state=Mailbox.State.ACTIVE,
        **fields,
    )
    mailbox.set_password(password)
    if mailbox.smtp_auth == SmtpAuth.SEPARATE:
        if not (mailbox.smtp_login and smtp_password):
            raise ValidationError(
                {"smtp_login": "A separate SMTP login needs its login name and password."}
            )
        mailbox.set_smtp_password(smtp_password)
    else:
        mailbox.smtp_login = ""
    mailbox.full_clean(exclude=["password_encrypted", "smtp_password_encrypted"])
    mailbox.save()
    mailbox_audit_insecure_cert(user, mailbox)
    if owner is not None and not PrimaryMailbox.objects.filter(user=owner).exists():
        PrimaryMailbox.objects.create(user=owner, mailbox=mailbox)
    if kind == Mailbox.Kind.SHARED and user is not None:
        # Its creator reads it from the start (docs/product.md §2.7): a shared mailbox nobody
        # can read would otherwise wait for someone to find its grants.
        mailbox.granted_users.add(user)
    mailbox_request_sync(mailbox=mailbox)
    return mailbox


@transaction.atomic
def mailbox_reconnect(
    *,
    user,
    mailbox: Mailbox,
    password: str,
    active_folders: list[str] | None = None,
    email_address: str | None = None,
) -> Mailbox:
    """Reconnect with a new password. It must be the same mailbox: another address is refused
    and nothing changes. Folders and their cursors are left as they are, so the next sync
    carries on where the last one stopped and nothing is imported twice (docs/product.md §2.5)."""

    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not reconnect this mailbox.")
    if mailbox.connection_type != Mailbox.ConnectionType.IMAP:
        raise ValidationError("This mailbox signs in with its provider: use its sign-in button.")
    if email_address is not None and normalize_email(email_address) != mailbox.email_address:
        raise ValidationError(
            f"This is {mailbox.email_address}: another address cannot be connected in its "
            "place. Nothing was changed."
        )
    if not password:
        raise ValidationError({"password": "Enter the password."})
    mailbox.set_password(password)
    fields = ["password_encrypted", "updated_at"]
    if active_folders is not None:
        if not active_folders:
            raise ValidationError({"active_folders": "Pick at least one folder to sync."})
        mailbox.active_folders = list(active_folders)
        fields.append("active_folders")
        mailbox.folders.filter(is_local=False).exclude(name__in=active_folders).update(
            is_active=False
        )
        mailbox.folders.filter(name__in=active_folders).update(is_active=True)
    if mailbox.state != Mailbox.State.PAUSED:
        mailbox.state = Mailbox.State.ACTIVE
        mailbox.next_sync_at = None
        fields += ["state", "next_sync_at"]
    mailbox.last_error = ""
    mailbox.reconnect_reason = ""
    mailbox.consecutive_failures = 0
    fields += ["last_error", "reconnect_reason", "consecutive_failures"]
    mailbox.save(update_fields=fields)
    if mailbox.state == Mailbox.State.ACTIVE:
        mailbox_request_sync(mailbox=mailbox)
    return mailbox


def smtp_reconnect_needed(mailbox: Mailbox) -> bool:
    """The outgoing server refused the mailbox's separate SMTP login while IMAP works: what
    needs typing again is that password, not the mailbox's own (docs/product.md §2.5)."""
    return (
        mailbox.state == Mailbox.State.NEEDS_RECONNECT
        and mailbox.refused_by == "smtp"
        and mailbox.connection_type == Mailbox.ConnectionType.IMAP
        and mailbox.smtp_auth == SmtpAuth.SEPARATE
    )


@transaction.atomic
def mailbox_reconnect_smtp(*, user, mailbox: Mailbox, smtp_password: str) -> Mailbox:
    """Reconnect with a new separate SMTP password (tested by the caller against the SMTP
    server): syncing resumes, and the mail that waited for it goes out now."""
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not reconnect this mailbox.")
    if not smtp_reconnect_needed(mailbox):
        raise ValidationError("The outgoing server's login does not need reconnecting.")
    if not smtp_password:
        raise ValidationError({"smtp_password": "Enter the SMTP password."})
    mailbox.set_smtp_password(smtp_password)
    mailbox.state = Mailbox.State.ACTIVE
    mailbox.next_sync_at = None
    mailbox.refused_by = ""
    mailbox.last_error = ""
    mailbox.reconnect_reason = ""
    mailbox.consecutive_failures = 0
    mailbox.save(
        update_fields=[
            "smtp_password_encrypted",
            "state",
            "next_sync_at",
            "refused_by",
            "last_error",
            "reconnect_reason",
            "consecutive_failures",
            "updated_at",
        ]
    )
    audit.warning(
        "mailbox=%s %s: SMTP password re-entered by user=%s",
        mailbox.pk,
        mailbox.email_address,
        user.pk,
    )
    mailbox_request_sync(mailbox=mailbox)
    # The entries that waited for the reconnect (connector/outbound/outbox.py): at once,
    # not at the beat's next tick.
    waiting = OutboxEntry.objects.filter(
        mailbox=mailbox, state=OutboxEntry.State.RETRYING, next_attempt_at__isnull=True
    ).values_list("pk", flat=True)
    for entry_id in waiting:
        ports.mail().send_soon(entry_id)
    return mailbox


# Where a mailbox connects, and as whom: its password or OAuth tokens are only ever sent to the
# servers they were entered for (docs/reliability.md C-21). Changing any of these forgets them.
SERVER_FIELDS = {
    "email_address": "address",
    "connection_type": "connection type",
    "login": "login name",
    "imap_host": "IMAP server",
    "imap_port": "IMAP port",
    "imap_security": "IMAP security",
    "smtp_host": "SMTP server",
    "smtp_port": "SMTP port",
    "smtp_security": "SMTP security",
    "smtp_auth": "SMTP sign-in",
    "smtp_login": "SMTP login name",
    "allow_insecure_cert": "certificate check",
}
# The fields that decide where the SMTP login goes: a separate SMTP password is forgotten when
# one of them changes, the mailbox's own password when anything else does too (it signs in to
# the SMTP server as well unless the mailbox has a separate SMTP login or none).
SMTP_SIDE = {"smtp_host", "smtp_port", "smtp_security", "smtp_auth", "smtp_login"}


def server_changes(before: Mailbox, after: Mailbox) -> list[str]:
    """The SERVER_FIELDS `after` changes. Turning the certificate check back on is no change:
    it can only keep the secret safer."""
    changed = [name for name in SERVER_FIELDS if getattr(before, name) != getattr(after, name)]
    if "allow_insecure_cert" in changed and not after.allow_insecure_cert:
        changed.remove("allow_insecure_cert")
    return changed


def forgotten_secrets(before: Mailbox, after: Mailbox, changed: list[str]) -> tuple[bool, bool]:
    """(the mailbox's password, its separate SMTP password): which one a change would carry to
    a server, or as a login, it was not entered for (docs/reliability.md C-21)."""
    if not changed:
        return False, False
    everywhere = {"email_address", "connection_type", "allow_insecure_cert"}
    smtp_side = set(changed) & (SMTP_SIDE | everywhere)
    imap_side = set(changed) - SMTP_SIDE
    # The old SMTP server had it already: only where the new settings send it counts.
    password_goes_to_smtp = after.smtp_auth == SmtpAuth.SAME
    forgets_password = bool(imap_side) or (bool(smtp_side) and password_goes_to_smtp)
    return forgets_password, bool(smtp_side)


def _shown(mailbox: Mailbox, name: str) -> str:
    if name == "allow_insecure_cert":
        return "off" if mailbox.allow_insecure_cert else "on"
    display = getattr(mailbox, f"get_{name}_display", None)
    value = display() if display is not None else getattr(mailbox, name)
    return str(value) if value not in ("", None) else "(none)"


def _reconnect_reason(user, before: Mailbox, after: Mailbox, changed: list[str]) -> str:
    who = "You" if user is not None and user.pk == after.owner_id else _name(user)
    what = "; ".join(
        f"the {SERVER_FIELDS[name]} from {_shown(before, name)} to {_shown(after, name)}"
        for name in changed
    )
    when = dateformat.format(timezone.localtime(), "j F Y, H:i")
    secret = "sign-in" if after.connection_type != Mailbox.ConnectionType.IMAP else "password"
    return (
        f"{who} changed {what} ({when}). The stored {secret} was removed so that it is never "
        f"sent to a server it was not entered for. Check these settings, then reconnect."
    )[:2000]


def _name(user) -> str:
    if user is None:
        return "An operator"
    return user.get_full_name() or user.get_username()


@transaction.atomic
def mailbox_admin_update(
    *, user, mailbox: Mailbox, new_password: str = "", new_smtp_password: str = ""
) -> list[str]:
    """Save a mailbox edited in the admin site (`mailbox` carries the edited, unsaved values).

    A change to where it connects or as whom (SERVER_FIELDS) forgets its password and OAuth
    tokens, so the next connection cannot carry them to the new server, and stops it in "needs
    reconnect" with a notice saying who changed what, shown to the owner (and, for a shared
    mailbox, the admins) until someone who knows the password reconnects
    (docs/reliability.md C-21). Whoever may manage the mailbox (its owner; admins for a shared
    one) may type the new password in the same form instead. A separate SMTP password
    (docs/product.md §2.8) is forgotten only when the SMTP side changes. The settings page, the
    admin site and the wizard's later fixes all save server settings here. A personal mailbox's
    kind, owner and privacy are its owner's (docs/product.md §2.2). Returns the server fields
    changed."""
    before = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if before.kind == Mailbox.Kind.PERSONAL:
        if mailbox.kind != before.kind or mailbox.owner_id != before.owner_id:
            raise PermissionDenied("A personal mailbox stays its owner's.")
        if mailbox.privacy != before.privacy and (user is None or user.pk != before.owner_id):
            raise PermissionDenied("Only the owner chooses what others see of their mail.")
    changed = server_changes(before, mailbox)
    if (new_password or new_smtp_password) and changed and not can_manage_mailbox(user, before):
        raise ValidationError(
            {
                "new_password": "Only the owner enters this mailbox's password after its "
                "server settings change: leave it empty, they will be asked to reconnect."
            }
        )
    forgets_password, forgets_smtp = forgotten_secrets(before, mailbox, changed)
    if changed:
        mailbox.oauth_access_token_encrypted = ""
        mailbox.oauth_refresh_token_encrypted = ""
        mailbox.oauth_expires_at = None
    if forgets_password or (changed and mailbox.connection_type != Mailbox.ConnectionType.IMAP):
        mailbox.password_encrypted = ""
    if forgets_smtp or mailbox.smtp_auth != SmtpAuth.SEPARATE:
        mailbox.smtp_password_encrypted = ""
    if new_password:
        mailbox.set_password(new_password)
    if new_smtp_password and mailbox.smtp_auth == SmtpAuth.SEPARATE:
        mailbox.set_smtp_password(new_smtp_password)
    missing = (forgets_password and not new_password) or (
        mailbox.connection_type != Mailbox.ConnectionType.IMAP and changed
    )
    missing_smtp = (
        mailbox.smtp_auth == SmtpAuth.SEPARATE
        and bool(mailbox.smtp_host)
        and not mailbox.smtp_password_encrypted
    )
    if changed and (missing or missing_smtp):
        mailbox.state = Mailbox.State.NEEDS_RECONNECT
        mailbox.next_sync_at = None
        mailbox.reconnect_reason = _reconnect_reason(user, before, mailbox, changed)
    mailbox.save()
    if changed and (missing or missing_smtp):
        mailbox_needs_reconnect.send(
            sender=Mailbox,
            mailbox_id=mailbox.pk,
            reason=f"{_name(user)} changed its server settings",
            actor_id=user.pk if user is not None else None,
        )
    if changed:
        logging.getLogger("relay.audit").warning(
            "mailbox=%s %s: %s changed by %s; its stored secret was removed",
            mailbox.pk,
            mailbox.email_address,
            ", ".join(changed),
            f"user={user.pk}" if user is not None else "an operator",
        )
    if "allow_insecure_cert" in changed:
        mailbox_audit_insecure_cert(user, mailbox)
    return changed


# What the settings page's "Server settings" may change (docs/product.md §2.8).
EDITABLE_SERVER_FIELDS = (
    "login",
    "imap_host",
    "imap_port",
    "imap_security",
    "allow_insecure_cert",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_auth",
    "smtp_login",
)


class ServerTestFailed(ValidationError):
    """The new settings did not work against the server: nothing was saved."""


def mailbox_update_servers(
    *, user, mailbox: Mailbox, password: str = "", smtp_password: str = "", **fields
) -> list[str]:
    """Change where a password (IMAP) mailbox connects, from its settings page
    (docs/product.md §2.8). The new settings are tested against the servers first (the
    wizard's test, through inbox/ports.py), with the password typed again whenever a change
    would otherwise carry the stored one somewhere it was not entered for; a failed test
    saves nothing and says which server failed and why. The save itself is
    mailbox_admin_update's, as in the admin site. A mailbox that was waiting for a reconnect
    syncs again, since its settings were just seen to work. Returns the fields changed."""
    unknown = set(fields) - set(EDITABLE_SERVER_FIELDS)
    if unknown:
        raise TypeError(f"These cannot be changed here: {sorted(unknown)}")
    before = Mailbox.objects.get(pk=mailbox.pk)
    if not can_manage_mailbox(user, before):
        raise PermissionDenied("You may not change this mailbox.")
    if before.connection_type != Mailbox.ConnectionType.IMAP:
        raise ValidationError(
            f"{before.get_connection_type_display()} sets this mailbox's servers: sign in again "
            "with Reconnect instead."
        )
    edited = Mailbox.objects.get(pk=mailbox.pk)
    for name, value in fields.items():
        setattr(edited, name, value)
    if edited.smtp_auth != SmtpAuth.SEPARATE:
        edited.smtp_login = ""
    if edited.smtp_auth == SmtpAuth.SEPARATE and not edited.smtp_login:
        raise ValidationError({"smtp_login": "Enter the SMTP server's login name."})
    edited.full_clean(exclude=["password_encrypted", "smtp_password_encrypted"])
    changed = server_changes(before, edited)
    if not changed:
        return []
    forgets_password, forgets_smtp = forgotten_secrets(before, edited, changed)
    needs_smtp_password = (
        edited.smtp_auth == SmtpAuth.SEPARATE
        and bool(edited.smtp_host)
        and (forgets_smtp or not before.smtp_password_encrypted)
    )
    errors = {}
    if forgets_password and not password:
        errors["password"] = (
            "Enter the mailbox's password again: the stored one is only ever sent to the "
            "settings it was entered for."
        )
    if needs_smtp_password and not smtp_password:
        errors["smtp_password"] = "Enter the SMTP server's password."
    if errors:
        raise ValidationError(errors)
    # The candidate carries the secrets the saved mailbox will have, never saved here.
    candidate = Mailbox.objects.get(pk=mailbox.pk)
    for name in EDITABLE_SERVER_FIELDS:
        setattr(candidate, name, getattr(edited, name))
    if password:
        candidate.set_password(password)
    if smtp_password and edited.smtp_auth == SmtpAuth.SEPARATE:
        candidate.set_smtp_password(smtp_password)
    report = ports.mail().test_connection(candidate)
    if not report.ok:
        raise ServerTestFailed(
            f"The incoming server (IMAP) {edited.imap_host}:{edited.imap_port} did not work "
            f"with these settings: {report.error} Nothing was saved."
        )
    if edited.smtp_host and not report.smtp_ok:
        raise ServerTestFailed(
            f"The outgoing server (SMTP) {edited.smtp_host}:{edited.smtp_port} did not work "
            f"with these settings: {report.smtp_error} Nothing was saved."
        )
    with transaction.atomic():
        changed = mailbox_admin_update(
            user=user, mailbox=candidate, new_password=password, new_smtp_password=smtp_password
        )
        if changed:
            # Just seen to work: a mailbox waiting for a reconnect (or retrying) syncs again,
            # from where it stopped.
            Mailbox.objects.filter(
                pk=mailbox.pk,
                state__in=[Mailbox.State.NEEDS_RECONNECT, Mailbox.State.ERROR],
            ).update(
                state=Mailbox.State.ACTIVE,
                reconnect_reason="",
                last_error="",
                refused_by="",
                consecutive_failures=0,
                next_sync_at=None,
            )
    mailbox.refresh_from_db()
    if mailbox.state == Mailbox.State.ACTIVE:
        mailbox_request_sync(mailbox=mailbox)
    return changed


def mailbox_update_options(*, user, mailbox: Mailbox, **fields) -> Mailbox:
    """Display name, signature, refresh interval, create contacts, privacy, writing \\Seen back
    and whether our reply means Waiting: what may change after connecting (never the address
    or the sync-from date)."""
    allowed = {
        "display_name",
        "create_contacts",
        "refresh_interval",
        "signature",
        "privacy",
        "write_seen_to_server",
        "reply_sets_waiting",
    }
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not change this mailbox.")
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"These cannot be changed here: {sorted(unknown)}")
    if "refresh_interval" in fields and not 30 <= int(fields["refresh_interval"]) <= 86400:
        raise ValidationError({"refresh_interval": "Between 30 seconds and a day."})
    for name, value in fields.items():
        setattr(mailbox, name, value)
    mailbox.save(update_fields=[*fields, "updated_at"])
    return mailbox


@transaction.atomic
def ledger_retry(*, user, entry) -> None:
    """Try a held message again: it goes back to "failed" with its attempts reset, so the next
    sync fetches it once more (connector.sync retries failed UIDs), and a sync is requested."""

    entry = (
        LedgerEntry.objects.select_for_update().select_related("mailbox", "folder").get(pk=entry.pk)
    )
    if not can_manage_mailbox(user, entry.mailbox):
        raise PermissionDenied("You may not retry messages of this mailbox.")
    if entry.outcome != LedgerEntry.Outcome.HELD or entry.message_id is not None:
        # A held entry with a message was stored as unreadable: fetching it again changes
        # nothing. Only a message that was never stored can be retried.
        raise ValidationError("Only a message that could not be stored can be tried again.")
    if entry.folder.is_local:
        # Imported (docs/product.md §3.10): no server to fetch it from, so its kept raw
        # source is imported again, now, by a worker.
        if not entry.raw_file:
            raise ValidationError("Its raw source is not kept: there is nothing to import again.")
        entry.reason = "being imported again"
        entry.save(update_fields=["reason", "updated_at"])
        ports.mail().import_again(entry.pk)
        return
    entry.outcome = LedgerEntry.Outcome.FAILED
    entry.reason = "retry requested"
    entry.attempts = entry.parse_failures = 0
    entry.next_retry_at = None
    entry.save(
        update_fields=[
            "outcome",
            "reason",
            "attempts",
            "parse_failures",
            "next_retry_at",
            "updated_at",
        ]
    )
    mailbox_request_sync(mailbox=entry.mailbox)


@transaction.atomic
def mailbox_finish_setup(
    *, user, mailbox: Mailbox, sync_from, active_folders: list[str], **options
) -> Mailbox:
    """The wizard's last step for a mailbox that a Google or Microsoft sign-in created (paused,
    without folders or a sync-from date): save the choices and start the first sync. Refused
    once the mailbox has a sync-from date: it cannot change afterwards (docs/product.md §2.4)."""
    allowed = {"create_contacts", "refresh_interval", "signature", "privacy"}
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not set up this mailbox.")
    if set(options) - allowed:
        raise TypeError(f"Unknown options: {sorted(set(options) - allowed)}")
    if mailbox.sync_from is not None or mailbox.first_sync_done:
        raise ValidationError("This mailbox is set up already; its sync-from date cannot change.")
    if not sync_from:
        raise ValidationError({"sync_from": "Pick the date to sync mail from."})
    if not active_folders:
        raise ValidationError({"active_folders": "Pick at least one folder to sync."})
    for name, value in options.items():
        setattr(mailbox, name, value)
    mailbox.sync_from = sync_from
    mailbox.active_folders = list(active_folders)
    mailbox.state = Mailbox.State.ACTIVE
    mailbox.next_sync_at = None
    mailbox.save(
        update_fields=[
            *options,
            "sync_from",
            "active_folders",
            "state",
            "next_sync_at",
            "updated_at",
        ]
    )
    if (
        mailbox.kind == Mailbox.Kind.PERSONAL
        and not PrimaryMailbox.objects.filter(user=user).exists()
    ):
        PrimaryMailbox.objects.create(user=user, mailbox=mailbox)
    mailbox_request_sync(mailbox=mailbox)
    return mailbox


def warn_expiring_grants(*, now=None) -> list[int]:
    """Mailboxes whose Google or Microsoft sign-in dies within GRANT_WARNING: each is announced
    once per expiry (mailbox_grant_expiring, which notifications/receivers.py turns into a
    notification to the owner, or to the admins of a shared mailbox). A renewed sign-in that
    comes close to dying again is announced again. Returns the ids announced."""
    from django.db.models import F, Q

    from ..models import GRANT_WARNING
    from ..signals import mailbox_grant_expiring

    now = now or timezone.now()
    due = Mailbox.objects.filter(
        connection_type__in=(Mailbox.ConnectionType.GOOGLE, Mailbox.ConnectionType.MICROSOFT),
        oauth_grant_expires_at__lte=now + GRANT_WARNING,
    ).exclude(state=Mailbox.State.NEEDS_RECONNECT)
    not_told = Q(oauth_expiry_warned_for__isnull=True) | Q(
        oauth_expiry_warned_for__lt=F("oauth_grant_expires_at") - GRANT_WARNING
    )
    announced = []
    for pk, expires in due.filter(not_told).values_list("pk", "oauth_grant_expires_at"):
        with transaction.atomic():
            # The conditional UPDATE claims it: two beats at once announce it once.
            if Mailbox.objects.filter(not_told, pk=pk).update(oauth_expiry_warned_for=expires):
                mailbox_grant_expiring.send(sender=Mailbox, mailbox_id=pk, expires_at=expires)
                announced.append(pk)
    return announced
