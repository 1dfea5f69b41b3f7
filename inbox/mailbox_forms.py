"""Forms of the mailbox settings pages: the connect wizard, Reconnect, and a mailbox's options.

Passwords are write-only: the widget never renders a value back, so a page that re-displays a
form with errors cannot leak the password into the HTML (docs/product.md §2.4: never shown
again)."""

from __future__ import annotations

import datetime as dt
import re

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.normalize import normalize_email

from .models import Mailbox, Security, SmtpAuth

# Settings of well-known providers, guessed from the address's domain. Everything else gets
# imap.<domain> / smtp.<domain> with implicit TLS (RFC 8314 prefers it over STARTTLS).
_GMAIL = ("imap.gmail.com", 993, "ssl", "smtp.gmail.com", 465, "ssl")
_OFFICE365 = ("outlook.office365.com", 993, "ssl", "smtp.office365.com", 587, "starttls")
_PROVIDERS: dict[str, tuple] = {
    "gmail.com": _GMAIL,
    "googlemail.com": _GMAIL,
    "outlook.com": _OFFICE365,
    "hotmail.com": _OFFICE365,
    "live.com": _OFFICE365,
    "msn.com": _OFFICE365,
    "office365.com": _OFFICE365,
    "yahoo.com": ("imap.mail.yahoo.com", 993, "ssl", "smtp.mail.yahoo.com", 465, "ssl"),
    "ymail.com": ("imap.mail.yahoo.com", 993, "ssl", "smtp.mail.yahoo.com", 465, "ssl"),
    "icloud.com": ("imap.mail.me.com", 993, "ssl", "smtp.mail.me.com", 587, "starttls"),
    "me.com": ("imap.mail.me.com", 993, "ssl", "smtp.mail.me.com", 587, "starttls"),
    "mac.com": ("imap.mail.me.com", 993, "ssl", "smtp.mail.me.com", 587, "starttls"),
    "fastmail.com": ("imap.fastmail.com", 993, "ssl", "smtp.fastmail.com", 465, "ssl"),
    "fastmail.fm": ("imap.fastmail.com", 993, "ssl", "smtp.fastmail.com", 465, "ssl"),
    "gmx.com": ("imap.gmx.com", 993, "ssl", "mail.gmx.com", 587, "starttls"),
    "gmx.net": ("imap.gmx.net", 993, "ssl", "mail.gmx.net", 587, "starttls"),
    "gmx.de": ("imap.gmx.net", 993, "ssl", "mail.gmx.net", 587, "starttls"),
    "web.de": ("imap.web.de", 993, "ssl", "smtp.web.de", 587, "starttls"),
    "mail.ru": ("imap.mail.ru", 993, "ssl", "smtp.mail.ru", 465, "ssl"),
    "inbox.ru": ("imap.mail.ru", 993, "ssl", "smtp.mail.ru", 465, "ssl"),
    "list.ru": ("imap.mail.ru", 993, "ssl", "smtp.mail.ru", 465, "ssl"),
    "bk.ru": ("imap.mail.ru", 993, "ssl", "smtp.mail.ru", 465, "ssl"),
    "yandex.ru": ("imap.yandex.com", 993, "ssl", "smtp.yandex.com", 465, "ssl"),
    "yandex.com": ("imap.yandex.com", 993, "ssl", "smtp.yandex.com", 465, "ssl"),
    "ya.ru": ("imap.yandex.com", 993, "ssl", "smtp.yandex.com", 465, "ssl"),
}
# Providers whose accounts usually sign in with OAuth (an IMAP password there must be an app
# password): the wizard says so next to the guessed settings.
OAUTH_HINT = {"gmail.com": "google", "googlemail.com": "google"}
OAUTH_HINT.update(dict.fromkeys(["outlook.com", "hotmail.com", "live.com", "msn.com"], "microsoft"))
_SETTING_NAMES = (
    "imap_host",
    "imap_port",
    "imap_security",
    "smtp_host",
    "smtp_port",
    "smtp_security",
)


