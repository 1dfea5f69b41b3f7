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
