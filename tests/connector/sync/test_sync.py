"""The sync engine against the real Dovecot of the test suite (docs/reliability.md §1).

After every scenario: nothing lost, nothing duplicated, nothing phantom, no flag changed that
nobody asked for, and a second sync changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from connector.sync import mailbox as sync
from connector.sync.reports import SyncReport
from inbox.models import Filing, Folder, LedgerEntry, Mailbox, Message, PendingChange
from inbox.services.messages import message_change_flag, message_delete, message_move
from tests import factories as f
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw, row_counts

pytestmark = pytest.mark.django_db


def run(mailbox) -> SyncReport:
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()
    return report


def assert_idempotent(mailbox, user) -> None:
    before = row_counts(mailbox)
    truth = user.server.server_truth(user.login)
    report = run(mailbox)
    assert row_counts(mailbox) == before
    assert report.total("stored") == report.total("duplicate") == 0
    assert report.total("flags_changed") == report.total("expunged") == 0
    assert user.server.server_truth(user.login) == truth, "a sync with nothing to do wrote"


def test_new_mail_is_stored_unread_and_a_second_sync_changes_nothing(imap_user):
    dovecot = imap_user.server
    for i in range(3):
        dovecot.deliver(imap_user, make_raw(f"Order {i}"))
    dovecot.deliver(imap_user, make_raw("Already read"), flags=["\\Seen"])
    mailbox = make_mailbox(imap_user)

    report = run(mailbox)

    assert report.total("stored") == 4
    assert set(Message.objects.filter(mailbox=mailbox).values_list("subject", flat=True)) == {
        "Order 0",
        "Order 1",
        "Order 2",
        "Already read",
    }
    # The sync never marks anything read: the server's flags are exactly as delivered
    # (docs/reliability.md S-17).
    for uid in dovecot.uids(imap_user, "INBOX")[:3]:
        assert "\\Seen" not in dovecot.flags(imap_user, "INBOX", uid)
    assert Message.objects.get(subject="Already read").seen
    assert not Message.objects.get(subject="Order 0").seen
    assert_in_step(mailbox, imap_user)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE and mailbox.first_sync_done
    assert mailbox.progress_done == mailbox.progress_total == 4
    ledger = LedgerEntry.objects.filter(mailbox=mailbox)
    assert sorted(ledger.values_list("outcome", flat=True)) == ["stored"] * 4
    assert_idempotent(mailbox, imap_user)

    dovecot.deliver(imap_user, make_raw("Later"))
    assert run(mailbox).total("stored") == 1
    assert_in_step(mailbox, imap_user)


def test_inbox_and_sent_are_active_by_default_and_trash_and_junk_are_not(imap_user):
    dovecot = imap_user.server
    for name in ("Sent", "Trash", "Junk"):
        dovecot.create_folder(imap_user, name)
    dovecot.deliver(imap_user, make_raw("in trash"), folder="Trash")
    dovecot.deliver(imap_user, make_raw("in junk"), folder="Junk")
    dovecot.deliver(imap_user, make_raw("sent one"), folder="Sent")
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    mailbox.refresh_from_db()
    assert sorted(mailbox.active_folders) == ["INBOX", "Sent"]
    assert list(Message.objects.filter(mailbox=mailbox).values_list("subject", flat=True)) == [
        "sent one"
    ]


def test_first_sync_leaves_ticked_trash_and_junk_for_the_next_one_which_takes_them_as_history(
    imap_user,
):
    """docs/product.md §3.5: the first sync skips Trash and Junk even when they are ticked; the
    next sync brings them, and what they held is history (Done, like the first sync's mail),
    while mail that lands there afterwards is new."""
    from inbox.models import Thread

    dovecot = imap_user.server
    for name in ("Trash", "Junk"):
        dovecot.create_folder(imap_user, name)
    dovecot.deliver(imap_user, make_raw("kept"))
    dovecot.deliver(imap_user, make_raw("binned"), folder="Trash")
    dovecot.deliver(imap_user, make_raw("spam"), folder="Junk")
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Trash", "Junk"])

    first = run(mailbox)
    assert [r.name for r in first.folders] == ["INBOX"]
    assert list(Message.objects.filter(mailbox=mailbox).values_list("subject", flat=True)) == [
        "kept"
    ]
    mailbox.refresh_from_db()
    assert mailbox.first_sync_done
    assert sorted(mailbox.active_folders) == ["INBOX", "Junk", "Trash"]  # still ticked

    second = run(mailbox)
    assert second.total("stored") == 2
    subjects = set(Message.objects.filter(mailbox=mailbox).values_list("subject", flat=True))
    assert subjects == {"kept", "binned", "spam"}
    for subject in ("binned", "spam"):
        thread = Message.objects.get(mailbox=mailbox, subject=subject).thread
        assert thread.status == Thread.Status.DONE, subject  # history, not work
    assert_in_step(mailbox, imap_user)

    dovecot.deliver(imap_user, make_raw("new spam"), folder="Junk")
    assert run(mailbox).total("stored") == 1
    fresh = Message.objects.get(mailbox=mailbox, subject="new spam").thread
    assert fresh.status == Thread.Status.OPEN
    assert_idempotent(mailbox, imap_user)


def test_first_sync_brings_only_mail_since_the_sync_from_date(imap_user):
    dovecot = imap_user.server
    old = timezone.now() - dt.timedelta(days=60)
    dovecot.deliver(imap_user, make_raw("old", date=old), received=old)
    dovecot.deliver(imap_user, make_raw("new"))
    mailbox = make_mailbox(imap_user, sync_from=(timezone.now() - dt.timedelta(days=7)).date())
    report = run(mailbox)
    assert report.total("stored") == 1 and report.total("skipped") == 1
    assert list(Message.objects.filter(mailbox=mailbox).values_list("subject", flat=True)) == [
        "new"
    ]
    skipped = LedgerEntry.objects.get(mailbox=mailbox, outcome="skipped")
    assert skipped.reason == "before the sync-from date"
    assert_idempotent(mailbox, imap_user)


def test_flags_changed_on_the_server_are_picked_up(imap_user):
    dovecot = imap_user.server
    uid = dovecot.deliver(imap_user, make_raw("flag me"))
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    dovecot.add_flags(imap_user, "INBOX", uid, ["\\Seen", "\\Flagged"])
    report = run(mailbox)
    assert report.total("flags_changed") == 1
    message = Message.objects.get(mailbox=mailbox)
    assert message.seen and message.flagged
    assert_in_step(mailbox, imap_user)
    dovecot.remove_flags(imap_user, "INBOX", uid, ["\\Seen"])
    run(mailbox)
    message.refresh_from_db()
    assert not message.seen and message.flagged
    assert_idempotent(mailbox, imap_user)


def test_flags_changed_without_condstore_are_picked_up_the_same(imap_user_no_condstore):
    user = imap_user_no_condstore
    uid = user.server.deliver(user, make_raw("plain server"))
    mailbox = make_mailbox(user)
    run(mailbox)
    user.server.add_flags(user, "INBOX", uid, ["\\Seen"])
    assert run(mailbox).total("flags_changed") == 1
    assert Message.objects.get(mailbox=mailbox).seen
    assert_in_step(mailbox, user)
    assert_idempotent(mailbox, user)


def test_read_flag_and_move_and_delete_made_in_the_crm_reach_the_server(imap_user, owner):
    dovecot = imap_user.server
    for name in ("Archive", "Trash"):
        dovecot.create_folder(imap_user, name)
    uids = [dovecot.deliver(imap_user, make_raw(f"m{i}")) for i in range(3)]
    mailbox = make_mailbox(imap_user, owner=owner, active_folders=["INBOX", "Archive", "Trash"])
    run(mailbox)
    m0, m1, m2 = (Message.objects.get(mailbox=mailbox, subject=f"m{i}") for i in range(3))

    message_change_flag(user=owner, message=m0, action="mark_read")
    message_change_flag(user=owner, message=m0, action="flag")
    m0.refresh_from_db()
    assert m0.seen and m0.flagged  # at once in the CRM
    message_move(
        user=owner, message=m1, target_folder=Folder.objects.get(mailbox=mailbox, name="Archive")
    )
    message_delete(user=owner, message=m2)
    report = run(mailbox)

    assert report.changes_pushed == 4
    assert dovecot.flags(imap_user, "INBOX", uids[0]) == {"\\Seen", "\\Flagged"}
    assert dovecot.uids(imap_user, "INBOX") == [uids[0]]
    assert len(dovecot.uids(imap_user, "Archive")) == 1
    assert len(dovecot.uids(imap_user, "Trash")) == 1
    assert not PendingChange.objects.filter(done_at__isnull=True).exists()
    assert PendingChange.objects.exclude(error="").count() == 0
    # Moved and deleted messages are the same rows, now in their new folders.
    assert Message.objects.filter(mailbox=mailbox).count() == 3
    assert m1.locations.get().folder.name == "Archive"
    assert m2.locations.get().folder.name == "Trash"
    assert_in_step(mailbox, imap_user)
    assert_idempotent(mailbox, imap_user)

    message_change_flag(user=owner, message=m0, action="mark_unread")
    run(mailbox)
    assert dovecot.flags(imap_user, "INBOX", uids[0]) == {"\\Flagged"}


def test_moved_to_a_folder_that_is_not_synced_is_still_on_the_server(imap_user, owner, client):
    """docs/reliability.md S-35: a message moved in the CRM to a folder the mailbox does not
    sync leaves its synced folder, but it is on the server (in that folder): never "No longer
    on the server", which says every copy was expunged."""
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Projects")
    dovecot.deliver(imap_user, make_raw("moved away"))
    mailbox = make_mailbox(imap_user, owner=owner, active_folders=["INBOX"])
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox, subject="moved away")
    projects = Folder.objects.get(mailbox=mailbox, name="Projects")
    assert not projects.is_active
    message_move(user=owner, message=message, target_folder=projects)
    run(mailbox)

    assert len(dovecot.uids(imap_user, "Projects")) == 1
    assert dovecot.uids(imap_user, "INBOX") == []
    assert PendingChange.objects.get(mailbox=mailbox).error == ""
    message.refresh_from_db()
    assert message.on_server and not message.locations.exists()
    client.force_login(owner)
    page = client.get(reverse("inbox:conversation", args=[message.pk])).content.decode()
    assert "No longer on the server" not in page


