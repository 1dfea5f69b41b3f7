"""Live updates (docs/product.md §7.14): the publisher (inbox/live.py) and the stream
(inbox/views/events.py), against real Redis and Relay under a real uvicorn
(tests/servers/asgi.py), read as a browser's EventSource reads it: over HTTP, line by line.
The faults are docs/reliability.md P-21..P-25."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import queue
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.test import Client

from inbox import live, livehub
from inbox import receivers as inbox_receivers
from inbox.models import Mailbox, Message
from inbox.services.conversations import conversation_assign
from inbox.services.mailbox_access import mailbox_revoke
from inbox.signals import mail_filed, mailbox_changed
from inbox.views import events as events_view
from notifications.models import Kind
from notifications.services import notify
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_publisher(settings):
    settings.RELAY_LIVE_HEARTBEAT = 0.3
    live.reset()
    yield
    live.reset()


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


class Stream:
    """One EventSource, by hand: frames parsed into ("event", kind, data) and ("comment", text)."""

    def __init__(self, server, user, *, last_event_id: str | None = None, rcvbuf: int = 0):
        self.cookie = session_cookie(user)
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        if rcvbuf:  # a slow client (docs/reliability.md P-24): a tiny window
            self.conn.sock = socket.socket()
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.conn.sock.connect(("127.0.0.1", server.port))
        headers = {"Cookie": f"sessionid={self.cookie}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", "/inbox/events/", headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.frames: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        if self.status == 200 and not rcvbuf:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        kind, data = "message", []
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.frames.put(("comment", line[1:].strip(), None))
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "":
                    if data:
                        self.frames.put(("event", kind, json.loads("\n".join(data))))
                    kind, data = "message", []
        except Exception:  # noqa: BLE001 - the test closed the connection under the reader
            pass
        finally:
            self.ended.set()

    def next_event(self, kind: str, timeout: float = 5.0) -> dict:
        return self.next_event_of({kind}, timeout)

    def next_event_of(self, kinds: set[str], timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {sorted(kinds)} event within {timeout} s")
            try:
                frame, name, data = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if frame == "event" and name in kinds:
                return data

    def events_within(self, seconds: float) -> list[tuple[str, dict]]:
        time.sleep(seconds)
        found = []
        while not self.frames.empty():
            frame, name, data = self.frames.get_nowait()
            if frame == "event":
                found.append((name, data))
        return found

    def close(self) -> None:
        if self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conn.close()


def in_a_thread(call):
    """Django's test client runs the async view with async_to_sync, which refuses a thread
    with a running event loop: Playwright's, when a browser test ran earlier in this process."""
    result = []
    worker = threading.Thread(target=lambda: result.append(call()))
    worker.start()
    worker.join(30)
    return result[0]


@pytest.fixture
def streams():
    opened: list[Stream] = []

    def open_stream(server, user, **kwargs) -> Stream:
        stream = Stream(server, user, **kwargs)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


def changed(mailbox) -> None:
    """What connector/sync/mailbox.py publish_changed sends once a sync stored something."""
    mailbox_changed.send_robust(sender=Mailbox, mailbox_id=mailbox.pk, folders=["INBOX"], stored=1)


def test_new_mail_reaches_the_readers_of_its_mailbox_and_nobody_else(
    asgi_server, streams, owner, teammate, admin_user, personal_mailbox, shared_mailbox
):
    shared_mailbox.granted_users.add(admin_user)
    mine = streams(asgi_server, owner)
    admins = streams(asgi_server, admin_user)
    colleague = streams(asgi_server, teammate)
    assert (mine.status, admins.status, colleague.status) == (200, 200, 200)
    time.sleep(0.2)  # subscribed just after they answered

    changed(personal_mailbox)
    event = mine.next_event("mail")
    # Ids only: no subject, sender or folder name goes on the wire.
    assert set(event) == {"id", "kind", "mailbox"}
    assert event["mailbox"] == personal_mailbox.pk
    # An admin does not read personal mail (docs/product.md §2.2), so hears nothing of it;
    # nor does a teammate.
    assert admins.events_within(1.0) == []
    assert colleague.events_within(0) == []

    changed(shared_mailbox)
    assert admins.next_event("mail")["mailbox"] == shared_mailbox.pk
    assert colleague.next_event("mail")["mailbox"] == shared_mailbox.pk
    assert mine.events_within(0.5) == []


