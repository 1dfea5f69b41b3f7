"""Which push gateway watches which mailbox: leases in the database, with a fencing number.

Every running `manage.py push_gateway` is a PushGateway row; its id is the fencing number of
the watches it holds (Mailbox.watch_gateway). Why the database, as for the sync lease
(connector/sync/lease.py): it survives a broker restart, works on the embedded SQLite install,
and the dispatcher reads a watch's health in the same query as the rest of the mailbox.

- A gateway renews with ONE statement per renewal, however many mailboxes it holds: it moves
  its own row's expiry forward (``renew``). Zero rows updated means it was declared dead:
  it must drop every connection at once (docs/reliability.md P-15).
- A watch is healthy only while its gateway's row has not expired (``live_q``): a gateway that
  dies stops counting as a watch the moment its lease runs out, without anybody writing.
- ``reap`` (the beat tick and every gateway call it) deletes expired gateways, hands their
  mailboxes back to polling and makes each due at once, so a dead gateway's mailboxes are
  synced within one lease TTL plus one tick (docs/reliability.md P-14).
- Mailboxes are shared out by ``fair_share``: a gateway claims unwatched mailboxes up to its
  share and releases what it holds beyond it, so gateways rebalance when one joins or dies
  (docs/reliability.md P-16). A claim is a conditional UPDATE (``watch_gateway IS NULL``), so
  two gateways never claim one mailbox.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from crm.selectors import mail_on
from inbox.models import Mailbox, PushGateway, WatchState

# Mailboxes worth a connection: the ones the beat would sync, whose first sync is done (their
# folders are known). Paused and needs-reconnect mailboxes are never watched (§3.11).
WATCHABLE = (Mailbox.State.ACTIVE, Mailbox.State.ERROR, Mailbox.State.SYNCING)


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.RELAY_PUSH_LEASE_TTL)


def live_q(now=None) -> Q:
    """Mailboxes with a healthy watch: connected, and their gateway's lease still running."""
    now = now or timezone.now()
    return Q(watch_state=WatchState.LIVE, watch_gateway__expires_at__gt=now)


def watchable():
    """Mailboxes a push gateway should watch: none while the site's mail switch is off
    (docs/product.md §8.1), so each gateway's next tick closes every watch it holds."""
    if not mail_on():
        return Mailbox.objects.none()
    return Mailbox.objects.filter(state__in=WATCHABLE, first_sync_done=True).exclude(imap_host="")


def register(name: str) -> PushGateway:
    now = timezone.now()
    reap(now)
    return PushGateway.objects.create(
        name=name[:200], heartbeat_at=now, expires_at=now + lease_ttl()
    )


def renew(gateway_id: int, *, sessions: int = 0, live: int = 0) -> bool:
    """One UPDATE; False when this gateway was declared dead (its claims are gone)."""
    now = timezone.now()
    return bool(
        PushGateway.objects.filter(pk=gateway_id, expires_at__gt=now).update(
            heartbeat_at=now, expires_at=now + lease_ttl(), sessions=sessions, live=live
        )
    )


def reap(now=None) -> int:
    """Delete the gateways whose lease ran out; their mailboxes go back to polling, due now."""
    now = now or timezone.now()
    dead = list(PushGateway.objects.filter(expires_at__lte=now).values_list("pk", flat=True))
    if not dead:
        return 0
    with transaction.atomic():
        released = Mailbox.objects.filter(watch_gateway_id__in=dead).update(
            watch_gateway=None,
            watch_state=WatchState.POLLING,
            watch_error="its push gateway stopped",
            watch_changed_at=now,
            next_sync_at=now,
        )
        PushGateway.objects.filter(pk__in=dead, expires_at__lte=now).delete()
    return released


def leave(gateway_id: int) -> int:
    """A gateway that stops cleanly hands everything back at once (no TTL to wait out)."""
    now = timezone.now()
    with transaction.atomic():
        released = Mailbox.objects.filter(watch_gateway_id=gateway_id).update(
            watch_gateway=None,
            watch_state=WatchState.POLLING,
            watch_error="",
            watch_changed_at=now,
            next_sync_at=now,
        )
        PushGateway.objects.filter(pk=gateway_id).delete()
    return released


def fair_share(now=None, *, cap: int | None = None) -> int:
    """How many mailboxes each live gateway should hold: all watchable ones split evenly."""
    now = now or timezone.now()
    gateways = max(PushGateway.objects.filter(expires_at__gt=now).count(), 1)
    share = math.ceil(watchable().count() / gateways)
    return min(share, cap) if cap is not None else share


def held(gateway_id: int) -> list[int]:
    """The mailboxes this gateway holds and should keep watching."""
    return list(
        watchable().filter(watch_gateway_id=gateway_id).order_by("pk").values_list("pk", flat=True)
    )


def release_unwatchable(gateway_id: int) -> int:
    """Mailboxes paused, needing reconnect or deleted meanwhile: not watched any more."""
    return (
        Mailbox.objects.filter(watch_gateway_id=gateway_id)
        .exclude(pk__in=watchable().values("pk"))
        .update(watch_gateway=None, watch_state=WatchState.POLLING, watch_changed_at=timezone.now())
    )


def claim(gateway_id: int, limit: int) -> list[int]:
    """Up to ``limit`` unwatched mailboxes for this gateway (only while its lease holds)."""
    if limit <= 0:
        return []
    candidates = list(
        watchable()
        .filter(watch_gateway__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    if not candidates:
        return []
    now = timezone.now()
    with transaction.atomic():
        if not PushGateway.objects.filter(pk=gateway_id, expires_at__gt=now).exists():
            return []
        # Checked again as each row is written: two gateways never both take one mailbox.
        Mailbox.objects.filter(pk__in=candidates, watch_gateway__isnull=True).update(
            watch_gateway=gateway_id, watch_state=WatchState.CONNECTING, watch_changed_at=now
        )
    return list(
        Mailbox.objects.filter(pk__in=candidates, watch_gateway_id=gateway_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def release(gateway_id: int, mailbox_ids: list[int]) -> int:
    """Give mailboxes back (rebalancing): polled until another gateway claims them."""
    now = timezone.now()
    return Mailbox.objects.filter(pk__in=mailbox_ids, watch_gateway_id=gateway_id).update(
        watch_gateway=None, watch_state=WatchState.POLLING, watch_changed_at=now, next_sync_at=now
    )


def set_state(gateway_id: int, mailbox_id: int, state: str, error: str = "") -> bool:
    """Record how the watch is. Fenced: a gateway that lost the mailbox writes nothing. A watch
    that stops being live makes the mailbox due at once: it goes straight back to its polling
    interval, starting with a sync now that catches what the broken connection missed."""
    now = timezone.now()
    mine = Mailbox.objects.filter(pk=mailbox_id, watch_gateway_id=gateway_id)
    with transaction.atomic():
        if state != WatchState.LIVE:
            mine.filter(watch_state=WatchState.LIVE).update(next_sync_at=now)
        return bool(mine.update(watch_state=state, watch_error=error[:500], watch_changed_at=now))