LEFT_FLAGGED = "flagged for deletion; the server lacks UIDPLUS, so it was not expunged"


def test_without_uidplus_the_crm_never_expunges_what_another_client_only_flagged(
    imap_user_no_uidplus, owner, client
):
    """docs/reliability.md S-30: a server announcing neither UIDPLUS nor MOVE. Another client
    marked a message \\Deleted and meant to keep it; a delete and a move made in the CRM must
    not take it with them (a plain EXPUNGE would). The CRM's own messages are copied, left
    flagged for deletion, and the health page says so."""
    user = imap_user_no_uidplus
    dovecot = user.server
    for name in ("Archive", "Trash"):
        dovecot.create_folder(user, name)
    kept = dovecot.deliver(user, make_raw("only flagged elsewhere"))
    deleted = dovecot.deliver(user, make_raw("deleted in the CRM"))
    moved = dovecot.deliver(user, make_raw("moved in the CRM"))
    mailbox = make_mailbox(user, owner=owner, active_folders=["INBOX", "Archive", "Trash"])
    run(mailbox)
    dovecot.add_flags(user, "INBOX", kept, ["\\Deleted"])  # another client, not expunged

    message_delete(user=owner, message=Message.objects.get(subject="deleted in the CRM"))
    message_move(
        user=owner,
        message=Message.objects.get(subject="moved in the CRM"),
        target_folder=Folder.objects.get(mailbox=mailbox, name="Archive"),
    )
    report = run(mailbox)

    assert dovecot.uids(user, "INBOX") == [kept, deleted, moved]
    assert "\\Deleted" in dovecot.flags(user, "INBOX", kept)
    for uid in (deleted, moved):
        assert "\\Deleted" in dovecot.flags(user, "INBOX", uid)
    assert len(dovecot.uids(user, "Trash")) == len(dovecot.uids(user, "Archive")) == 1
    assert report.changes_pushed == 2
    changes = PendingChange.objects.filter(mailbox=mailbox)
    assert [c.error for c in changes] == [LEFT_FLAGGED, LEFT_FLAGGED]
    assert not changes.filter(done_at__isnull=True).exists()
    assert_in_step(mailbox, user)
    assert_idempotent(mailbox, user)

    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_health", args=[mailbox.pk])).content.decode()
    assert html.count(LEFT_FLAGGED) == 2