def guess_server_settings(email: str) -> dict:
    """IMAP and SMTP settings for an address, from its domain."""
    domain = (email or "").rpartition("@")[2].strip().lower().rstrip(".")
    if not domain:
        return {}
    values = _PROVIDERS.get(domain)
    if values is None and (domain.endswith(".onmicrosoft.com") or "office365" in domain):
        values = _OFFICE365
    if values is None and domain.startswith("yahoo."):
        values = _PROVIDERS["yahoo.com"]
    if values is None:
        values = (f"imap.{domain}", 993, "ssl", f"smtp.{domain}", 465, "ssl")
    return dict(zip(_SETTING_NAMES, values, strict=True))


def provider_table() -> dict:
    """The table the wizard's script fills the fields from as the address is typed."""
    return {
        domain: dict(zip(_SETTING_NAMES, values, strict=True))
        for domain, values in _PROVIDERS.items()
    }


# RFC 1123 host names (IDNs arrive as typed: the connector resolves them) or an IP literal.
_HOST = re.compile(r"^(?=.{1,253}$)[^\s/:@\\?#\[\]]+$|^\[?[0-9a-fA-F:.]+\]?$")

REFRESH_CHOICES = [
    (60, "Every minute"),
    (120, "Every 2 minutes"),
    (300, "Every 5 minutes"),
    (900, "Every 15 minutes"),
    (1800, "Every 30 minutes"),
    (3600, "Every hour"),
]
EARLIEST_SYNC_FROM = dt.date(1990, 1, 1)


def _clean_host(value: str, label: str) -> str:
    value = (value or "").strip().rstrip(".").lower()
    if not value:
        raise ValidationError(f"Enter the {label} server's host name.")
    if "://" in value or not _HOST.match(value):
        raise ValidationError(
            f"“{value[:80]}” is not a host name: enter just the name, like mail.example.com."
        )
    return value


class _ServerFields(forms.Form):
    """IMAP and SMTP settings, shared by the wizard."""

    login = forms.CharField(
        label="Login name",
        max_length=320,
        required=False,
        help_text="Only when it differs from the email address (Exchange, some hosts).",
        widget=forms.TextInput(attrs={"autocomplete": "username", "spellcheck": "false"}),
    )
    password = forms.CharField(
        label="Password",
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Some providers need an app password.",
    )
    imap_host = forms.CharField(label="IMAP server", max_length=253)
    imap_port = forms.IntegerField(label="Port", min_value=1, max_value=65535, initial=993)
    imap_security = forms.ChoiceField(
        label="Security", choices=Security.choices, initial=Security.SSL
    )
    smtp_host = forms.CharField(
        label="SMTP server",
        max_length=253,
        required=False,
        help_text="Leave empty for a mailbox that only receives.",
    )
    smtp_port = forms.IntegerField(label="Port", min_value=1, max_value=65535, initial=465)
    smtp_security = forms.ChoiceField(
        label="Security", choices=Security.choices, initial=Security.SSL
    )
    allow_insecure_cert = forms.BooleanField(
        label="Allow a certificate not signed by a trusted authority",
        required=False,
        help_text="Only for a server you run yourself with a self-signed certificate. Anyone "
        "between you and the server could read the mail and the password.",
    )

    def clean_imap_host(self):
        return _clean_host(self.cleaned_data.get("imap_host"), "IMAP")

    def clean_smtp_host(self):
        if not (self.cleaned_data.get("smtp_host") or "").strip():
            return ""
        return _clean_host(self.cleaned_data.get("smtp_host"), "SMTP")

    def clean_login(self):
        login = (self.cleaned_data.get("login") or "").strip()
        if any(ch in login for ch in "\r\n\x00"):
            raise ValidationError("The login name may not contain line breaks.")
        return login

    def clean_password(self):
        password = self.cleaned_data.get("password") or ""
        if any(ch in password for ch in "\r\n\x00"):
            # IMAP LOGIN sends it as a quoted string or literal: a line break would end the
            # command (and no real password holds one).
            raise ValidationError("The password may not contain line breaks.")
        return password


