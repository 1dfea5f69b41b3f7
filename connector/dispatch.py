"""The beat tick: find every mailbox that is due and enqueue one sync task for it.

Claiming a due mailbox is one conditional UPDATE that pushes its next_sync_at forward, so two
beats started by mistake, or a tick that overlaps the previous one, dispatch each due mailbox
once. If the task is lost (broker restart), next_sync_at passes again and the mailbox is
dispatched again: a lost message delays a sync, never drops it (I-02)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from inbox.models import Mailbox

# How long a dispatched mailbox is left alone before it may be dispatched again if its task
# never ran. The lease still prevents overlap if it did run late.
CLAIM_FOR = timedelta(minutes=5)
SYNCABLE = (Mailbox.State.ACTIVE, Mailbox.State.ERROR, Mailbox.State.SYNCING)


def due_mailboxes(now=None):
    now = now or timezone.now()
    return Mailbox.objects.filter(state__in=SYNCABLE).filter(
        Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now) | Q(sync_requested_at__isnull=False)
    )


def dispatch_due(
    *, enqueue: Callable[[int], None], now=None, limit: int = 1000, only: int | None = None
) -> list[int]:
    now = now or timezone.now()
    dispatched = []
    due = due_mailboxes(now)
    if only is not None:
        due = due.filter(pk=only)
    for pk, requested in due.values_list("pk", "sync_requested_at")[:limit]:
        claim = Mailbox.objects.filter(pk=pk, state__in=SYNCABLE)
        if requested is None:
            claim = claim.filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        else:
            claim = claim.filter(sync_requested_at=requested)
        if claim.update(next_sync_at=now + CLAIM_FOR, sync_requested_at=None):
            enqueue(pk)
            dispatched.append(pk)
    return dispatched