def test_a_revoked_grant_stops_the_events_within_a_heartbeat(
    asgi_server, streams, teammate, admin_user, shared_mailbox
):
    stream = streams(asgi_server, teammate)
    time.sleep(0.2)
    changed(shared_mailbox)
    stream.next_event("mail")

    mailbox_revoke(user=admin_user, mailbox=shared_mailbox, grantee=teammate)
    stream.next_event("access", timeout=2)  # the next heartbeat saw it; the page refreshes
    changed(shared_mailbox)
    assert stream.events_within(1.0) == []
    assert not stream.ended.is_set()  # the person's own channel still works
    notify(recipient=teammate, kind=Kind.ASSIGNED, text="x", actor=admin_user)
    stream.next_event("notification")


def test_signing_out_ends_the_stream(asgi_server, streams, owner, personal_mailbox):
    stream = streams(asgi_server, owner)
    time.sleep(0.2)
    Session.objects.all().delete()
    stream.next_event("end", timeout=2)
    assert stream.ended.wait(2)


def test_notifications_ring_only_their_recipient(asgi_server, streams, owner, teammate):
    mine = streams(asgi_server, owner)
    theirs = streams(asgi_server, teammate)
    time.sleep(0.2)
    notify(recipient=owner, kind=Kind.ASSIGNED, text="Tom gave you a conversation", actor=teammate)
    event = mine.next_event("notification")
    assert set(event) == {"id", "kind"}  # not the text
    assert theirs.events_within(0.5) == []


def test_filed_mail_names_its_conversation_and_records(
    asgi_server, streams, owner, personal_mailbox
):
    contact = f.ContactFactory()
    message = f.MessageFactory(mailbox=personal_mailbox)
    f.FilingFactory(message=message, contact=contact)
    stream = streams(asgi_server, owner)
    time.sleep(0.2)
    mail_filed.send(sender=Message, message_ids=[message.pk], initial=False, retroactive=False)
    event = stream.next_event("filed")
    assert event["mailbox"] == personal_mailbox.pk
    assert event["threads"] == [message.thread_id]
    assert event["records"] == [f"contact:{contact.pk}"]


def test_a_conversation_given_to_someone_is_announced(
    asgi_server, streams, owner, teammate, shared_mailbox
):
    thread = f.ThreadFactory(mailbox=shared_mailbox)
    stream = streams(asgi_server, teammate)
    time.sleep(0.2)
    conversation_assign(actor=owner, thread=thread, assignee=teammate)
    event = stream.next_event("conversation")
    assert event["threads"] == [thread.pk]


def test_a_note_on_a_record_is_announced_to_everyone_and_one_on_mail_to_its_readers(
    asgi_server, streams, owner, teammate, personal_mailbox
):
    """Every signed-in person may see a record (notes/access.py), so every stream hears that
    its notes changed, by reference only; a note on a personal mailbox's conversation reaches
    its owner alone."""
    from notes.access import Target
    from notes.services import note_create, note_delete

    contact = f.ContactFactory()
    mine = streams(asgi_server, owner)
    theirs = streams(asgi_server, teammate)
    note = note_create(author=owner, target=Target("contact", contact), body="Call Ana back")
    for stream in (mine, theirs):
        event = stream.next_event("record")
        assert set(event) == {"id", "kind", "records"}  # not the note
        assert event["records"] == [f"contact:{contact.pk}"]
    note_delete(user=owner, note=note)
    assert theirs.next_event("record")["records"] == [f"contact:{contact.pk}"]

    thread = f.ThreadFactory(mailbox=personal_mailbox)
    note_create(author=owner, target=Target("thread", thread), body="Private")
    assert mine.next_event("conversation")["threads"] == [thread.pk]
    assert theirs.events_within(0.5) == []


