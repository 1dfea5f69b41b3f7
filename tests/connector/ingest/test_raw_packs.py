"""Raw sources are stored a batch to a file (a pack of gzip members: inbox/rawsource.py) so
that an initial sync creates one file per batch, not one per message (bench/sync.py). Every
message must still read back byte for byte, from the pool and in-process, through the
download a user clicks; a pack cut short is never taken for whole; and a storage that
refuses writes loses nothing (docs/reliability.md I-05)."""

from __future__ import annotations

import gzip
import os

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from connector.ingest import pool as ingest
from connector.ingest import storage
from connector.sync import mailbox as sync
from inbox import rawsource
from inbox.models import LedgerEntry, Message
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw

pytestmark = pytest.mark.django_db


def _deliver(imap_user, count: int) -> dict[str, bytes]:
    """Deliver `count` messages; return their bytes by Message-ID (without <>)."""
    sent = {}
    for n in range(count):
        message_id = f"pack{n}@relay.test"
        sent[message_id] = make_raw(
            f"Pack test {n}", message_id=f"<{message_id}>", body=f"Body {n} " + "words " * (n * 37)
        )
    imap_user.server.deliver_many(imap_user, sent.values())
    return sent


def _server_bytes(imap_user) -> dict[str, bytes]:
    """The bytes the server holds for each message, by Message-ID (without <>)."""
    client = imap_user.server.imap(imap_user)
    try:
        client.select("INBOX", readonly=True)
        typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        out = {}
        for part in data:
            if isinstance(part, tuple):
                raw = part[1]
                header = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
                for line in header.split(b"\r\n"):
                    if line.lower().startswith(b"message-id:"):
                        out[line.split(b":", 1)[1].strip().decode().strip("<>")] = raw
        return out
    finally:
        client.logout()


def _pack_files() -> list[str]:
    root = os.path.join(default_storage.location, "raw")
    return [os.path.join(d, f) for d, _dirs, files in os.walk(root) for f in files if ".pack." in f]


@pytest.fixture
def media(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    ingest._drop_pool()  # a pool forked under another MEDIA_ROOT writes there
    yield settings.MEDIA_ROOT
    ingest._drop_pool()


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "pool"])
def test_every_message_reads_back_byte_for_byte_from_a_handful_of_packs(
    imap_user, media, settings, workers
):
    settings.RELAY_PARSE_WORKERS = workers
    _deliver(imap_user, 60)
    on_server = _server_bytes(imap_user)
    mailbox = make_mailbox(imap_user)

    report = sync.sync_mailbox(mailbox.pk, batch_size=30)
    assert report.completed, report.summary()
    assert report.total("stored") == 60

    messages = list(Message.objects.filter(mailbox=mailbox))
    assert len(messages) == 60
    for message in messages:
        assert storage.read_raw(message.raw_file) == on_server[message.message_id]
    # Two batches of 30: a pack per batch in-process, a pack per pool chunk; never one a message.
    packs = _pack_files()
    assert 2 <= len(packs) <= 16, packs
    members = {m.raw_file.split("#")[0] for m in messages}
    assert {default_storage.path(p) for p in members} == set(packs)
    # A pack is an ordinary multi-member gzip file: zcat prints its messages, in order.
    whole = b"".join(gzip.decompress(open(p, "rb").read()) for p in packs)
    assert sorted(whole.count(m.message_id.encode()) for m in messages) == [1] * 60
    assert_in_step(mailbox, imap_user)


def test_the_download_of_a_packed_message_is_the_original(imap_user, media, client, settings):
    from django.contrib.auth import get_user_model

    settings.RELAY_PARSE_WORKERS = 0
    sent = _deliver(imap_user, 5)
    owner = get_user_model().objects.create_user("packowner", password="pw")
    mailbox = make_mailbox(imap_user, owner=owner)
    assert sync.sync_mailbox(mailbox.pk).completed

    client.force_login(owner)
    on_server = _server_bytes(imap_user)
    for message in Message.objects.filter(mailbox=mailbox):
        assert "#" in message.raw_file  # a pack member, not a file of its own
        response = client.get(f"/inbox/messages/{message.pk}/raw/")
        assert response.status_code == 200
        assert response["Content-Type"] == "message/rfc822"
        body = b"".join(response.streaming_content)
        assert body == on_server[message.message_id]
        assert sent[message.message_id].split(b"\r\n\r\n", 1)[1].strip() in body