def test_move_on_the_server_keeps_one_message_and_its_filings(imap_user):
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Archive")
    uid = dovecot.deliver(imap_user, make_raw("to archive"))
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Archive"])
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox)
    contact = f.ContactFactory()
    f.FilingFactory(message=message, contact=contact)

    dovecot.move(imap_user, uid, "INBOX", "Archive")
    run(mailbox)

    assert Message.objects.filter(mailbox=mailbox).count() == 1
    message.refresh_from_db()
    assert message.on_server
    assert [loc.folder.name for loc in message.locations.all()] == ["Archive"]
    assert Filing.objects.filter(message=message, contact=contact).exists()
    assert_in_step(mailbox, imap_user)
    assert_idempotent(mailbox, imap_user)


def test_expunged_message_leaves_its_folder_but_stays_filed(imap_user):
    dovecot = imap_user.server
    uid = dovecot.deliver(imap_user, make_raw("will vanish"))
    dovecot.deliver(imap_user, make_raw("stays"))
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    gone = Message.objects.get(mailbox=mailbox, subject="will vanish")
    f.FilingFactory(message=gone, contact=f.ContactFactory())

    dovecot.expunge(imap_user, "INBOX", uid)
    report = run(mailbox)

    assert report.total("expunged") == 1
    gone.refresh_from_db()
    assert not gone.on_server and not gone.locations.exists()
    assert gone.filings.count() == 1
    assert_in_step(mailbox, imap_user)
    assert_idempotent(mailbox, imap_user)


