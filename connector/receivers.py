"""Receivers for inbox signals: enqueue connector tasks once the writing transaction commits."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from inbox.models import Mailbox
from inbox.signals import sync_requested

from . import dispatch


@receiver(sync_requested, sender=Mailbox)
def enqueue_sync(sender, mailbox_id: int, **kwargs) -> None:
    """ "Sync now": dispatch this mailbox at once instead of waiting for the next beat tick
    (the same claim as the tick's, so the two never both enqueue it)."""
    from .tasks import sync_mailbox

    transaction.on_commit(
        lambda: dispatch.dispatch_due(enqueue=lambda pk: sync_mailbox.delay(pk), only=mailbox_id)
    )
