"""The beat tick dispatches each due mailbox once, however many beats run (docs/product.md §3.1)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from connector.scheduling.dispatch import dispatch_due
from inbox.models import Mailbox
from inbox.services.mailboxes import mailbox_pause, mailbox_request_sync, mailbox_resume
from tests import factories as f

pytestmark = pytest.mark.django_db


def collect():
    got: list[int] = []
    return got, got.append


def test_due_mailboxes_are_dispatched_once_even_by_two_beats():
    now = timezone.now()
    due = f.MailboxFactory(next_sync_at=now - dt.timedelta(seconds=1))
    new = f.MailboxFactory(next_sync_at=None)
    later = f.MailboxFactory(next_sync_at=now + dt.timedelta(minutes=3))
    paused = f.MailboxFactory(state=Mailbox.State.PAUSED)
    broken = f.MailboxFactory(state=Mailbox.State.NEEDS_RECONNECT)

    first, enqueue_first = collect()
    second, enqueue_second = collect()
    dispatch_due(enqueue=enqueue_first, now=now)
    dispatch_due(enqueue=enqueue_second, now=now)  # a second beat, started by mistake

    assert sorted(first) == sorted([due.pk, new.pk])
    assert second == []
    assert later.pk not in first and paused.pk not in first and broken.pk not in first


def test_sync_now_is_honoured_before_the_interval_and_only_once():
    mailbox = f.MailboxFactory(next_sync_at=timezone.now() + dt.timedelta(hours=1))
    mailbox_request_sync(mailbox=mailbox)
    first, enqueue = collect()
    dispatch_due(enqueue=enqueue)
    again, enqueue_again = collect()
    dispatch_due(enqueue=enqueue_again)
    assert first == [mailbox.pk] and again == []


def test_a_lost_task_is_dispatched_again_after_the_claim_runs_out():
    mailbox = f.MailboxFactory(next_sync_at=None)
    first, enqueue = collect()
    dispatch_due(enqueue=enqueue)
    assert first == [mailbox.pk]
    # The task vanished with a broker restart: nothing ran. Ten minutes later it is due again.
    later, enqueue_later = collect()
    dispatch_due(enqueue=enqueue_later, now=timezone.now() + dt.timedelta(minutes=10))
    assert later == [mailbox.pk]


def test_pause_and_resume():
    mailbox = f.MailboxFactory(next_sync_at=None)
    mailbox_pause(mailbox=mailbox)
    got, enqueue = collect()
    dispatch_due(enqueue=enqueue)
    assert got == []
    mailbox_resume(mailbox=mailbox)
    dispatch_due(enqueue=enqueue)
    assert got == [mailbox.pk]


def test_a_tick_claims_many_mailboxes_in_three_queries(django_assert_num_queries):
    now = timezone.now()
    due = f.SharedMailboxFactory.create_batch(30, next_sync_at=now - dt.timedelta(seconds=5))
    f.SharedMailboxFactory.create_batch(5, next_sync_at=now + dt.timedelta(minutes=1))
    got, enqueue = collect()
    # The site's mail switch (docs/product.md §8.1), the SELECT of the due, one claiming UPDATE.
    with django_assert_num_queries(3):
        dispatch_due(enqueue=enqueue, now=now)
    assert sorted(got) == sorted(m.pk for m in due)


def test_the_longest_waiting_go_first_when_a_tick_is_full():
    now = timezone.now()
    oldest = f.SharedMailboxFactory(next_sync_at=now - dt.timedelta(hours=2))
    never = f.SharedMailboxFactory(next_sync_at=None)
    f.SharedMailboxFactory.create_batch(3, next_sync_at=now - dt.timedelta(seconds=5))
    got, enqueue = collect()
    dispatch_due(enqueue=enqueue, now=now, limit=2)
    assert sorted(got) == sorted([never.pk, oldest.pk])


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_the_same_moment_dispatch_each_mailbox_exactly_once():
    """Two ticks racing on their own connections (two beats started by mistake), over
    mailboxes due by date and by "sync now": every mailbox is enqueued, none twice."""
    import threading

    from django.db import connection

    now = timezone.now()
    by_date = f.SharedMailboxFactory.create_batch(150, next_sync_at=now - dt.timedelta(seconds=5))
    asked = f.SharedMailboxFactory.create_batch(50, next_sync_at=now + dt.timedelta(hours=1))
    # As "Sync now" leaves them (without its own immediate dispatch, which would claim them
    # before the beats could race for them).
    Mailbox.objects.filter(pk__in=[m.pk for m in asked]).update(sync_requested_at=now)
    results: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def beat(index: int) -> None:
        try:
            start.wait()
            for _ in range(5):
                dispatch_due(enqueue=results[index].append, now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = results[0] + results[1]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == {m.pk for m in by_date + asked}


def test_a_sync_whose_worker_died_is_dispatched_again_once_its_lease_runs_out(settings):
    """A worker killed mid-sync leaves its mailbox "syncing" with a lease nobody renews. Once
    the lease has run out (RELAY_SYNC_LEASE_TTL), the next tick dispatches the mailbox, well
    before its claim (five minutes) would have; once, not at every tick until the new sync
    starts. A sync that is alive (its lease renewed) is left alone."""
    from connector.sync import lease as leases

    now = timezone.now()
    dead = f.MailboxFactory(next_sync_at=None)
    alive = f.MailboxFactory(next_sync_at=None)
    claimed, enqueue = collect()
    dispatch_due(enqueue=enqueue, now=now)
    assert sorted(claimed) == sorted([dead.pk, alive.pk])
    # Both syncs start; dead's worker is then killed, alive's renews its lease.
    for mailbox in (dead, alive):
        assert leases.acquire(mailbox.pk)
        Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.SYNCING)
    later = now + dt.timedelta(seconds=settings.RELAY_SYNC_LEASE_TTL + 1)
    Mailbox.objects.filter(pk=alive.pk).update(lease_expires_at=later + dt.timedelta(minutes=1))

    early, enqueue_early = collect()
    dispatch_due(enqueue=enqueue_early, now=now + dt.timedelta(seconds=5))
    assert early == []  # the lease is still running: the sync may be alive
    again, enqueue_again = collect()
    dispatch_due(enqueue=enqueue_again, now=later)
    assert again == [dead.pk]
    next_tick, enqueue_next = collect()
    dispatch_due(enqueue=enqueue_next, now=later + dt.timedelta(seconds=10))
    assert next_tick == []
    # The new sync takes the mailbox although the dead worker never released it.
    assert leases.acquire(dead.pk)
    assert leases.acquire(alive.pk) is None
