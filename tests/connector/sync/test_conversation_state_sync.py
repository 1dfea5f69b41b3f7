"""A conversation's state follows real mail synced from the test Dovecot (docs/product.md
§7.8): a customer's reply reopens a Done or Waiting conversation and wakes a snoozed one, our
own mail in Sent puts it in Waiting, history starts Done, and mail found again (a second
sync, a UIDVALIDITY reset) reopens nothing (docs/reliability.md S-32). Reading on a shared
mailbox stays in Relay unless the mailbox writes \\Seen back."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from connector.sync import mailbox as sync
from inbox.models import Mailbox, Message, PendingChange, Thread, ThreadEvent
from inbox.services.conversations import (
    conversation_mark_read,
    conversation_set_status,
    conversation_snooze,
)
from tests import factories as f
from tests.connector.synckit import make_mailbox, make_raw

pytestmark = pytest.mark.django_db


def run(mailbox):
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()
    return report


def thread_of(subject: str) -> Thread:
    return Message.objects.get(subject=subject).thread


def test_customer_replies_reopen_and_a_resync_reopens_nothing(imap_user, owner):
    dovecot = imap_user.server
    dovecot.deliver(imap_user, make_raw("Old question", message_id="<old@customer.example>"))
    mailbox = make_mailbox(imap_user, owner=owner, active_folders=["INBOX"])
    run(mailbox)
    # The first sync's mail is history: Done, so "All open" does not start with years of mail.
    assert thread_of("Old question").status == Thread.Status.DONE

    dovecot.deliver(imap_user, make_raw("Printer jams", message_id="<jam@customer.example>"))
    run(mailbox)
    thread = thread_of("Printer jams")
    assert (thread.status, thread.assignee_id) == (Thread.Status.OPEN, None)
    conversation_set_status(actor=owner, thread=thread, status="done")

    # Found again: a second sync and a UIDVALIDITY reset bring the same bytes: still Done.
    run(mailbox)
    dovecot.reset_uidvalidity(imap_user, "INBOX")
    report = run(mailbox)
    assert report.total("duplicate") == 2 and report.total("stored") == 0
    thread.refresh_from_db()
    assert thread.status == Thread.Status.DONE
    assert not ThreadEvent.objects.filter(thread=thread, kind="reopened").exists()

    # The customer answers: Open again, and the timeline says why.
    dovecot.deliver(
        imap_user,
        make_raw(
            "Re: Printer jams", in_reply_to="<jam@customer.example>", sender="Ana <ana@x.example>"
        ),
    )
    run(mailbox)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.OPEN
    event = ThreadEvent.objects.get(thread=thread, kind="reopened")
    assert event.actor is None and event.data["sender"] == "Ana"

    # Snoozed: the customer's next mail wakes it before its time.
    conversation_snooze(actor=owner, thread=thread, until=timezone.now() + dt.timedelta(days=3))
    dovecot.deliver(
        imap_user, make_raw("Re: Printer jams (2)", in_reply_to="<jam@customer.example>")
    )
    run(mailbox)
    thread.refresh_from_db()
    assert (thread.status, thread.snoozed_until) == (Thread.Status.OPEN, None)


def test_our_mail_in_sent_means_waiting_and_the_answer_reopens(imap_user, owner):
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Sent")
    mailbox = make_mailbox(imap_user, owner=owner, active_folders=["INBOX", "Sent"])
    run(mailbox)  # the first sync: nothing there yet
    dovecot.deliver(imap_user, make_raw("Quote please", message_id="<q@customer.example>"))
    run(mailbox)
    thread = thread_of("Quote please")
    assert thread.status == Thread.Status.OPEN

    # Our answer, written in another mail client and filed in Sent.
    dovecot.deliver(
        imap_user,
        make_raw(
            "Re: Quote please",
            sender=f"Olivia <{mailbox.email_address}>",
            to="ana@customer.example",
            in_reply_to="<q@customer.example>",
            message_id="<answer@relay.test>",
        ),
        folder="Sent",
    )
    run(mailbox)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.WAITING

    dovecot.deliver(imap_user, make_raw("Re: Re: Quote please", in_reply_to="<answer@relay.test>"))
    run(mailbox)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.OPEN

    # A mailbox that does not want it: our reply leaves the conversation Open.
    Mailbox.objects.filter(pk=mailbox.pk).update(reply_sets_waiting=False)
    dovecot.deliver(
        imap_user,
        make_raw(
            "Re: once more",
            sender=mailbox.email_address,
            in_reply_to="<answer@relay.test>",
        ),
        folder="Sent",
    )
    run(mailbox)
    thread.refresh_from_db()
    assert thread.status == Thread.Status.OPEN


def test_reading_a_shared_conversation_leaves_the_server_alone_unless_asked(imap_user):
    dovecot = imap_user.server
    tom, sofia = f.UserFactory(username="tom"), f.UserFactory(username="sofia")
    mailbox = make_mailbox(imap_user, active_folders=["INBOX"])
    Mailbox.objects.filter(pk=mailbox.pk).update(kind=Mailbox.Kind.SHARED, owner=None)
    mailbox.refresh_from_db()
    mailbox.granted_users.add(tom, sofia)
    run(mailbox)
    uid = dovecot.deliver(imap_user, make_raw("Shared question"))
    run(mailbox)
    thread = thread_of("Shared question")

    conversation_mark_read(user=tom, thread=thread)
    run(mailbox)
    assert "\\Seen" not in dovecot.flags(imap_user, "INBOX", uid)
    assert not PendingChange.objects.exists()

    # The team turns the write-back on: the next reading is written to the server.
    Mailbox.objects.filter(pk=mailbox.pk).update(write_seen_to_server=True)
    thread.refresh_from_db()
    conversation_mark_read(user=sofia, thread=thread)
    run(mailbox)
    assert "\\Seen" in dovecot.flags(imap_user, "INBOX", uid)
