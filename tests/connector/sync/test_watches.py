"""Leases of the push gateways (connector/sync/watches.py): one renewal statement, fencing,
rebalancing, and a dead gateway's mailboxes back to polling (docs/reliability.md P-14..P-16)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connector.scheduling import tasks
from connector.scheduling.dispatch import dispatch_due
from connector.sync import mailbox as sync
from connector.sync import watches
from inbox.models import Mailbox, PushGateway, WatchState
from tests import factories as f

pytestmark = pytest.mark.django_db


def watchable(n: int) -> list[Mailbox]:
    later = timezone.now() + dt.timedelta(hours=1)
    return [f.MailboxFactory(first_sync_done=True, next_sync_at=later) for _ in range(n)]


def test_renewal_is_one_statement_however_many_mailboxes_a_gateway_holds():
    gateway = watches.register("g1")
    for n in (3, 30):
        watchable(n)
        watches.claim(gateway.pk, 1000)
        with CaptureQueriesContext(connection) as queries:
            assert watches.renew(gateway.pk, sessions=n, live=n)
        assert len(queries) == 1


def test_two_gateways_share_the_mailboxes_and_never_claim_one_twice():
    boxes = watchable(10)
    first = watches.register("g1")
    assert watches.fair_share() == 10
    assert len(watches.claim(first.pk, watches.fair_share())) == 10
    second = watches.register("g2")  # joins: the share halves
    assert watches.fair_share() == 5
    assert watches.claim(second.pk, 5) == []  # all taken: the first must give back first
    held = watches.held(first.pk)
    watches.release(first.pk, held[5:])
    taken = watches.claim(second.pk, 5)
    assert sorted(taken + watches.held(first.pk)) == sorted(b.pk for b in boxes)
    assert not set(taken) & set(watches.held(first.pk))


def test_a_dead_gateways_mailboxes_go_back_to_polling_due_at_once():
    boxes = watchable(3)
    gateway = watches.register("g1")
    watches.claim(gateway.pk, 3)
    for box in boxes:
        watches.set_state(gateway.pk, box.pk, WatchState.LIVE)
    assert Mailbox.objects.filter(watches.live_q()).count() == 3
    # Its lease runs out (SIGKILL, a frozen machine): it no longer counts as a watch at once...
    later = timezone.now() + watches.lease_ttl() + dt.timedelta(seconds=1)
    assert Mailbox.objects.filter(watches.live_q(later)).count() == 0
    # ...and the next reap hands everything back, due now.
    assert watches.reap(later) == 3
    assert not PushGateway.objects.exists()
    for box in Mailbox.objects.filter(pk__in=[b.pk for b in boxes]):
        assert box.watch_gateway_id is None and box.watch_state == WatchState.POLLING
    dispatched: list[int] = []
    dispatch_due(enqueue=dispatched.append, now=later)
    assert sorted(dispatched) == sorted(b.pk for b in boxes)
    # The dead gateway, waking up, is fenced off: its renewal fails and its writes match nothing.
    assert not watches.renew(gateway.pk)
    assert not watches.set_state(gateway.pk, boxes[0].pk, WatchState.LIVE)


def test_the_beat_tick_reaps_dead_gateways(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    (box,) = watchable(1)
    gateway = watches.register("g1")
    watches.claim(gateway.pk, 1)
    PushGateway.objects.filter(pk=gateway.pk).update(expires_at=timezone.now())
    enqueued = []
    tasks.sync_mailbox.delay = enqueued.append  # the broker is not what this test is about
    try:
        tasks.beat_tick()
    finally:
        del tasks.sync_mailbox.delay
    assert enqueued == [box.pk]


def test_a_live_watch_polls_only_hourly_and_a_broken_one_at_its_interval():
    (box,) = watchable(1)
    gateway = watches.register("g1")
    watches.claim(gateway.pk, 1)
    watches.set_state(gateway.pk, box.pk, WatchState.LIVE)
    box.refresh_from_db()
    assert sync.poll_interval(box) == dt.timedelta(hours=1)
    watches.set_state(gateway.pk, box.pk, WatchState.RECONNECTING, "connection lost")
    box.refresh_from_db()
    assert sync.poll_interval(box) == dt.timedelta(seconds=box.refresh_interval)
    assert box.next_sync_at <= timezone.now()  # broken: polled now, then at its interval


def test_paused_and_needs_reconnect_mailboxes_are_not_watched():
    paused, refused, ok = watchable(3)
    Mailbox.objects.filter(pk=paused.pk).update(state=Mailbox.State.PAUSED)
    gateway = watches.register("g1")
    assert sorted(watches.claim(gateway.pk, 10)) == [refused.pk, ok.pk]
    Mailbox.objects.filter(pk=refused.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    assert watches.release_unwatchable(gateway.pk) == 1
    assert watches.held(gateway.pk) == [ok.pk]
