"""Events from other layers that become Celery tasks, each enqueued once the writing
transaction commits. The beat's safety nets (connector/emailapi/intake.py file_pending, the
outbox tick) pick up the work anyway, so a lost event only delays it."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from crm.signals import addresses_added

from ..ingest.signals import messages_stored

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
