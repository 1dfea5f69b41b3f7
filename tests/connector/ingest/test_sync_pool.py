"""The initial sync prepares big batches in a pool of processes and fetches the next batch while
it stores the current one (bench/sync.py). Where the work happens must change nothing:
a mailbox synced through the pool holds exactly what one synced in-process holds."""

from __future__ import annotations

import os
import signal

import pytest
from django.db.models import Count
from django.utils import timezone

from connector.ingest import pool as ingest
from connector.ingest import storage
from connector.sync import mailbox as sync
from demo import corpus
from inbox.models import Attachment, LedgerEntry, Mailbox, Message, MessageAddress, Thread
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw

pytestmark = pytest.mark.django_db


def deliver_corpus(user, count: int) -> None:
    client = user.server.imap(user)
    try:
        for message in corpus.generate(count, seed=5, attachment_max_bytes=200_000):
            flags = "(" + " ".join(message.flags) + ")"
            typ, data = client.append(message.folder, flags, message.date, message.raw)
            assert typ == "OK", data
    finally:
        client.logout()


def content(mailbox) -> dict:
    """Everything a sync stores for a mailbox, keyed by content hash (not by primary key)."""
    messages = Message.objects.filter(mailbox=mailbox)
    rows = {}
    for m in messages:
        rows[m.sha256] = (
            m.subject,
            m.from_address,
            m.message_id,
            m.text_body,
            m.html_body,
            m.headers,
            m.snippet,
            m.seen,
            m.flagged,
            m.size,
            m.has_attachments,
            storage.read_raw(m.raw_file) and len(storage.read_raw(m.raw_file)),
            tuple(
                Attachment.objects.filter(message=m)
                .order_by("position")
                .values_list("filename", "content_type", "is_inline", "blob__sha256", "blob__size")
            ),
            tuple(
                MessageAddress.objects.filter(message=m)
                .order_by("role", "position")
                .values_list("role", "address", "name")
            ),
        )
    threads: dict[int, set[str]] = {}
    for sha, thread_id in messages.values_list("sha256", "thread_id"):
        threads.setdefault(thread_id, set()).add(sha)
    ledger = sorted(
        LedgerEntry.objects.filter(mailbox=mailbox).values_list("uid", "outcome", "folder__name")
    )
    return {
        "messages": rows,
        "threads": sorted(sorted(s) for s in threads.values()),
        "ledger": ledger,
    }


def test_pool_and_prefetch_store_exactly_what_the_in_process_path_stores(imap_user, settings):
    deliver_corpus(imap_user, 70)
    pooled, plain = make_mailbox(imap_user), make_mailbox(imap_user)
    assert ingest.POOL_MIN_BATCH <= 25

    settings.RELAY_PARSE_WORKERS = 2
    report = sync.sync_mailbox(pooled.pk, batch_size=25)
    assert report.completed, report.summary()
    assert ingest._pool is not None, "the pool path was not taken"
    # The raw sources went to the pool through memory files (no pickling), all closed since.
    assert ingest._shared_raws_pid == os.getpid(), "the raw sources were pickled"
    assert _open_memfds() == []

    settings.RELAY_PARSE_WORKERS = 0
    ingest._drop_pool()
    report = sync.sync_mailbox(plain.pk, batch_size=25)
    assert report.completed, report.summary()

    assert report.total("stored") == 70
    assert content(pooled) == content(plain)
    assert_in_step(pooled, imap_user)
    assert_in_step(plain, imap_user)
    # Attachment files were written by the pool processes, whole.
    for attachment in Attachment.objects.filter(message__mailbox=pooled).select_related("blob"):
        with storage.open_blob(attachment.blob.file) as fh:
            assert len(fh.read()) == attachment.blob.size
    assert Message.objects.filter(mailbox=pooled, date__lte=timezone.now()).count() == 70


def _open_memfds() -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
    return [link for link in links if "relay-raw-sources" in link]