def test_a_pack_cut_short_is_rewritten_whole_and_never_read_as_complete(media):
    raws = [(storage.sha256(r), r) for r in (b"Subject: a\r\n\r\none", b"Subject: b\r\n\r\ntwo")]
    names = storage.save_raws(mailbox_id=7, raws=raws)
    file = rawsource.split(names[1])[0]
    full = default_storage.path(file)
    size = os.path.getsize(full)
    with open(full, "r+b") as fh:  # what a writer killed half-way leaves
        fh.truncate(size - 5)
    assert not rawsource.exists(names[1])
    with pytest.raises(rawsource.RawSourceMissing):
        storage.read_raw(names[1])

    assert storage.save_raws(mailbox_id=7, raws=raws) == names  # the retry: same name, whole
    assert os.path.getsize(full) == size
    assert [storage.read_raw(n) for n in names] == [r for _d, r in raws]


def test_storage_refusing_writes_stores_nothing_half_and_the_next_sync_stores_all(
    imap_user, media, settings
):
    """docs/reliability.md I-05: with the raw store unwritable, no message row points at a missing
    file; the failures are recorded, and once storage is back the next sync brings every message
    once."""
    settings.RELAY_PARSE_WORKERS = 0
    _deliver(imap_user, 4)
    mailbox = make_mailbox(imap_user)
    blocker = media.parent / "not-a-directory"
    blocker.write_bytes(b"")
    good_root = settings.MEDIA_ROOT
    settings.MEDIA_ROOT = blocker / "media"  # every makedirs under it fails (ENOTDIR)
    storage._made_dirs.clear()

    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()
    assert Message.objects.filter(mailbox=mailbox).count() == 0
    failed = LedgerEntry.objects.filter(mailbox=mailbox, outcome="failed")
    assert failed.count() == 4
    assert all("storage error" in e.error for e in failed)

    settings.MEDIA_ROOT = good_root
    storage._made_dirs.clear()
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()
    on_server = _server_bytes(imap_user)
    assert Message.objects.filter(mailbox=mailbox).count() == 4
    for message in Message.objects.filter(mailbox=mailbox):
        assert storage.read_raw(message.raw_file) == on_server[message.message_id]
    assert not LedgerEntry.objects.filter(mailbox=mailbox, outcome="failed").exists()
    assert_in_step(mailbox, imap_user)


def test_storage_refusing_writes_for_a_long_time_holds_nothing_and_loses_nothing(
    imap_user, media, settings
):
    """docs/reliability.md I-05: a full or unwritable storage is a transient fault. However many
    syncs it lasts, the messages wait to be retried (with a growing back-off), are never held,
    and all arrive once storage is back."""
    settings.RELAY_PARSE_WORKERS = 0
    _deliver(imap_user, 3)
    mailbox = make_mailbox(imap_user)
    blocker = media.parent / "not-a-directory"
    blocker.write_bytes(b"")
    good_root = settings.MEDIA_ROOT
    settings.MEDIA_ROOT = blocker / "media"  # every makedirs under it fails (ENOTDIR)
    storage._made_dirs.clear()

    for attempt in range(1, 6):
        assert sync.sync_mailbox(mailbox.pk).completed
        entries = LedgerEntry.objects.filter(mailbox=mailbox)
        assert sorted(entries.values_list("outcome", "attempts")) == [("failed", attempt)] * 3
        assert all("storage error" in e.error for e in entries)
        # Time passes: the back-off of each waiting message is over.
        entries.update(next_retry_at=timezone.now())
    assert not Message.objects.filter(mailbox=mailbox).exists()

    settings.MEDIA_ROOT = good_root
    storage._made_dirs.clear()
    assert sync.sync_mailbox(mailbox.pk).completed
    on_server = _server_bytes(imap_user)
    assert Message.objects.filter(mailbox=mailbox).count() == 3
    for message in Message.objects.filter(mailbox=mailbox):
        assert storage.read_raw(message.raw_file) == on_server[message.message_id]
    assert set(LedgerEntry.objects.filter(mailbox=mailbox).values_list("outcome", flat=True)) == {
        "stored"
    }
    assert_in_step(mailbox, imap_user)