def test_uidvalidity_reset_resyncs_without_duplicates_and_keeps_filings(imap_user):
    dovecot = imap_user.server
    for i in range(5):
        dovecot.deliver(imap_user, make_raw(f"r{i}"))
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    ids = set(Message.objects.filter(mailbox=mailbox).values_list("pk", flat=True))
    filing = f.FilingFactory(message=Message.objects.get(subject="r2"), contact=f.ContactFactory())

    new_validity = dovecot.reset_uidvalidity(imap_user, "INBOX")
    report = run(mailbox)

    inbox = next(folder for folder in report.folders if folder.name == "INBOX")
    assert inbox.uidvalidity_reset
    assert report.total("stored") == 0 and report.total("duplicate") == 5
    assert set(Message.objects.filter(mailbox=mailbox).values_list("pk", flat=True)) == ids
    assert Folder.objects.get(mailbox=mailbox, name="INBOX").uidvalidity == new_validity
    assert Filing.objects.filter(pk=filing.pk).exists()
    assert all(Message.objects.filter(pk__in=ids).values_list("on_server", flat=True))
    assert_in_step(mailbox, imap_user)
    assert_idempotent(mailbox, imap_user)


def test_folder_renamed_elsewhere_is_followed(imap_user):
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Projects")
    dovecot.deliver(imap_user, make_raw("project mail"), folder="Projects")
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Projects"])
    run(mailbox)
    dovecot.rename_folder(imap_user, "Projects", "Clients")
    report = run(mailbox)
    mailbox.refresh_from_db()
    assert "Clients" in mailbox.active_folders and "Projects" not in mailbox.active_folders
    assert report.total("stored") == 0
    assert Message.objects.filter(mailbox=mailbox).count() == 1
    assert_in_step(mailbox, imap_user)