def test_without_memory_files_the_pool_gets_the_raw_sources_pickled(
    imap_user, settings, monkeypatch
):
    deliver_corpus(imap_user, 40)
    mailbox = make_mailbox(imap_user)
    monkeypatch.delattr(os, "memfd_create", raising=False)
    settings.RELAY_PARSE_WORKERS = 2
    ingest._drop_pool()
    try:
        report = sync.sync_mailbox(mailbox.pk, batch_size=20)
        assert ingest._pool is not None, "the pool path was not taken"
        assert ingest._shared_raws_pid == 0
    finally:
        ingest._drop_pool()
    assert report.completed, report.summary()
    assert report.total("stored") == 40
    assert_in_step(mailbox, imap_user)
    for message in Message.objects.filter(mailbox=mailbox):
        assert storage.sha256(storage.read_raw(message.raw_file)) == message.sha256


_real_prepare_in_pool = ingest._prepare_in_pool
_calls = iter(range(1_000_000))


def _dying_prepare(mailbox_id, items):
    # Module level, so the pool can pickle it by name; each forked process counts its own
    # calls and kills itself on its second chunk.
    if next(_calls) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_prepare_in_pool(mailbox_id, items)


def test_a_pool_process_killed_mid_batch_changes_nothing(imap_user, settings, monkeypatch):
    """A pool that breaks (a process killed by the OOM killer, say) is replaced by in-process
    preparation for the chunks it lost: the sync completes with everything stored."""
    deliver_corpus(imap_user, 40)
    mailbox = make_mailbox(imap_user)
    settings.RELAY_PARSE_WORKERS = 2
    ingest._drop_pool()
    monkeypatch.setattr(ingest, "_prepare_in_pool", _dying_prepare)
    try:
        report = sync.sync_mailbox(mailbox.pk, batch_size=20)
    finally:
        ingest._drop_pool()
    assert report.completed, report.summary()
    assert report.total("stored") == 40
    assert_in_step(mailbox, imap_user)


def test_the_pool_starts_inside_a_daemonic_process_like_a_celery_prefork_worker(settings):
    """Celery's prefork workers are daemonic; multiprocessing refuses them children unless the
    pool lifts the flag while it forks (its processes die with the worker: PR_SET_PDEATHSIG)."""
    import multiprocessing

    settings.RELAY_PARSE_WORKERS = 2
    config = multiprocessing.current_process()._config
    before = config.get("daemon")
    ingest._drop_pool()
    config["daemon"] = True
    try:
        assert ingest.warm_pool()
        assert ingest._pool is not None
        assert config["daemon"] is True  # put back as it was
    finally:
        ingest._drop_pool()
        if before is None:
            config.pop("daemon", None)
        else:
            config["daemon"] = before


def test_a_connection_the_worker_closes_is_closed_though_the_pool_was_forked_meanwhile(settings):
    """The pool forks while the sync holds its IMAP session (and the database connection). A
    forked copy kept such a socket open after the worker closed it: the server heard no close
    while the pool lived, which is as long as the worker (found as a cut connection that the
    sync waited 60 s for, the fault proxy's close never reaching it)."""
    import socket

    settings.RELAY_PARSE_WORKERS = 2
    ingest._drop_pool()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        worker_side = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
        with server_side:
            assert ingest.warm_pool()  # forked now, with the connection open
            worker_side.close()
            server_side.settimeout(5)
            assert server_side.recv(1) == b""  # the close reached the other end at once
    # The pool still works.
    assert ingest._get_pool().submit(int, "7").result(timeout=30) == 7


def test_replies_stored_before_their_parents_all_join_them_in_one_batch(imap_user):
    """Several parents arriving in one batch each adopt the thread of their earlier replies
    (one UPDATE for all of them), and the emptied threads go."""
    dovecot = imap_user.server
    for n in range(3):
        dovecot.deliver(imap_user, make_raw(f"Offer {n}", message_id=f"<o{n}@relay.test>"), "Sent")
        dovecot.deliver(imap_user, make_raw(f"Re: Offer {n}", in_reply_to=f"<o{n}@relay.test>"))
    mailbox = make_mailbox(imap_user, active_folders=["INBOX"])
    assert sync.sync_mailbox(mailbox.pk).completed
    Mailbox.objects.filter(pk=mailbox.pk).update(active_folders=["INBOX", "Sent"])
    assert sync.sync_mailbox(mailbox.pk).completed
    for n in range(3):
        offer = Message.objects.get(mailbox=mailbox, subject=f"Offer {n}")
        answer = Message.objects.get(mailbox=mailbox, subject=f"Re: Offer {n}")
        assert offer.thread_id == answer.thread_id
        assert offer.thread.message_count == 2
    assert Thread.objects.filter(mailbox=mailbox).count() == 3
    counts = dict(
        Message.objects.filter(mailbox=mailbox)
        .values("thread")
        .annotate(n=Count("id"))
        .values_list("thread", "n")
    )
    assert all(t.message_count == counts[t.pk] for t in Thread.objects.filter(mailbox=mailbox))


