"""`manage.py push_gateway` end to end: a real gateway process, real Celery workers (consuming
the `push` queue), the real Dovecot of tests/servers/ and its fault proxy (docs/product.md
§3.11, docs/reliability.md P-11..P-16). Timeouts in the gateway's environment are short so that
faults show quickly; the tests wait on what a person would see, never on the clock."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from connector.sync import mailbox as sync
from inbox.models import LedgerEntry, Mailbox, Message, PushGateway, WatchState
from tests.connector.synckit import make_mailbox, make_raw
from tests.workerkit import celery_processes, wait_for  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("processes")]

FAST = dict(
    RELAY_PUSH_LEASE_TTL="3",
    RELAY_PUSH_WATCHDOG="2",
    RELAY_PUSH_BACKOFF_MAX="0.5",
    RELAY_IMAP_TIMEOUT="10",
)


@pytest.fixture(autouse=True)
def _postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("gateway and worker processes share the database (PostgreSQL)")


def synced_mailbox(user, **fields) -> Mailbox:
    """A mailbox whose first sync is done, next polled in a day: any mail that arrives before
    then came through the gateway."""
    mailbox = make_mailbox(user, **fields)
    assert sync.sync_mailbox(mailbox.pk).completed
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=timezone.now() + dt.timedelta(days=1))
    return mailbox


def watch_state(mailbox) -> str:
    return Mailbox.objects.values_list("watch_state", flat=True).get(pk=mailbox.pk)


def wait_live(mailbox, what="the mailbox watched live"):
    wait_for(lambda: watch_state(mailbox) == WatchState.LIVE, timeout=90, what=what)


def stored(subject: str) -> int:
    return Message.objects.filter(subject=subject).count()


def test_a_delivery_reaches_the_database_through_the_gateway_without_any_poll(
    imap_user,
    celery_processes,  # noqa: F811
):
    mailbox = synced_mailbox(imap_user)
    poll_at = Mailbox.objects.get(pk=mailbox.pk).next_sync_at
    celery_processes.worker("w1")
    celery_processes.gateway("g1", **FAST)
    wait_live(mailbox)

    imap_user.server.deliver(imap_user, make_raw("pushed to us"))

    wait_for(lambda: stored("pushed to us") == 1, timeout=90, what="the pushed message stored")
    mailbox.refresh_from_db()
    assert mailbox.next_sync_at == poll_at  # no poll ran: only the push's targeted syncs
    assert mailbox.watch_gateway.name == "g1"
    log = celery_processes.log("w1")
    assert "Task relay.push_sync[" in log and "Task relay.sync_mailbox[" not in log


def test_a_gateway_killed_mid_idle_loses_nothing_polling_takes_over(
    imap_user,
    celery_processes,  # noqa: F811
):
    mailbox = synced_mailbox(imap_user)
    celery_processes.worker("w1")
    celery_processes.gateway("g1", **FAST)
    wait_live(mailbox)
    celery_processes.kill("g1")  # SIGKILL: no goodbye, its lease just stops being renewed

    imap_user.server.deliver(imap_user, make_raw("while nobody watched"))
    celery_processes.beat("beat")  # reaps the dead gateway, then polls the mailbox

    # Two things happen, in either order: the beat's safety poll may sync the mail before the
    # dead gateway's lease has run out, and the reap hands the mailbox back once it has.
    wait_for(
        lambda: (
            stored("while nobody watched") == 1
            and Mailbox.objects.filter(
                pk=mailbox.pk, watch_gateway=None, watch_state=WatchState.POLLING
            ).exists()
        ),
        timeout=90,
        what="the mail synced by polling and the dead gateway's watch handed back",
    )
    assert not PushGateway.objects.exists()
    assert Message.objects.filter(mailbox=mailbox).count() == 1  # nothing doubled
    assert LedgerEntry.objects.filter(mailbox=mailbox, outcome="stored").count() == 1


@pytest.mark.parametrize("fault", ["dropped", "bye", "silent"])
def test_a_broken_connection_is_detected_and_reconnected(
    imap_user,
    fault_proxy,
    celery_processes,  # noqa: F811
    fault,
):
    mailbox = synced_mailbox(imap_user, imap_port=fault_proxy.port)
    celery_processes.worker("w1")
    celery_processes.gateway("g1", **FAST)
    wait_live(mailbox)
    first = fault_proxy.connections

    if fault == "dropped":
        fault_proxy.cut_all()
    elif fault == "bye":
        imap_user.server.kick(imap_user)  # Dovecot says BYE and closes
    else:
        fault_proxy.mute_after(b"+ idling\r\n")  # the next connection goes silent once idle
        fault_proxy.cut_all()
        wait_for(
            lambda: fault_proxy.connections >= first + 2,
            timeout=60,
            what="the silent connection declared dead by the watchdog and replaced",
        )
        fault_proxy.normal()
    wait_for(
        lambda: fault_proxy.connections > first and watch_state(mailbox) == WatchState.LIVE,
        timeout=90,
        what="a new connection, live again",
    )
    imap_user.server.deliver(imap_user, make_raw("after the fault"))
    wait_for(lambda: stored("after the fault") == 1, timeout=90, what="mail after reconnecting")
    assert "connection lost" in celery_processes.log("g1")


def test_a_changed_password_stops_the_watch_and_shows_reconnect(
    imap_user,
    celery_processes,  # noqa: F811
    client,
):
    mailbox = synced_mailbox(imap_user)
    celery_processes.worker("w1")
    celery_processes.gateway("g1", **FAST)
    wait_live(mailbox)
    connections_before = imap_user.server.log().count("Login: user=<" + str(imap_user))

    imap_user.server.set_password(imap_user, "changed-elsewhere")
    imap_user.server.kick(imap_user)

    wait_for(
        lambda: Mailbox.objects.get(pk=mailbox.pk).state == Mailbox.State.NEEDS_RECONNECT,
        timeout=90,
        what="needs reconnect",
    )
    wait_for(
        lambda: Mailbox.objects.get(pk=mailbox.pk).watch_gateway_id is None,
        timeout=60,
        what="the mailbox released by the gateway",
    )
    assert watch_state(mailbox) == WatchState.POLLING
    # One refused login, then no retry storm (docs/reliability.md S-28).
    failed = imap_user.server.log().count(str(imap_user))
    client.force_login(mailbox.owner)
    page = client.get(reverse("inbox:mailbox_health", args=[mailbox.pk])).content.decode()
    assert "Reconnect" in page
    assert imap_user.server.log().count(str(imap_user)) == failed
    assert connections_before >= 1


def test_a_push_sync_that_meets_a_database_outage_retries_until_it_is_back(
    imap_user,
    celery_processes,  # noqa: F811
):
    """The worker reaches PostgreSQL through a proxy (tests/servers/faultproxy.py) that cuts
    every connection while the outage lasts: a real database going away (restart, failover),
    as the worker sees it. The pushed mail's sync retries, and the mail is stored once the
    database is back, without waiting for the hourly safety poll (docs/reliability.md P-27)."""
    from tests.servers.faultproxy import FaultProxy

    mailbox = synced_mailbox(imap_user)
    db = connection.settings_dict
    with FaultProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as proxy:
        celery_processes.env["DATABASE_URL"] = (
            f"postgres://{db['USER']}@{proxy.host}:{proxy.port}/{db['NAME']}"
        )
        celery_processes.worker("w1")
        wait_for(lambda: "ready." in celery_processes.log("w1"), timeout=60, what="worker up")
        celery_processes.gateway("g1", **FAST)
        wait_live(mailbox)

        proxy.cut_after(0)  # the database is gone for the worker...
        proxy.cut_all()
        imap_user.server.deliver(imap_user, make_raw("pushed during an outage"))
        wait_for(
            lambda: (
                "relay.push_sync" in celery_processes.log("w1")
                and "Retry in" in celery_processes.log("w1")
            ),
            timeout=90,
            what="the push sync to meet the outage and be retried",
        )
        assert stored("pushed during an outage") == 0
        proxy.normal()  # ...and back

        wait_for(
            lambda: stored("pushed during an outage") == 1,
            timeout=90,
            what="the message stored once the database is back",
        )
    assert "Task relay.sync_mailbox[" not in celery_processes.log("w1")  # no poll brought it