def test_a_list_answer_that_leaves_a_folder_out_detaches_none_of_its_mail(imap_user, fault_proxy):
    """docs/reliability.md S-31: the fault proxy stands for a server whose LIST answer leaves a
    folder out now and then. Its messages keep their locations: a folder is gone only when two
    syncs in a row miss it and a STATUS of it fails, and here the STATUS answers."""
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Projects")
    dovecot.deliver(imap_user, make_raw("project plan"), folder="Projects")
    dovecot.deliver(imap_user, make_raw("inbox mail"))
    mailbox = make_mailbox(
        imap_user,
        imap_host=fault_proxy.host,
        imap_port=fault_proxy.port,
        active_folders=["INBOX", "Projects"],
    )
    run(mailbox)
    plan = Message.objects.get(mailbox=mailbox, subject="project plan")
    f.FilingFactory(message=plan, contact=f.ContactFactory())

    fault_proxy.omit_from_list("Projects")
    for _ in range(3):
        run(mailbox)
        plan.refresh_from_db()
        assert plan.on_server
        assert [loc.folder.name for loc in plan.locations.all()] == ["Projects"]
        projects = Folder.objects.get(mailbox=mailbox, name="Projects")
        assert projects.exists_on_server and projects.is_active
    assert fault_proxy.omitted_lists == 3

    fault_proxy.normal()
    dovecot.deliver(imap_user, make_raw("later plan"), folder="Projects")
    assert run(mailbox).total("stored") == 1
    assert_in_step(mailbox, imap_user)
    assert_idempotent(mailbox, imap_user)


def test_a_folder_deleted_on_the_server_is_let_go_after_two_syncs(imap_user):
    """docs/reliability.md S-03, S-31: a real deletion. The first sync that misses the folder
    keeps it; the second one asks STATUS, which fails, and the folder's locations go while its
    messages stay filed, marked no longer on the server."""
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Projects")
    dovecot.deliver(imap_user, make_raw("project plan"), folder="Projects")
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Projects"])
    run(mailbox)
    plan = Message.objects.get(mailbox=mailbox, subject="project plan")
    filing = f.FilingFactory(message=plan, contact=f.ContactFactory())

    dovecot.delete_folder(imap_user, "Projects")
    run(mailbox)
    plan.refresh_from_db()
    assert plan.on_server and plan.locations.count() == 1

    run(mailbox)
    plan.refresh_from_db()
    assert not plan.on_server and not plan.locations.exists()
    projects = Folder.objects.get(mailbox=mailbox, name="Projects")
    assert not projects.exists_on_server and not projects.is_active
    assert Filing.objects.filter(pk=filing.pk).exists()
    assert_in_step(mailbox, imap_user)
    assert_idempotent(mailbox, imap_user)


def test_same_message_in_two_folders_is_stored_once_with_two_locations(imap_user):
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Copies")
    uid = dovecot.deliver(imap_user, make_raw("copied"))
    dovecot.copy(imap_user, uid, "INBOX", "Copies")
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Copies"])
    report = run(mailbox)
    assert report.total("stored") == 1 and report.total("duplicate") == 1
    message = Message.objects.get(mailbox=mailbox)
    assert message.locations.count() == 2
    dovecot.expunge(imap_user, "Copies", dovecot.uids(imap_user, "Copies")[0])
    run(mailbox)
    message.refresh_from_db()
    assert message.on_server and message.locations.count() == 1
    assert_in_step(mailbox, imap_user)


def test_forged_message_id_with_other_content_is_another_message(imap_user):
    dovecot = imap_user.server
    dovecot.deliver(imap_user, make_raw("genuine", message_id="<same@customer.example>"))
    dovecot.deliver(imap_user, make_raw("forged", message_id="<same@customer.example>"))
    dovecot.deliver(imap_user, make_raw("byte twin", message_id="<twin@customer.example>"))
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    assert set(Message.objects.filter(mailbox=mailbox).values_list("subject", flat=True)) == {
        "genuine",
        "forged",
        "byte twin",
    }
    assert_in_step(mailbox, imap_user)