def test_every_reply_shares_its_parents_thread_after_an_initial_sync(imap_user):
    """Whatever the order the folders and batches bring a conversation in (Sent may come
    first, a reply may share a batch with the request it follows), a message that replies to
    another ends in its thread, and every thread's count is its number of messages."""
    deliver_corpus(imap_user, 120)
    mailbox = make_mailbox(imap_user)
    assert sync.sync_mailbox(mailbox.pk, batch_size=40).completed
    rows = list(
        Message.objects.filter(mailbox=mailbox).values_list("message_id", "in_reply_to", "thread")
    )
    thread_of = {mid: thread for mid, _, thread in rows if mid}
    pairs = [(thread, thread_of[parent]) for _, parent, thread in rows if parent in thread_of]
    assert len(pairs) > 10  # the corpus has conversations across INBOX and Sent
    assert all(child == parent for child, parent in pairs)
    counts = dict(
        Message.objects.filter(mailbox=mailbox)
        .values("thread")
        .annotate(n=Count("id"))
        .values_list("thread", "n")
    )
    for thread in Thread.objects.filter(mailbox=mailbox):
        assert thread.message_count == counts.get(thread.pk, 0) > 0


def test_only_known_rows_refer_to_threads():
    """threader._delete_emptied removes merged threads with a plain DELETE, no cascade: it moves
    their timeline events to the thread they joined and drops their read states first, and is
    right only while nothing else points at a thread. A new reference must change it."""
    from inbox.models import Draft, ThreadEvent, ThreadRead
    from notes.models import Note  # moved by notes/receivers.py on inbox/signals.py threads_merged

    assert {r.related_model for r in Thread._meta.related_objects} == {
        Draft,
        Message,
        ThreadEvent,
        ThreadRead,
        Note,
    }


def test_a_merged_thread_brings_its_timeline_and_drops_read_states(owner):
    """A reply stored before its parent had a conversation of its own, with a state someone
    gave it: when the parent comes the two are one, and the timeline and the reply being
    written come along."""
    from inbox.models import Draft, ThreadEvent, ThreadRead
    from inbox.services.conversations import conversation_assign
    from notes.access import Target
    from notes.services import note_create
    from tests.connector import filingkit

    mailbox = Mailbox.objects.create(
        kind=Mailbox.Kind.PERSONAL, owner=owner, email_address="olivia@relay.test"
    )
    (reply,) = filingkit.receive(
        mailbox, make_raw("Re: Our offer", in_reply_to="<offer@relay.test>")
    )
    early = reply.thread
    conversation_assign(actor=owner, thread=early, assignee=owner)
    ThreadRead.objects.create(user=owner, thread=early, read_up_to=reply.pk)
    note = note_create(author=owner, target=Target("thread", early), body="Call her back")
    draft = Draft.objects.create(
        user=owner, mailbox=mailbox, thread=early, reply_to_message=reply, body_text="Dear Olivia"
    )
    (offer,) = filingkit.receive(
        mailbox,
        make_raw("Our offer", message_id="<offer@relay.test>", sender="olivia@relay.test"),
        folder="Sent",
        special_use="sent",
    )
    reply.refresh_from_db()
    assert reply.thread_id == offer.thread_id != early.pk
    assert not Thread.objects.filter(pk=early.pk).exists()
    event = ThreadEvent.objects.get(kind="assigned")
    assert event.thread_id == offer.thread_id
    assert not ThreadRead.objects.exists()
    note.refresh_from_db()
    assert note.thread_id == offer.thread_id  # the team's note stays with the conversation
    draft.refresh_from_db()
    assert (draft.thread_id, draft.body_text) == (offer.thread_id, "Dear Olivia")