def test_a_reconnecting_page_is_told_to_resync(asgi_server, streams, owner):
    stream = streams(asgi_server, owner, last_event_id="open-1")
    stream.next_event("resync", timeout=2)


def test_too_many_streams_are_refused_and_a_closed_one_frees_its_slot(
    asgi_server, streams, settings, owner
):
    """docs/reliability.md P-25 (the cap) and P-22 (a client gone frees its slot at once)."""
    settings.RELAY_LIVE_MAX_STREAMS = 2
    first = streams(asgi_server, owner)
    second = streams(asgi_server, owner)
    third = streams(asgi_server, owner)
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert "Too many live pages" in third.response.read().decode()

    first.close()  # the tab is closed
    deadline = time.monotonic() + 3
    while True:
        again = streams(asgi_server, owner)
        if again.status == 200:
            break
        assert time.monotonic() < deadline, "a closed stream kept its slot"
        time.sleep(0.2)
    key = f"{live.prefix()}streams:{owner.pk}"
    assert redis.Redis.from_url(settings.RELAY_LIVE_URL).zcard(key) == 2


def test_a_slow_client_holds_back_only_itself(asgi_server, streams, owner, personal_mailbox):
    """docs/reliability.md P-24: a page that stops reading (a frozen tab) fills its own socket
    and then its own bounded queue (inbox/livehub.py); the server process goes on serving the
    others, and a page that falls behind a burst is told to resync instead of holding it."""
    stuck = streams(asgi_server, owner, rcvbuf=1024)
    reader = streams(asgi_server, owner)
    assert stuck.status == reader.status == 200
    client = redis.Redis.from_url(django_settings.RELAY_LIVE_URL)
    channel = live.mailbox_channel(personal_mailbox.pk)
    payload = json.dumps({"kind": "mail", "mailbox": personal_mailbox.pk, "pad": "x" * 1000})
    pipe = client.pipeline()
    for _ in range(3000):  # about 3 MB for the stuck page, which reads none of it
        pipe.publish(channel, payload)
    pipe.execute()
    client.publish(channel, json.dumps({"kind": "conversation", "mailbox": personal_mailbox.pk}))
    # The reading page hears the event, or, if the burst outran it, is told to refresh all.
    assert reader.next_event_of({"conversation", "resync"}, timeout=10)
    # And it goes on hearing events once through the burst (or its resyncs): a marker,
    # published again until one arrives.
    deadline = time.monotonic() + 30
    for n in itertools.count(2):
        marker = {"kind": "conversation", "mailbox": personal_mailbox.pk, "n": n}
        client.publish(channel, json.dumps(marker))
        try:
            while reader.next_event("conversation", timeout=2).get("n") != n:
                pass
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the reading page stopped hearing events"
    # And the server still answers anything else.
    conn = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status in (200, 503)


def test_redis_lost_mid_stream_ends_it_and_publishing_never_fails(
    asgi_server, streams, settings, owner, personal_mailbox, fault_proxy_factory
):
    """docs/reliability.md P-21: the stream ends (the browser reconnects, is refused with 204
    while Redis is away and polls); a sync that publishes meanwhile neither fails nor waits."""
    target = urlsplit(settings.RELAY_LIVE_URL)
    proxy = fault_proxy_factory(target.hostname, target.port or 6379)
    settings.RELAY_LIVE_URL = f"redis://127.0.0.1:{proxy.port}{target.path}"
    live.reset()
    stream = streams(asgi_server, owner)
    assert stream.status == 200
    time.sleep(0.2)
    changed(personal_mailbox)
    stream.next_event("mail")

    proxy.cut_all()
    assert stream.ended.wait(5), "the stream outlived its Redis"

    # Redis that accepts and never answers (the worst case: a timeout, not a refusal).
    proxy.stall()
    published = []
    original = live._publish_now

    def timed(channel, event):
        started = time.monotonic()
        original(channel, event)
        published.append(time.monotonic() - started)

    live._publish_now = timed
    try:
        for _ in range(20):
            changed(personal_mailbox)  # as twenty syncs in a row would
    finally:
        live._publish_now = original
    assert len(published) == 20
    # One timeout (0.5 s), then quiet (inbox/live.py): not twenty.
    assert sum(published) < 2, published

    proxy.stop()  # and now unreachable
    again = streams(asgi_server, owner, last_event_id="open-1")
    assert again.status == 204  # the page polls


