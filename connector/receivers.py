"""Receivers for inbox signals: enqueue connector tasks once the writing transaction commits."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import receiver

from crm.signals import addresses_added
from inbox.models import Mailbox
from inbox.signals import (
    messages_stored,
    oauth_authorization_requested,
    oauth_code_received,
    outbox_queued,
    smtp_test_requested,
    sync_requested,
)

from . import dispatch
from .errors import AuthenticationFailed, MailError, TemporaryFailure


@receiver(sync_requested, sender=Mailbox)
def enqueue_sync(sender, mailbox_id: int, **kwargs) -> None:
    """ "Sync now": dispatch this mailbox at once instead of waiting for the next beat tick
    (the same claim as the tick's, so the two never both enqueue it)."""
    from .tasks import sync_mailbox

    transaction.on_commit(
        lambda: dispatch.dispatch_due(enqueue=lambda pk: sync_mailbox.delay(pk), only=mailbox_id)
    )


# --- matching and filing (issue 4) ------------------------------------------------------------
FILING_CHUNK = 1000  # message ids per filing task: one bulk-matched batch each


@receiver(messages_stored)
def enqueue_filing(sender, mailbox_id: int, message_ids, initial: bool = False, **kwargs) -> None:
    """New mail is filed in the background, once the batch that stored it has committed."""
    from .tasks import file_messages

    ids = sorted(message_ids)

    def enqueue() -> None:
        for start in range(0, len(ids), FILING_CHUNK):
            file_messages.delay(ids[start : start + FILING_CHUNK], initial)

    # robust: a broker hiccup is logged and must not fail the sync batch that already committed.
    transaction.on_commit(enqueue, robust=True)


@receiver(addresses_added)
def enqueue_refiling(sender, emails=(), domains=(), **kwargs) -> None:
    """An address or domain was added to a record: file the past mail it now matches."""
    from .tasks import refile_for_addresses

    emails, domains = list(emails), list(domains)
    # robust: a broker hiccup is logged and must not fail the person's save.
    transaction.on_commit(lambda: refile_for_addresses.delay(emails, domains), robust=True)


# --- sending and OAuth (issue 5) ----------------------------------------------------------------


@receiver(outbox_queued)
def enqueue_send(sender, entry_id: int, **kwargs) -> None:
    """Send a queued entry now; the outbox tick sends it anyway if this enqueue is lost."""
    from .tasks import send_outbox_entry

    transaction.on_commit(lambda: send_outbox_entry.delay(entry_id), robust=True)


@receiver(smtp_test_requested)
def answer_smtp_test(sender, mailbox, **kwargs) -> str | None:
    from .sending import smtp_connection_check

    return smtp_connection_check(mailbox)


def _user_error(exc: MailError, action: str) -> ValidationError:
    """What the person at the browser is told (inbox cannot catch connector errors)."""
    if isinstance(exc, AuthenticationFailed):
        return ValidationError(f"{action}: the provider refused the sign-in. Try again.")
    if isinstance(exc, TemporaryFailure):
        return ValidationError(f"{action}: the provider could not be reached. Try again soon.")
    return ValidationError(f"{action}: {str(exc).removeprefix('OAuth: ')}.")


@receiver(oauth_authorization_requested)
def answer_oauth_authorization(sender, provider: str, redirect_uri: str, **kwargs):
    from .oauth import authorization_request

    try:
        return authorization_request(provider, redirect_uri=redirect_uri)
    except MailError as exc:
        raise _user_error(exc, "Signing in is not available") from exc


@receiver(oauth_code_received)
def answer_oauth_code(
    sender, provider: str, code: str, code_verifier: str, redirect_uri: str, nonce="", **kwargs
):
    from .oauth import exchange_code

    try:
        return exchange_code(
            provider, code=code, code_verifier=code_verifier, redirect_uri=redirect_uri, nonce=nonce
        )
    except MailError as exc:
        raise _user_error(exc, "The sign-in did not complete") from exc