class ConnectForm(_ServerFields):
    """The connect wizard for an IMAP and SMTP mailbox: one form, posted for Test connection
    (folders are then listed) and again for Connect (folders and options chosen)."""

    kind = forms.ChoiceField(
        label="Mailbox type",
        choices=Mailbox.Kind.choices,
        initial=Mailbox.Kind.PERSONAL,
        help_text="Shared mailboxes (support@, sales@): you read it as its creator, and give "
        "access to people and groups on its settings page.",
    )
    email_address = forms.CharField(
        label="Email address",
        max_length=320,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
    )
    display_name = forms.CharField(
        label="Display name",
        max_length=200,
        required=False,
        help_text="The name people see on mail you send.",
    )
    sync_from = forms.DateField(
        label="Sync email from",
        widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
        help_text="The first sync brings mail from this date on. It cannot be changed later.",
    )
    active_folders = forms.MultipleChoiceField(
        label="Folders to sync", required=False, widget=forms.CheckboxSelectMultiple
    )
    create_contacts = forms.BooleanField(
        label="Create contacts for unknown senders", required=False
    )
    refresh_interval = forms.TypedChoiceField(
        label="Check for new mail", choices=REFRESH_CHOICES, coerce=int, initial=300
    )
    signature = forms.CharField(
        label="Signature",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    privacy = forms.ChoiceField(
        label="What colleagues see of this mail on records",
        choices=Mailbox.Privacy.choices,
        initial=Mailbox.Privacy.SUBJECT,  # the model's default (docs/product.md §2.2)
        help_text="Personal mailboxes: mail filed on a record shows to others at this level.",
    )

    def __init__(self, *args, user, folder_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        if not user.is_superuser:
            # Only admins create shared mailboxes (docs/product.md §2.1).
            del self.fields["kind"]
        self.fields["active_folders"].choices = [(n, n) for n in folder_names]
        self.fields["sync_from"].initial = timezone.localdate() - dt.timedelta(days=90)

    @property
    def mailbox_kind(self) -> str:
        return self.cleaned_data.get("kind", Mailbox.Kind.PERSONAL)

    def clean_email_address(self):
        try:
            email = normalize_email(self.cleaned_data.get("email_address") or "")
        except ValidationError as exc:
            raise ValidationError("Enter a valid email address, like ana@example.com.") from exc
        return email

    def clean_sync_from(self):
        day = self.cleaned_data.get("sync_from")
        if day and day > timezone.localdate():
            raise ValidationError("Pick today or a date in the past.")
        if day and day < EARLIEST_SYNC_FROM:
            raise ValidationError(f"Pick a date after {EARLIEST_SYNC_FROM:%-d %B %Y}.")
        return day

    def clean(self):
        data = super().clean()
        email = data.get("email_address")
        if email:
            kind = data.get("kind", Mailbox.Kind.PERSONAL)
            existing = Mailbox.objects.filter(email_address=email)
            if kind == Mailbox.Kind.PERSONAL:
                existing = existing.filter(kind=kind, owner=self.user)
                message = "You have already connected this address."
            else:
                existing = existing.filter(kind=kind)
                message = "A shared mailbox with this address exists already."
            if existing.exists():
                self.add_error("email_address", message)
        return data

    def unsaved_mailbox(self) -> Mailbox:
        """A Mailbox instance for Test connection: never saved here."""
        data = self.cleaned_data
        mailbox = Mailbox(
            kind=self.mailbox_kind,
            owner=self.user if self.mailbox_kind == Mailbox.Kind.PERSONAL else None,
            email_address=data["email_address"],
            login=data.get("login", ""),
            **{name: data[name] for name in _SETTING_NAMES},
            allow_insecure_cert=data.get("allow_insecure_cert", False),
            sync_from=data.get("sync_from"),
        )
        mailbox.set_password(data["password"])
        return mailbox


class ReconnectForm(forms.Form):
    """IMAP Reconnect: the password again (the address, and so the mailbox, stays the same)."""

    password = forms.CharField(
        label="Password",
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "current-password"}),
        help_text="The password the server accepts now. Stored encrypted, never shown again.",
    )
    active_folders = forms.MultipleChoiceField(
        label="Folders to sync", required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, folder_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["active_folders"].choices = [(n, n) for n in folder_names]

    def clean_password(self):
        password = self.cleaned_data.get("password") or ""
        if any(ch in password for ch in "\r\n\x00"):
            raise ValidationError("The password may not contain line breaks.")
        return password


class SmtpReconnectForm(forms.Form):
    """Reconnect of a mailbox whose separate SMTP login was refused while IMAP still works
    (docs/product.md §2.5): only that password, only ever sent to the SMTP server."""

    smtp_password = forms.CharField(
        label="SMTP password",
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "current-password"}),
        help_text="The password the outgoing server accepts now. Stored encrypted, never shown "
        "again.",
    )

    def clean_smtp_password(self):
        password = self.cleaned_data.get("smtp_password") or ""
        if any(ch in password for ch in "\r\n\x00"):
            raise ValidationError("The password may not contain line breaks.")
        return password


