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