def hub_connections(client) -> list[dict]:
    """This process's live-update connections to Redis (inbox/livehub.py names them)."""
    name = f"relay-live-{live.prefix().strip(':')}-{os.getpid()}"
    return [c for c in client.client_list() if c.get("name") == name]


def test_the_streams_of_a_process_share_one_pubsub_connection(
    asgi_server, streams, owner, teammate, personal_mailbox, shared_mailbox
):
    """docs/reliability.md P-26: eight open pages of two people, one pub/sub connection to
    Redis for all of them (and one subscription per channel), and every event reaches every
    page that may hear it (the owner's personal mail, the teammate's shared mail)."""
    mine = [streams(asgi_server, owner) for _ in range(4)]
    theirs = [streams(asgi_server, teammate) for _ in range(4)]
    assert {s.status for s in mine + theirs} == {200}
    client = redis.Redis.from_url(django_settings.RELAY_LIVE_URL)
    ours = hub_connections(client)
    assert len([c for c in ours if "P" in c["flags"]]) == 1, ours
    assert len(ours) <= livehub.COMMAND_CONNECTIONS + 1  # and a few for the slots, not 8
    numsub = dict(
        client.pubsub_numsub(
            live.user_channel(owner.pk),
            live.mailbox_channel(shared_mailbox.pk),
            live.records_channel(),
        )
    )
    assert set(numsub.values()) == {1}, numsub

    changed(shared_mailbox)
    changed(personal_mailbox)
    for stream in mine:
        assert stream.next_event("mail")["mailbox"] == personal_mailbox.pk
    for stream in theirs:
        assert stream.next_event("mail")["mailbox"] == shared_mailbox.pk
    assert [stream.events_within(0.2) for stream in mine + theirs] == [[]] * 8

    # Every page closed: the connection is closed too, until the next page opens.
    for stream in mine + theirs:
        stream.close()
    deadline = time.monotonic() + 5
    while [c for c in hub_connections(client) if "P" in c["flags"]]:
        assert time.monotonic() < deadline, "the pub/sub connection outlived its streams"
        time.sleep(0.1)


def test_redis_gone_and_back_under_open_streams_they_resync(
    asgi_server, streams, settings, owner, personal_mailbox, fault_proxy_factory
):
    """docs/reliability.md P-21 and P-26: Redis restarts (every connection dropped, new ones
    accepted) under three open pages: the shared connection's loss ends all three, and when
    their browsers come back RETRY_MS later they are streamed again, told to resync, on one
    new pub/sub connection, and hear new events."""
    target = urlsplit(settings.RELAY_LIVE_URL)
    proxy = fault_proxy_factory(target.hostname, target.port or 6379)
    settings.RELAY_LIVE_URL = f"redis://127.0.0.1:{proxy.port}{target.path}"
    live.reset()
    opened = [streams(asgi_server, owner) for _ in range(3)]
    assert {s.status for s in opened} == {200}

    proxy.cut_all()
    for stream in opened:
        assert stream.ended.wait(5), "a stream outlived its Redis connection"

    time.sleep(events_view.RETRY_MS / 1000)  # as the browsers wait before reconnecting
    again = [streams(asgi_server, owner, last_event_id="open-1") for _ in range(3)]
    assert [s.status for s in again] == [200, 200, 200]
    for stream in again:
        stream.next_event("resync")
    client = redis.Redis.from_url(django_settings.RELAY_LIVE_URL)  # Redis itself, not the proxy
    assert len([c for c in hub_connections(client) if "P" in c["flags"]]) == 1
    changed(personal_mailbox)
    for stream in again:
        assert stream.next_event("mail")["mailbox"] == personal_mailbox.pk


