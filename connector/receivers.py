"""Receivers for inbox signals: enqueue connector tasks once the writing transaction commits."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from crm.signals import addresses_added
from inbox.models import Mailbox
from inbox.signals import messages_stored, sync_requested

from . import dispatch


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
