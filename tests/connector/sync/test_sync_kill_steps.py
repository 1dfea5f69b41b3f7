"""Kill at every step (docs/reliability.md S-22): a scripted scenario is interrupted at each of its
commit points in turn, then resumed. Every run must converge to the server's truth, and a
run right after convergence must change nothing (idempotence). Also S-19: a server without
CONDSTORE gives the same database state as one with it."""

from __future__ import annotations

import random

import pytest

from connector.sync import lease as leases
from connector.sync import mailbox as sync
from inbox.models import Folder, Mailbox, Message
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw, row_counts

pytestmark = pytest.mark.django_db


class Abort(Exception):
    """Stands for the worker dying at a commit point."""


def change_the_server(user, rng: random.Random, step: int) -> None:
    """A mix of what other clients and the delivery agent do between two syncs."""
    server = user.server
    for i in range(2):
        server.deliver(user, make_raw(f"step {step} mail {i}"))
    inbox = server.uids(user, "INBOX")
    if len(inbox) > 3:
        server.add_flags(user, "INBOX", rng.choice(inbox), ["\\Seen"])
        server.move(user, rng.choice(inbox), "INBOX", "Archive")
    archive = server.uids(user, "Archive")
    if len(archive) > 2:
        server.expunge(user, "Archive", rng.choice(archive))
    if step % 4 == 3:
        server.reset_uidvalidity(user, "Archive")


def interrupted_sync(mailbox: Mailbox, at: int, monkeypatch) -> bool:
    """Run a sync that dies at its `at`-th commit point; True if it got that far."""
    calls = {"n": 0}
    check, renew = leases.Lease.check, leases.Lease.renew

    def counted(original):
        def wrapper(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == at:
                raise Abort(f"killed at commit point {at}")
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(leases.Lease, "check", counted(check))
    monkeypatch.setattr(leases.Lease, "renew", counted(renew))
    try:
        sync.sync_mailbox(mailbox.pk)
        reached = False
    except Abort:
        reached = True
    finally:
        monkeypatch.setattr(leases.Lease, "check", check)
        monkeypatch.setattr(leases.Lease, "renew", renew)
    # The dead worker's lease would expire by itself; here it is let go at once.
    Mailbox.objects.filter(pk=mailbox.pk).update(lease_expires_at=None, state="active")
    return reached


def test_interrupted_at_every_commit_point_then_resumed_converges(imap_user, monkeypatch):
    rng = random.Random(22)
    imap_user.server.create_folder(imap_user, "Archive")
    for i in range(4):
        imap_user.server.deliver(imap_user, make_raw(f"initial {i}"))
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Archive"])
    interruptions = 0
    for step in range(1, 30):
        change_the_server(imap_user, rng, step)
        if not interrupted_sync(mailbox, step % 9 + 1, monkeypatch):
            continue
        interruptions += 1
        report = sync.sync_mailbox(mailbox.pk)
        assert report.completed, report.summary()
        assert_in_step(mailbox, imap_user)
        before = row_counts(mailbox)
        assert sync.sync_mailbox(mailbox.pk).completed
        assert row_counts(mailbox) == before
    assert interruptions >= 20
    # The cursor never passed a message it did not store, and reached the end.
    cursor = Folder.objects.get(mailbox=mailbox, name="INBOX")
    assert cursor.last_uid >= max(imap_user.server.uids(imap_user, "INBOX"))


def state(mailbox: Mailbox) -> list[tuple]:
    """The user-visible state of a mailbox, independent of ids and UIDVALIDITY values."""
    rows = []
    for message in Message.objects.filter(mailbox=mailbox).prefetch_related("locations__folder"):
        rows.append(
            (
                message.subject,
                message.sha256,
                message.seen,
                message.flagged,
                message.on_server,
                tuple(sorted(loc.folder.name for loc in message.locations.all())),
            )
        )
    return sorted(rows)


HISTORY = [make_raw(f"h{i}", message_id=f"<h{i}@customer.example>") for i in range(6)]
LATE = make_raw("h-late", message_id="<late@customer.example>")


def scripted_history(user) -> None:
    server = user.server
    server.create_folder(user, "Archive")
    for raw in HISTORY:
        server.deliver(user, raw)


def later_history(user) -> None:
    server = user.server
    inbox = server.uids(user, "INBOX")
    server.add_flags(user, "INBOX", inbox[0], ["\\Seen", "\\Flagged"])
    server.move(user, inbox[1], "INBOX", "Archive")
    server.expunge(user, "INBOX", inbox[2])
    server.deliver(user, LATE)
    server.remove_flags(user, "INBOX", inbox[0], ["\\Flagged"])


def test_without_condstore_the_database_ends_the_same(dovecot, dovecot_no_condstore):
    from tests.servers.fixtures import ImapUser

    results = []
    for server in (dovecot, dovecot_no_condstore):
        user = ImapUser(server, server.create_user())
        scripted_history(user)
        mailbox = make_mailbox(user, active_folders=["INBOX", "Archive"])
        assert sync.sync_mailbox(mailbox.pk).completed
        later_history(user)
        assert sync.sync_mailbox(mailbox.pk).completed
        assert_in_step(mailbox, user)
        results.append(state(mailbox))
    assert results[0] == results[1]