def test_without_redis_there_is_no_stream_and_pages_do_not_ask(
    asgi_server, settings, owner, personal_mailbox
):
    def inbox_page() -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=10)
        conn.request("GET", "/inbox/", headers={"Cookie": f"sessionid={session_cookie(owner)}"})
        response = conn.getresponse()
        assert response.status == 200
        return response.read()

    assert b"data-relay-events=" in inbox_page()
    # Under WSGI (Django's test client here, runserver or a sync gunicorn) a stream cannot be
    # held: the page does not name one, and the view answers 204.
    client = Client()
    client.force_login(owner)
    assert b"data-relay-events=" not in client.get("/inbox/").content
    assert in_a_thread(lambda: client.get("/inbox/events/").status_code) == 204

    settings.RELAY_LIVE_URL = ""
    live.reset()
    page = inbox_page()
    assert b"data-relay-events=" not in page
    assert b'hx-trigger="every 15s, inbox:list-refresh from:body"' in page
    stream = Stream(asgi_server, owner)
    assert stream.status == 204
    changed(personal_mailbox)  # publishing without Redis: nothing, no error

    # Signed out: 204, not a redirect to the sign-in page an EventSource would loop on.
    assert in_a_thread(lambda: Client().get("/inbox/events/").status_code) == 204


# Who hears what: the permission matrix of tests/inbox/test_reading_views.py, for the stream.
ALLOWED = {("owner", "personal"), ("teammate", "shared"), ("grouped", "shared")}


def test_permission_matrix_of_the_stream(
    asgi_server, streams, owner, teammate, outsider, admin_user, personal_mailbox, shared_mailbox
):
    """Owner, grantee (direct and by group) hear a mailbox's events; a teammate without grant,
    a revoked grantee and an admin without grant hear nothing of it (docs/product.md §2.2)."""
    revoked = f.UserFactory(username="revoked")
    shared_mailbox.granted_users.add(revoked)
    shared_mailbox.granted_users.remove(revoked)
    group = f.GroupFactory()
    grouped = f.UserFactory(username="grouped")
    grouped.groups.add(group)
    shared_mailbox.granted_groups.add(group)
    users = {
        "owner": owner,
        "teammate": teammate,
        "outsider": outsider,
        "admin": admin_user,
        "revoked": revoked,
        "grouped": grouped,
    }
    opened = {who: streams(asgi_server, user) for who, user in users.items()}
    assert {stream.status for stream in opened.values()} == {200}
    time.sleep(0.3)
    boxes = {"personal": personal_mailbox, "shared": shared_mailbox}
    for mailbox in boxes.values():
        changed(mailbox)
    time.sleep(1.0)
    for who, stream in opened.items():
        heard = {data["mailbox"] for kind, data in stream.events_within(0) if kind == "mail"}
        expected = {boxes[which].pk for (person, which) in ALLOWED if person == who}
        assert heard == expected, who


def test_announcing_filed_mail_costs_the_same_queries_for_3_or_30_messages(
    owner, personal_mailbox, shared_mailbox
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    contact = f.ContactFactory()

    def announce(n: int) -> int:
        ids = []
        for i in range(n):
            message = f.MessageFactory(mailbox=personal_mailbox if i % 2 else shared_mailbox)
            f.FilingFactory(message=message, contact=contact)
            ids.append(message.pk)
        with CaptureQueriesContext(connection) as live_only:
            inbox_receivers.live_mail_filed(sender=Message, message_ids=ids)
        return len(live_only)

    assert announce(3) == announce(30) == 2  # the messages' mailboxes and threads; filings
