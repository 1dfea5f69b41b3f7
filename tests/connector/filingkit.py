"""Helpers for matching and filing tests: stored messages with their address rows, the filing
as a user would read it, and Celery run in-process."""

from __future__ import annotations

import itertools

import pytest

from connector.emailapi import intake
from connector.filing import apply
from inbox.models import Filing, MessageAddress, TriageEntry
from tests import factories as f

_ids = itertools.count(1)


def mail(
    mailbox,
    *,
    sender: str,
    to=(),
    cc=(),
    reply_to=(),
    subject: str = "Hello",
    in_reply_to: str = "",
    references: str = "",
    message_id: str | None = None,
    **fields,
):
    """A stored message as ingest leaves it: Message plus one MessageAddress per address."""
    n = next(_ids)
    message = f.MessageFactory(
        mailbox=mailbox,
        from_address=sender,
        subject=subject,
        in_reply_to=in_reply_to,
        references=references or in_reply_to,
        message_id=message_id if message_id is not None else f"m{n}.filing@mail.example",
        **fields,
    )
    rows = [MessageAddress(message=message, role="from", address=sender)]
    for role, addresses in (("reply_to", reply_to), ("to", to), ("cc", cc)):
        rows += [
            MessageAddress(message=message, role=role, address=a, position=i)
            for i, a in enumerate([addresses] if isinstance(addresses, str) else addresses)
        ]
    MessageAddress.objects.bulk_create(rows)
    return message


def arrived(raw: bytes, *authentication_results: str) -> bytes:
    """`raw` as a receiving server hands it on: each Authentication-Results value prepended,
    the first given on top (RFC 8601: every server adds its own above what is there)."""
    added = "".join(f"Authentication-Results: {value}\r\n" for value in authentication_results)
    return added.encode() + raw


def receive(mailbox, *raws: bytes, folder: str = "INBOX", special_use: str = "inbox"):
    """Raw RFC 5322 messages taken the path a real one takes: stored as the sync stores a
    fetched batch (connector/ingest/store.py store_batch: parsed, raw source kept, addresses,
    ledger), then handed to the filing task's entry (connector/emailapi/intake.py
    file_new_mail: Email API documents answered, the rest filed). Returns the new messages."""
    from django.utils import timezone

    from connector.ingest.prepare import Fetched
    from connector.ingest.store import store_batch
    from inbox.models import Folder, Message

    box, _ = Folder.objects.get_or_create(
        mailbox=mailbox,
        name=folder,
        defaults={"special_use": special_use, "is_active": True, "uidvalidity": 1},
    )
    box.refresh_from_db()
    items = [
        Fetched(uid=box.last_uid + i, raw=raw, internal_date=timezone.now())
        for i, raw in enumerate(raws, start=1)
    ]
    result = store_batch(folder=box, uidvalidity=box.uidvalidity or 1, items=items, lease=None)
    assert result.stored == len(raws), result
    intake.file_new_mail(message_ids=result.new_message_ids)
    return list(Message.objects.filter(pk__in=result.new_message_ids).order_by("pk"))


def file(*messages, **kwargs):
    """File as new mail is filed (Email API documents answered first), or re-file."""
    ids = [m.pk for m in messages]
    if kwargs.pop("retroactive", False):
        return apply.file_messages(message_ids=ids, retroactive=True, **kwargs)
    return intake.file_new_mail(message_ids=ids, **kwargs)


def filed(message) -> set[tuple[str, int, str]]:
    """(record type, record id, rule) of the message's active filings."""
    return {
        (x.record_type, x.record.pk, x.rule)
        for x in Filing.objects.filter(message=message, unlinked_at__isnull=True)
    }


def records(message) -> set[tuple[str, int]]:
    return {(t, pk) for t, pk, _ in filed(message)}


def triage(message) -> set[str]:
    return set(
        TriageEntry.objects.filter(message=message, resolved_at__isnull=True).values_list(
            "reason", flat=True
        )
    )


@pytest.fixture
def eager_celery():
    """Run tasks in-process, as a worker would, for tests that go through the signals."""
    from crm.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous
