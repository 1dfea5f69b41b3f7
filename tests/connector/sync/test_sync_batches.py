"""Batches are bounded by count and by bytes (connector/sync/newmail.py BATCH_SIZE, BATCH_BYTES): a
mailbox of large messages never holds more than about two batches' bytes in the worker, and
one message larger than the bound is fetched alone, not refused. Against the real Dovecot."""

from __future__ import annotations

import pytest

from connector.sync import mailbox as sync
from connector.sync import newmail
from connector.transport.imap import ImapSession
from inbox.models import Message
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def fetched_batches(monkeypatch):
    """The UIDs of each body FETCH the sync sends, in order."""
    calls: list[list[int]] = []
    original = ImapSession.fetch

    def recording(self, uids):
        uids = list(uids)
        calls.append(uids)
        return original(self, uids)

    monkeypatch.setattr(ImapSession, "fetch", recording)
    return calls


def _message(n: int, size: int) -> bytes:
    return make_raw(f"Big {n}", message_id=f"<big{n}@relay.test>", body="y" * size + "\n")


def test_batches_stop_at_the_byte_bound_and_a_huge_message_goes_alone(
    imap_user, monkeypatch, fetched_batches
):
    monkeypatch.setattr(newmail, "BATCH_BYTES", 250_000)
    sizes = [100_000, 100_000, 100_000, 600_000, 100_000, 20_000, 20_000]
    uids = imap_user.server.deliver_many(
        imap_user, [_message(n, size) for n, size in enumerate(sizes)]
    )
    mailbox = make_mailbox(imap_user)

    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()
    assert report.total("stored") == len(sizes)
    # 100k + 100k fit in 250k, a third does not; the 600k message is a batch of its own.
    assert fetched_batches == [uids[0:2], uids[2:3], uids[3:4], uids[4:7]]
    assert Message.objects.filter(mailbox=mailbox).count() == len(sizes)
    assert_in_step(mailbox, imap_user)


def test_batches_stop_at_the_count_bound(imap_user, fetched_batches):
    uids = imap_user.server.deliver_many(imap_user, [_message(n, 10) for n in range(7)])
    mailbox = make_mailbox(imap_user)
    report = sync.sync_mailbox(mailbox.pk, batch_size=3)
    assert report.completed, report.summary()
    assert fetched_batches == [uids[0:3], uids[3:6], uids[6:7]]
    assert_in_step(mailbox, imap_user)