def test_byte_identical_second_delivery_is_one_message(imap_user):
    dovecot = imap_user.server
    raw = make_raw("twice")
    dovecot.deliver(imap_user, raw)
    dovecot.deliver(imap_user, raw)
    mailbox = make_mailbox(imap_user)
    report = run(mailbox)
    assert report.total("stored") == 1 and report.total("duplicate") == 1
    assert Message.objects.get(mailbox=mailbox).locations.count() == 2
    assert_in_step(mailbox, imap_user)


@pytest.mark.parametrize("message_id", [None, "<>", "<" + "x" * 2000 + "@a>", "<naïve@ü>"])
def test_missing_or_garbage_message_id_is_stored_once(imap_user, message_id):
    dovecot = imap_user.server
    header = f"Message-ID: {message_id}\r\n".encode() if message_id else b""
    raw = (
        b"From: Ana <ana@customer.example>\r\nTo: support@relay.test\r\n"
        b"Subject: odd id\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n" + header + b"\r\nHello\r\n"
    )
    dovecot.deliver(imap_user, raw)
    mailbox = make_mailbox(imap_user)
    assert run(mailbox).total("stored") == 1
    assert_idempotent(mailbox, imap_user)
    assert Message.objects.filter(mailbox=mailbox).count() == 1


def test_replies_join_the_thread_of_their_parent(imap_user):
    dovecot = imap_user.server
    dovecot.deliver(imap_user, make_raw("Invoice 7", message_id="<q1@customer.example>"))
    dovecot.deliver(imap_user, make_raw("Re: Invoice 7", in_reply_to="<q1@customer.example>"))
    dovecot.deliver(imap_user, make_raw("Invoice 7", sender="other@else.example"))
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    first = Message.objects.get(message_id="q1@customer.example")
    reply = Message.objects.get(subject="Re: Invoice 7")
    stranger = Message.objects.get(from_address="other@else.example")
    assert reply.thread_id == first.thread_id
    assert stranger.thread_id != first.thread_id
    assert first.thread.message_count == 2


def test_wrong_password_needs_reconnect_and_stops_retrying(imap_user):
    mailbox = make_mailbox(imap_user, password="not-the-password")
    report = sync.sync_mailbox(mailbox.pk)
    assert report.outcome == "needs_reconnect"
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    assert mailbox.last_error
    assert mailbox.password.reveal() == "not-the-password"  # never overwritten
    assert sync.sync_mailbox(mailbox.pk).outcome == "not_active"


def test_password_changed_on_the_server_pauses_only_that_mailbox(imap_user, dovecot):
    other_user = dovecot.create_user()
    from tests.servers.fixtures import ImapUser

    other = make_mailbox(ImapUser(dovecot, other_user))
    mailbox = make_mailbox(imap_user)
    run(mailbox)
    dovecot.set_password(imap_user, "changed-on-the-server")
    assert sync.sync_mailbox(mailbox.pk).outcome == "needs_reconnect"
    assert run(other).completed


