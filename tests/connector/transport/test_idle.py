"""The push gateway's IMAP client (connector/transport/idle.py) against the real Dovecot of
tests/servers/ and the fault proxy: NOTIFY where offered, IDLE and a STATUS sweep otherwise,
and every way a connection dies (docs/reliability.md P-11..P-13). Timings are shortened through
``Timing``; the tests wait on events, never on the clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from connector.transport.errors import AuthenticationFailed, TemporaryFailure
from connector.transport.idle import IdleClient, Timing
from connector.transport.imap import ImapSettings
from tests.connector.synckit import make_raw
from tests.servers.dovecot import NO_CONDSTORE_CAPABILITY, start_dovecot, stop_dovecot

# Dovecot's own list without NOTIFY: a server where only IDLE can watch.
NO_NOTIFY_CAPABILITY = " ".join(
    c for c in (NO_CONDSTORE_CAPABILITY + " CONDSTORE").split() if c != "NOTIFY"
)
WAIT = 30.0  # generous: a loaded machine; nothing here asserts a duration


def run_loop(coro):
    """asyncio.run in a thread of its own: a Playwright test that ran earlier on this xdist
    worker leaves its event loop set on the main thread, where asyncio.run refuses to start."""
    result = {}

    def target():
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the test's own thread below
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture(scope="module")
def dovecot_no_notify(test_certificate):
    server = start_dovecot(test_certificate, capability=NO_NOTIFY_CAPABILITY)
    yield server
    stop_dovecot(server)


def settings_for(user, *, host=None, port=None, password=None, security="none") -> ImapSettings:
    server = user.server
    return ImapSettings(
        host=host or server.host,
        port=port or server.port,
        security=security,
        login=str(user),
        password=password if password is not None else user.password,
        allow_insecure_cert=True,
    )


async def watch_until(client, folders, *, timing, until, idle_folder="INBOX"):
    """Run ``client.watch``; call ``until(changed)`` (in a thread) once live; return the folders
    reported changed, or the exception the watch ended with."""
    changed: list[str] = []
    news = asyncio.Event()
    live = asyncio.Event()

    def on_change(folders):
        changed.extend(folders)
        news.set()

    task = asyncio.create_task(
        client.watch(
            folders,
            on_change=on_change,
            timing=timing,
            idle_folder=idle_folder,
            on_live=lambda mode: live.set(),
        )
    )
    async with asyncio.timeout(WAIT):
        await asyncio.wait([task, asyncio.create_task(live.wait())], return_when="FIRST_COMPLETED")
    await asyncio.to_thread(until)
    try:
        async with asyncio.timeout(WAIT):
            done, _ = await asyncio.wait(
                [task, asyncio.create_task(news.wait())], return_when="FIRST_COMPLETED"
            )
    finally:
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        return task.exception()
    return changed


def test_notify_reports_new_mail_in_any_watched_folder_on_one_connection(imap_user):
    async def main():
        client = await IdleClient.connect(settings_for(imap_user))
        assert "NOTIFY" in client.capabilities
        changed = await watch_until(
            client,
            ["INBOX", "Archive"],
            timing=Timing(),
            until=lambda: imap_user.server.deliver(
                imap_user, make_raw("filed by a rule"), folder="Archive"
            ),
        )
        assert client.mode == "notify"
        client.abort()
        return changed

    assert set(run_loop(main())) == {"Archive"}


def test_without_notify_idle_watches_the_inbox(dovecot_no_notify):
    user = dovecot_no_notify.create_user()
    user_obj = type("U", (str,), {})(user)
    user_obj.server, user_obj.password = dovecot_no_notify, dovecot_no_notify.password(user)

    async def main():
        client = await IdleClient.connect(settings_for(user_obj))
        assert "NOTIFY" not in client.capabilities
        changed = await watch_until(
            client,
            ["INBOX", "Archive"],
            timing=Timing(),
            until=lambda: dovecot_no_notify.deliver(user, make_raw("new")),
        )
        assert client.mode == "idle"
        client.abort()
        return changed

    assert set(run_loop(main())) == {"INBOX"}


def test_without_notify_a_status_sweep_finds_mail_in_the_other_folders(dovecot_no_notify):
    user = dovecot_no_notify.create_user()
    user_obj = type("U", (str,), {})(user)
    user_obj.server, user_obj.password = dovecot_no_notify, dovecot_no_notify.password(user)

    async def main():
        client = await IdleClient.connect(settings_for(user_obj))
        changed = await watch_until(
            client,
            ["INBOX", "Archive"],
            timing=Timing(sweep=0.5),
            until=lambda: dovecot_no_notify.deliver(user, make_raw("moved"), folder="Archive"),
        )
        client.abort()
        return changed

    assert set(run_loop(main())) == {"Archive"}


@pytest.mark.parametrize("fault", ["cut", "bye", "silent"])
def test_a_connection_that_dies_is_detected(imap_user, fault_proxy, fault):
    """Dropped, BYE, or silent behind a middlebox: each ends the watch with TemporaryFailure
    (the gateway then reconnects: tests/connector/scheduling/test_push_gateway.py)."""
    if fault == "bye":
        fault_proxy.inject_after(b"+ idling\r\n", b"* BYE shutting down for maintenance\r\n")
    elif fault == "silent":
        fault_proxy.mute_after(b"+ idling\r\n")

    async def main():
        client = await IdleClient.connect(
            settings_for(imap_user, host=fault_proxy.host, port=fault_proxy.port)
        )
        until = fault_proxy.cut_all if fault == "cut" else (lambda: None)
        # A watchdog of 1 s: a connection silent that long is dead (production: 5 minutes).
        return await watch_until(client, ["INBOX"], timing=Timing(watchdog=1.0), until=until)

    outcome = run_loop(main())
    assert isinstance(outcome, TemporaryFailure), outcome
    expected = {"cut": "closed", "bye": "BYE", "silent": "silent"}[fault]
    assert expected in str(outcome)


def test_a_refused_login_is_authentication_failed(imap_user):
    async def main():
        await IdleClient.connect(settings_for(imap_user, password="not the password"))

    with pytest.raises(AuthenticationFailed):
        run_loop(main())


def test_tls_and_starttls_verify_the_certificate_like_the_sync(imap_user):
    server = imap_user.server

    async def main(security, port, insecure):
        s = settings_for(imap_user, security=security, port=port)
        s = ImapSettings(**{**s.__dict__, "allow_insecure_cert": insecure})
        client = await IdleClient.connect(s)
        client.abort()

    run_loop(main("ssl", server.tls_port, True))
    run_loop(main("starttls", server.port, True))
    from connector.transport.errors import PermanentFailure

    with pytest.raises(PermanentFailure) as refused:
        run_loop(main("ssl", server.tls_port, False))  # self-signed: not trusted
    assert refused.value.category == "tls"
