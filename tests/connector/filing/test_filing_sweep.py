"""A filing task lost with the broker only delays filing: the beat sweep files the message."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from connector.emailapi.intake import file_pending
from inbox.models import Filing, Message
from tests import factories as f

pytestmark = pytest.mark.django_db


def stored_unfiled(mailbox, sender: str, *, minutes_ago: int) -> Message:
    message = f.MessageFactory(mailbox=mailbox, from_address=sender, date=timezone.now())
    f.MessageAddressFactory(message=message, role="from", address=sender)
    Message.objects.filter(pk=message.pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=minutes_ago)
    )
    return message


def test_messages_whose_filing_task_was_lost_are_filed_by_the_sweep():
    contact = f.ContactFactory(emails=["ana@customer.example"])
    mailbox = f.SharedMailboxFactory()
    lost = stored_unfiled(mailbox, "ana@customer.example", minutes_ago=10)
    fresh = stored_unfiled(mailbox, "ana@customer.example", minutes_ago=0)

    assert file_pending() == 1
    assert Filing.objects.filter(message=lost, contact=contact).exists()
    lost.refresh_from_db()
    assert lost.filed_at is not None
    # A message stored just now still has its own task on the way: left to it.
    assert not Filing.objects.filter(message=fresh).exists()
    # Filed messages are not filed again.
    assert file_pending() == 0


def test_mail_found_again_after_a_uidvalidity_reset_opens_nothing_when_the_sweep_files_it():
    """docs/reliability.md S-01: the filing task of mail found again after a reset was lost; the
    sweep files it as history too (no ticket, no acknowledgement), and new mail as new."""
    from crm.models import Ticket
    from inbox.models import OutboxEntry

    mailbox = f.SharedMailboxFactory(create_tickets=True, create_contacts=True)
    inbox = f.FolderFactory(mailbox=mailbox, name="INBOX", uidvalidity=2, history_below_uid=40)
    refound = stored_unfiled(mailbox, "ana@customer.example", minutes_ago=10)
    f.LocationFactory(message=refound, folder=inbox, uid=39)
    new = stored_unfiled(mailbox, "ben@customer.example", minutes_ago=10)
    f.LocationFactory(message=new, folder=inbox, uid=40)

    assert file_pending() == 2

    assert list(Ticket.objects.values_list("contact__emails__email", flat=True)) == [
        "ben@customer.example"
    ]
    assert list(OutboxEntry.objects.values_list("to", flat=True)) == [["ben@customer.example"]]
