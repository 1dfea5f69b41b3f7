"""The one door from inbox to the mail side.

inbox may not import connector (the import-linter layers contract in pyproject.toml:
connector > inbox > crm), yet some of what a person does needs a mail server now (Test
connection, an OAuth sign-in, a remote image they asked to see) or soon (Sync now, Send). This
module declares everything inbox asks of the mail side, as one typed Protocol, and the values
that cross the door. connector/port.py implements it and connector/apps.py installs it when
Django starts; inbox code calls ``mail()``.

Nothing else connects the two: no signal with a return value, no module-level hook.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .models import Mailbox

# Seconds a Test connection may take: fixed, so the time it takes tells nothing about the
# target (docs/reliability.md C-08).
TEST_TIMEOUT = 20.0

# Limits of the image proxy (docs/reliability.md X-11: image/* only, size cap; camo's defaults).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 8.0


@dataclass
class FolderPreview:
    name: str
    special_use: str
    selectable: bool
    messages: int | None = None
    since_count: int | None = None  # what the first sync would bring (None: no sync-from)


@dataclass
class ConnectionReport:
    """What "Test connection / Retrieve folders" found."""

    ok: bool
    error: str = ""  # the user-facing wording (one per category, docs/reliability.md C-08)
    error_category: str = ""
    folders: list[FolderPreview] = field(default_factory=list)
    capabilities: frozenset[str] = frozenset()
    smtp_ok: bool | None = None  # None: no SMTP configured
    smtp_error: str = ""


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what the callback must check (kept in the session)."""

    url: str
    state: str
    code_verifier: str = field(repr=False)
    nonce: str = field(repr=False)


@dataclass(frozen=True)
class OAuthGrant:
    """What a completed sign-in gave: the account's address and its tokens."""

    email: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: dt.datetime | None = None
    # When the grant itself dies unless renewed (the refresh token's expiry, told or documented:
    # connector/transport/oauth.py grant_expires_at).
    grant_expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class RemoteImage:
    content: bytes
    declared_type: str  # the remote server's Content-Type, for logs only: we sniff the bytes


@dataclass(frozen=True)
class SenderCheck:
    """How far a message's From line can be believed (connector/filing/authentication.py):
    status "pass" (verified), "fail", "none" or "unknown", and why, in words."""

    status: str
    detail: str

    @property
    def verified(self) -> bool:
        return self.status == "pass"


class RemoteImageUnavailable(Exception):
    """Refused host, not an image, too big, too slow, or any network failure."""


class MailPort(Protocol):
    """What inbox needs from the mail side. Errors a person should read are raised as
    django.core.exceptions.ValidationError with the wording to show."""

    def test_connection(
        self, mailbox: Mailbox, *, sync_from: dt.date | None = None
    ) -> ConnectionReport:
        """Log in to the mailbox's servers (an unsaved Mailbox is fine) and list its folders,
        within TEST_TIMEOUT."""

    def test_smtp(self, mailbox: Mailbox) -> str | None:
        """Log in to the outgoing server and out again: None, or the message to show."""

    def oauth_authorization(self, provider: str, *, redirect_uri: str) -> AuthorizationRequest:
        """Start a Google or Microsoft sign-in."""

    def oauth_exchange(
        self, provider: str, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> OAuthGrant:
        """Finish it: the code the provider sent back, exchanged for the account's tokens."""

    def fetch_remote_image(self, url: str) -> RemoteImage:
        """One remote image a reader asked for, fetched by the server (RemoteImageUnavailable
        for anything but an image within MAX_IMAGE_BYTES and FETCH_TIMEOUT_SECONDS)."""

    def check_sender(self, headers: dict, from_address: str) -> SenderCheck:
        """Whether a stored message's headers prove its From line (the Email API senders'
        admin says with it which senders can work today)."""

    def sync_soon(self, mailbox_id: int) -> None:
        """Sync this mailbox as soon as the current transaction commits ("Sync now")."""

    def send_soon(self, entry_id: int, delay_seconds: float = 0) -> None:
        """Send this outbox entry as soon as the current transaction commits, or
        `delay_seconds` later (the beat sends due entries anyway: a lost request delays,
        never drops)."""

    def import_soon(self, job_id: int) -> None:
        """Run this ImportJob (uploaded .mbox/.eml files) once the current transaction
        commits (the beat enqueues a job left waiting: a lost request delays, never drops)."""

    def import_again(self, entry_id: int) -> None:
        """Import a held message of a local (imported) folder again from its kept raw source,
        once the current transaction commits."""


_port: MailPort | None = None


def install(port: MailPort | None) -> None:
    """Called by connector/apps.py at start-up (and by tests that stand in for a server
    that cannot run here)."""
    global _port
    _port = port


def mail() -> MailPort:
    if _port is None:
        raise ImproperlyConfigured("No mail port installed: is the connector app installed?")
    return _port
