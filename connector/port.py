"""connector's side of inbox/ports.py: the mail functions inbox may call, behind one object.
Installed by connector/apps.py when Django starts."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction

from inbox import ports
from inbox.models import Mailbox

from .filing import authentication
from .scheduling import dispatch, tasks
from .transport import images, oauth, probe
from .transport.errors import AuthenticationFailed, MailError, TemporaryFailure


def _user_error(exc: MailError, action: str) -> ValidationError:
    """What the person at the browser is told (inbox cannot catch connector errors)."""
    if isinstance(exc, AuthenticationFailed):
        return ValidationError(f"{action}: the provider refused the sign-in. Try again.")
    if isinstance(exc, TemporaryFailure):
        return ValidationError(f"{action}: the provider could not be reached. Try again soon.")
    return ValidationError(f"{action}: {str(exc).removeprefix('OAuth: ')}.")


class ConnectorPort:
    def test_connection(
        self, mailbox: Mailbox, *, sync_from: dt.date | None = None
    ) -> ports.ConnectionReport:
        return probe.test_connection(mailbox, sync_from, timeout=ports.TEST_TIMEOUT)

    def test_smtp(self, mailbox: Mailbox) -> str | None:
        return probe.smtp_connection_check(mailbox)

    def oauth_authorization(
        self, provider: str, *, redirect_uri: str
    ) -> ports.AuthorizationRequest:
        try:
            return oauth.authorization_request(provider, redirect_uri=redirect_uri)
        except MailError as exc:
            raise _user_error(exc, "Signing in is not available") from exc

    def oauth_exchange(
        self, provider: str, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> ports.OAuthGrant:
        try:
            return oauth.exchange_code(
                provider,
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
                nonce=nonce,
            )
        except MailError as exc:
            raise _user_error(exc, "The sign-in did not complete") from exc

    def fetch_remote_image(self, url: str) -> ports.RemoteImage:
        return images.fetch_image(url)

    def check_sender(self, headers: dict, from_address: str) -> ports.SenderCheck:
        verdict = authentication.check_sender(headers, from_address)
        return ports.SenderCheck(status=verdict.status, detail=verdict.detail)

    def sync_soon(self, mailbox_id: int) -> None:
        # The same claim as the beat tick's, so the two never both enqueue it.
        transaction.on_commit(
            lambda: dispatch.dispatch_due(
                enqueue=lambda pk: tasks.sync_mailbox.delay(pk), only=mailbox_id
            )
        )

    def send_soon(self, entry_id: int, delay_seconds: float = 0) -> None:
        # robust: a broker hiccup must not fail the person's save; the outbox tick sends it.
        # A countdown that fires early (or eager tasks, which ignore it) finds the entry still
        # held and does nothing (connector/outbound/outbox.py process_entry).
        transaction.on_commit(
            lambda: tasks.send_outbox_entry.apply_async(
                (entry_id,), countdown=delay_seconds or None
            ),
            robust=True,
        )

    def import_soon(self, job_id: int) -> None:
        # robust: a broker hiccup must not fail the upload; the beat enqueues a waiting job.
        transaction.on_commit(lambda: tasks.import_files.delay(job_id), robust=True)

    def import_again(self, entry_id: int) -> None:
        transaction.on_commit(lambda: tasks.import_retry.delay(entry_id))
