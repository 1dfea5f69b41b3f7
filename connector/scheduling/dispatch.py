"""The beat tick: find every mailbox that is due and enqueue one sync task for it.

Claiming a due mailbox is one conditional UPDATE that pushes its next_sync_at forward, so two
beats started by mistake, or a tick that overlaps the previous one, dispatch each due mailbox
once. If the task is lost (broker restart), next_sync_at passes again and the mailbox is
dispatched again: a lost message delays a sync, never drops it (docs/reliability.md I-02).
A sync whose worker died (its lease run out, never released: connector/sync/lease.py) is due at
once, whatever its next_sync_at says (I-03)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from crm.selectors import mail_on
from inbox.models import Mailbox

# How long a dispatched mailbox is left alone before it may be dispatched again if its task
# never ran. The lease still prevents overlap if it did run late.
CLAIM_FOR = timedelta(minutes=5)
SYNCABLE = (Mailbox.State.ACTIVE, Mailbox.State.ERROR, Mailbox.State.SYNCING)
CLAIM_CHUNK = 1000  # mailboxes claimed by one UPDATE


def due_mailboxes(now=None):
    now = now or timezone.now()
    return Mailbox.objects.filter(state__in=SYNCABLE).filter(
        Q(next_sync_at__isnull=True)
        | Q(next_sync_at__lte=now)
        | Q(sync_requested_at__isnull=False)
        | Q(lease_expires_at__lte=now)  # a sync that never released its lease: it died
    )


def dispatch_due(
    *, enqueue: Callable[[int], None], now=None, limit: int = 10_000, only: int | None = None
) -> list[int]:
    """Claim and enqueue up to `limit` due mailboxes, the longest-waiting first: one SELECT,
    then one UPDATE per CLAIM_CHUNK mailboxes (bench/scale.py: a claim per mailbox cost ~3 ms,
    so one tick could not keep up with 100,000 mailboxes on a 5-minute interval)."""
    if not mail_on():
        # The site's mail switch is off (docs/product.md §8.1): nothing is claimed, so every
        # due mailbox is still due, and synced, on the first tick after it is on again.
        return []
    now = now or timezone.now()
    due = due_mailboxes(now)
    if only is not None:
        due = due.filter(pk=only)
    candidates = list(
        due.order_by(F("next_sync_at").asc(nulls_first=True), "pk").values_list("pk", flat=True)[
            :limit
        ]
    )
    dispatched: list[int] = []
    for start in range(0, len(candidates), CLAIM_CHUNK):
        for pk in _claim(candidates[start : start + CLAIM_CHUNK], now):
            enqueue(pk)
            dispatched.append(pk)
    return dispatched


def _claim(pks: list[int], now) -> list[int]:
    """Push next_sync_at forward for those of `pks` still due, and return them. The condition
    is checked again as each row is written (PostgreSQL re-reads a row another transaction
    changed meanwhile; SQLite writes one transaction at a time), so two beats, or a tick
    overlapping the previous one, never both claim a mailbox. A lease that ran out is cleared
    with the claim, so a dead sync is claimed once, not at every tick until the new one starts
    (a holder still alive renews it: the new sync then finds it busy and asks for one more).
    Its own transaction (autocommit): committed before any task is enqueued."""
    quote = connection.ops.quote_name
    stamp = connection.ops.adapt_datetimefield_value
    sql = (
        f"UPDATE {quote(Mailbox._meta.db_table)}"
        " SET next_sync_at = %s, sync_requested_at = NULL,"
        " lease_expires_at = CASE WHEN lease_expires_at <= %s THEN NULL ELSE lease_expires_at END"
        f" WHERE id IN ({', '.join(['%s'] * len(pks))})"
        f" AND state IN ({', '.join(['%s'] * len(SYNCABLE))})"
        " AND (next_sync_at IS NULL OR next_sync_at <= %s OR sync_requested_at IS NOT NULL"
        " OR lease_expires_at <= %s)"
        " RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                stamp(now + CLAIM_FOR),
                stamp(now),
                *pks,
                *SYNCABLE,
                stamp(now),
                stamp(now),
            ],
        )
        return sorted(row[0] for row in cursor.fetchall())