def test_unreachable_server_is_a_temporary_error_with_backoff(imap_user):
    from tests.servers.certs import refused_port

    mailbox = make_mailbox(imap_user, imap_port=refused_port())
    report = sync.sync_mailbox(mailbox.pk)
    assert report.outcome == "error"
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ERROR
    assert mailbox.consecutive_failures == 1
    assert mailbox.next_sync_at > timezone.now()
    sync.sync_mailbox(mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.consecutive_failures == 2


def test_paused_mailbox_is_not_touched(imap_user):
    imap_user.server.deliver(imap_user, make_raw("waits"))
    mailbox = make_mailbox(imap_user, state=Mailbox.State.PAUSED)
    assert sync.sync_mailbox(mailbox.pk).outcome == "not_active"
    assert not Message.objects.exists()


def test_a_second_sync_while_one_holds_the_lease_exits_as_busy(imap_user):
    from connector.sync import lease

    mailbox = make_mailbox(imap_user)
    held = lease.acquire(mailbox.pk)
    assert held is not None
    report = sync.sync_mailbox(mailbox.pk)
    assert report.outcome == "busy" and report.error == "already syncing"
    held.release()
    assert run(mailbox).completed


def test_a_retry_takes_over_the_lease_its_own_cut_off_attempt_left(imap_user):
    """A push sync's first attempt took the lease, then lost the database before it could let
    go: its retry (the same Celery task id) syncs at once, where any other sync still finds the
    mailbox busy until the lease runs out (connector/sync/lease.py, docs/reliability.md I-03)."""
    from connector.sync import lease as leases

    imap_user.server.deliver(imap_user, make_raw("after the outage"))
    mailbox = make_mailbox(imap_user)
    dead_attempt = leases.acquire(mailbox.pk, "task-1")  # never released: the database was gone
    assert dead_attempt is not None

    assert sync.sync_mailbox(mailbox.pk, task_id="task-2").outcome == "busy"
    assert sync.sync_mailbox(mailbox.pk).outcome == "busy"
    assert not Message.objects.filter(mailbox=mailbox).exists()

    report = sync.sync_mailbox(mailbox.pk, task_id="task-1")
    assert report.completed and report.total("stored") == 1
    assert Message.objects.get(mailbox=mailbox).subject == "after the outage"
    mailbox.refresh_from_db()
    assert mailbox.lease_expires_at is None and mailbox.state == Mailbox.State.ACTIVE
    with pytest.raises(leases.LeaseLost):  # had that attempt lived on, it could write nothing
        dead_attempt.renew()


def test_a_holder_whose_lease_was_taken_over_cannot_write(imap_user, settings):
    from connector.sync import lease

    imap_user.server.deliver(imap_user, make_raw("fenced"))
    mailbox = make_mailbox(imap_user)
    settings.RELAY_SYNC_LEASE_TTL = -1
    stale = lease.acquire(mailbox.pk)  # already expired
    settings.RELAY_SYNC_LEASE_TTL = 120
    fresh = lease.acquire(mailbox.pk)
    assert stale and fresh and fresh.generation > stale.generation
    with pytest.raises(lease.LeaseLost):
        stale.renew()
    from django.db import transaction

    with pytest.raises(lease.LeaseLost), transaction.atomic():
        stale.check()
    fresh.release()


def test_a_sync_taken_over_mid_way_writes_nothing_and_no_error(imap_user, settings):
    """This worker froze past its lease and another sync took the mailbox over: this one stops
    without storing, and leaves the mailbox's state to the other (no "error", no back-off that
    would hold the next syncs for 30 s; docs/reliability.md S-21)."""
    from connector.sync import lease as leases

    imap_user.server.deliver(imap_user, make_raw("taken over"))
    mailbox = make_mailbox(imap_user)
    taken = []

    def connect_then_lose_the_lease(mailbox):
        Mailbox.objects.filter(pk=mailbox.pk).update(lease_expires_at=timezone.now())
        taken.append(leases.acquire(mailbox.pk))  # the other sync
        return sync._connect(mailbox)

    report = sync.sync_mailbox(mailbox.pk, connect=connect_then_lose_the_lease)
    assert taken[0] is not None
    assert report.outcome == "lease_lost" and not report.completed
    assert not Message.objects.filter(mailbox=mailbox).exists()
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.SYNCING and mailbox.consecutive_failures == 0
    assert mailbox.last_error == "" and mailbox.lease_generation == taken[0].generation
    taken[0].release()
    assert run(mailbox).completed
    assert Message.objects.filter(mailbox=mailbox).count() == 1


def test_a_reply_stored_before_its_parent_joins_the_parents_thread(imap_user):
    """The sync takes Inbox before Sent: the customer's answer arrives first."""
    dovecot = imap_user.server
    dovecot.deliver(
        imap_user, make_raw("Our offer", message_id="<offer@relay.test>"), folder="Sent"
    )
    dovecot.deliver(imap_user, make_raw("Re: Our offer", in_reply_to="<offer@relay.test>"))
    mailbox = make_mailbox(imap_user, active_folders=["INBOX"])
    run(mailbox)
    Mailbox.objects.filter(pk=mailbox.pk).update(active_folders=["INBOX", "Sent"])
    run(mailbox)
    offer = Message.objects.get(subject="Our offer")
    answer = Message.objects.get(subject="Re: Our offer")
    assert offer.thread_id == answer.thread_id
    assert offer.thread.message_count == 2