class MailboxOptionsForm(forms.ModelForm):
    """What can change after connecting (the sync-from date and the address cannot)."""

    refresh_interval = forms.TypedChoiceField(
        label="Check for new mail", choices=REFRESH_CHOICES, coerce=int
    )
    # A plain tick box: the model's "empty = by kind" default shows as what it means.
    write_seen_to_server = forms.BooleanField(
        required=False,
        label="Write read and unread back to the mail server",
        help_text="Off: opening a conversation marks it read in Relay for you alone, and other "
        "mail clients keep their own read state (the default for shared mailboxes).",
    )

    class Meta:
        model = Mailbox
        fields = [
            "display_name",
            "create_contacts",
            "refresh_interval",
            "signature",
            "privacy",
            "write_seen_to_server",
            "reply_sets_waiting",
        ]
        labels = {
            "create_contacts": "Create contacts for unknown senders",
            "privacy": "What colleagues see of this mail on records",
            "reply_sets_waiting": "Our reply puts the conversation in Waiting",
        }
        widgets = {"signature": forms.Textarea(attrs={"rows": 4})}
        help_texts = {
            "create_contacts": "New senders become contacts; addresses on the exclusion list "
            "(no-reply, mailer daemons) never do.",
            "signature": "Added below the mail you write from this mailbox.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.refresh_interval
        if current and current not in dict(REFRESH_CHOICES):
            # An admin may have set another interval: keep it selectable, not silently changed.
            self.fields["refresh_interval"].choices = [
                *REFRESH_CHOICES,
                (current, f"Every {current} seconds"),
            ]
        self.fields["write_seen_to_server"].initial = self.instance.writes_seen
        if self.instance.kind == Mailbox.Kind.SHARED:
            del self.fields["privacy"]  # shared mail is readable in full by every grantee


class ServerSettingsForm(_ServerFields):
    """A password mailbox's servers on its settings page (docs/product.md §2.8): the wizard's
    fields, a separate SMTP login or none, and the password(s) again when a change needs them
    (inbox/services/mailboxes.py mailbox_update_servers decides)."""

    password = forms.CharField(
        label="Password",
        max_length=1000,
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "current-password"}),
        help_text="Needed when you change a server, a port, the security or the login name: the "
        "stored password is only ever sent to the settings it was entered for.",
    )
    smtp_auth = forms.ChoiceField(
        label="Sign in to the SMTP server with",
        choices=SmtpAuth.choices,
        initial=SmtpAuth.SAME,
        widget=forms.RadioSelect,
    )
    smtp_login = forms.CharField(
        label="SMTP login name",
        max_length=320,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    smtp_password = forms.CharField(
        label="SMTP password",
        max_length=1000,
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Only for a separate SMTP login. Stored encrypted and never shown again.",
    )

    field_order = [
        "imap_host",
        "imap_port",
        "imap_security",
        "login",
        "password",
        "smtp_host",
        "smtp_port",
        "smtp_security",
        "smtp_auth",
        "smtp_login",
        "smtp_password",
        "allow_insecure_cert",
    ]

    @classmethod
    def for_mailbox(cls, mailbox: Mailbox, data=None) -> ServerSettingsForm:
        names = ("login", "imap_host", "imap_port", "imap_security", "allow_insecure_cert")
        names += ("smtp_host", "smtp_port", "smtp_security", "smtp_auth", "smtp_login")
        return cls(data, initial={n: getattr(mailbox, n) for n in names}, prefix="servers")

    def clean_smtp_login(self):
        login = (self.cleaned_data.get("smtp_login") or "").strip()
        if any(ch in login for ch in "\r\n\x00"):
            raise ValidationError("The login name may not contain line breaks.")
        return login

    def clean_smtp_password(self):
        password = self.cleaned_data.get("smtp_password") or ""
        if any(ch in password for ch in "\r\n\x00"):
            raise ValidationError("The password may not contain line breaks.")
        return password

    def clean(self):
        data = super().clean()
        if data.get("smtp_auth") == SmtpAuth.SEPARATE and not data.get("smtp_login"):
            self.add_error("smtp_login", "Enter the SMTP server's login name.")
        return data

    def server_fields(self) -> dict:
        data = self.cleaned_data
        return {n: data[n] for n in self.fields if n not in ("password", "smtp_password")}


class SetupForm(forms.Form):
    """Finishing a mailbox connected by signing in with Google or Microsoft: the sign-in gave
    the address and the tokens; the folders, the sync-from date and the options come here."""

    sync_from = ConnectForm.base_fields["sync_from"]
    active_folders = ConnectForm.base_fields["active_folders"]
    create_contacts = ConnectForm.base_fields["create_contacts"]
    refresh_interval = ConnectForm.base_fields["refresh_interval"]
    signature = ConnectForm.base_fields["signature"]
    privacy = ConnectForm.base_fields["privacy"]

    def __init__(self, *args, folder_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["active_folders"].choices = [(n, n) for n in folder_names]
        self.fields["sync_from"].initial = timezone.localdate() - dt.timedelta(days=90)

    clean_sync_from = ConnectForm.clean_sync_from


class GrantForm(forms.Form):
    """Give a shared mailbox to a person or a group (docs/product.md §2.7)."""

    user = forms.ModelChoiceField(label="Person", queryset=None, required=False)
    group = forms.ModelChoiceField(label="Group", queryset=None, required=False)

    def __init__(self, *args, mailbox, **kwargs):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True)
        self.fields["user"].queryset = users.exclude(
            pk__in=mailbox.granted_users.values("pk")
        ).order_by("first_name", "last_name", "username")
        self.fields["user"].label_from_instance = lambda u: (
            f"{u.get_full_name() or u.get_username()} ({u.get_username()})"
        )
        self.fields["group"].queryset = Group.objects.exclude(
            pk__in=mailbox.granted_groups.values("pk")
        ).order_by("name")

    def clean(self):
        data = super().clean()
        if not data.get("user") and not data.get("group"):
            raise ValidationError("Pick a person or a group.")
        return data


class SupportForm(forms.Form):
    """A shared mailbox's tickets and forwarding."""

    create_tickets = forms.BooleanField(
        label="New mail opens a ticket",
        required=False,
        help_text="A support mailbox: each new conversation from a customer becomes a ticket.",
    )
    send_acknowledgements = forms.BooleanField(
        label="Acknowledge each new ticket to the customer",
        required=False,
        help_text="A short reply quoting the ticket's reference, at most a few per sender an "
        "hour, never to automated mail or an unverified sender.",
    )
    forward_unplaced_to = forms.CharField(
        label="Forward mail the rules cannot place to",
        max_length=320,
        required=False,
        help_text="An internal address, like team@example.com. Empty: nothing is forwarded.",
        widget=forms.EmailInput(attrs={"spellcheck": "false"}),
    )


class ExclusionForm(forms.Form):
    """A new exclusion pattern: first its dry run, then Save."""

    pattern = forms.CharField(
        label="Pattern",
        max_length=320,
        help_text="An address or a domain, with * and ? wildcards: *@noreply.example.com, "
        "mailer-daemon@*, *.newsletters.example.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    note = forms.CharField(label="Note", max_length=200, required=False)


class ApiSenderForm(forms.Form):
    """An address allowed to send Email API documents to a support mailbox."""

    address = forms.CharField(
        label="Sender address",
        max_length=320,
        widget=forms.EmailInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
        help_text="Its documents are applied only when our mail server verified it.",
    )
    note = forms.CharField(label="Note", max_length=200, required=False)
