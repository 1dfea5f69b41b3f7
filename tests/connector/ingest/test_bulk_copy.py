"""The engine's COPY (connector/ingest/bulk.py) sends rows in PostgreSQL's binary format when it
can (issue #17: a fraction of the text format's CPU on both sides for real-sized bodies). What a
reader sees must not depend on the format: a message reads back exactly as the ORM writes it,
whichever way its row went in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.ingest import bulk
from inbox.models import Mailbox, Message, MessageAddress

pytestmark = pytest.mark.django_db

# What the text format has to escape, and what a careless binary writer would get wrong.
AWKWARD = "tab\there, back\\slash, new\nline, cr\r\n, caf\xe9 \u2013 \u65e5\u672c \U0001f600 \\N."
FIELDS = ["subject", "from_name", "text_body", "html_body", "date", "internal_date", "headers"]
FIELDS += ["parse_defects", "is_list", "seen", "flagged", "size", "references", "thread_id"]


def _message(mailbox: Mailbox, n: int, **fields) -> Message:
    values = {
        "mailbox": mailbox,
        "sha256": f"{n:064x}",
        "size": 2**40 + 7,  # a bigint
        "subject": f"{n} {AWKWARD}",
        "from_name": "\u00c9milie \u201cD\u201d",
        "text_body": AWKWARD * 500,
        "html_body": f"<p>{AWKWARD}</p>" * 2000,  # ~90 KB: toasted
        "date": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "headers": {"list-id": AWKWARD, "authentication-results": ["a; dkim=pass", "b"]},
        "parse_defects": [AWKWARD],
        "is_list": n % 2 == 0,
        "seen": True,
    }
    values.update(fields)
    return Message(**values)


@pytest.fixture
def copies(monkeypatch):
    """The format of each COPY the engine sends: 'binary' or 'text'."""
    formats: list[str] = []
    choose = bulk._binary_types

    def recording(table, columns, rows):
        kinds = choose(table, columns, rows)
        formats.append("text" if kinds is None else "binary")
        return kinds

    monkeypatch.setattr(bulk, "_binary_types", recording)
    return formats


def _read(messages):
    by_pk = Message.objects.in_bulk([m.pk for m in messages])
    return [[getattr(by_pk[m.pk], f) for f in FIELDS] for m in messages]


def test_messages_copied_in_binary_read_back_as_the_orm_writes_them(copies):
    mailbox = Mailbox.objects.create(kind=Mailbox.Kind.SHARED, email_address="a@relay.example")
    count = bulk.COPY_MIN_ROWS
    extra = {"internal_date": None, "text_body": "", "is_list": False}
    copied = bulk.insert(
        Message, [_message(mailbox, n, **(extra if n == 3 else {})) for n in range(count)]
    )
    written = Message.objects.bulk_create(
        [_message(mailbox, 1000 + n, **(extra if n == 3 else {})) for n in range(count)]
    )
    assert copies == ["binary"]
    got, expected = _read(copied), _read(written)
    for row in expected:
        row[0] = row[0].split(" ", 1)[1]  # the subjects differ by their number only
    for row in got:
        row[0] = row[0].split(" ", 1)[1]
    assert got == expected
    assert got[0][FIELDS.index("html_body")] == f"<p>{AWKWARD}</p>" * 2000

    rows = [(m.pk, "to", f"r{n}@example.com", AWKWARD, n) for n, m in enumerate(copied)]
    bulk.copy_rows(MessageAddress, ["message_id", "role", "address", "name", "position"], rows)
    assert copies == ["binary", "binary"]
    assert (
        list(
            MessageAddress.objects.filter(message__in=copied)
            .order_by("position")
            .values_list("message_id", "role", "address", "name", "position")
        )
        == rows
    )


def test_a_value_binary_cannot_carry_as_is_goes_in_the_text_format_as_before(copies):
    mailbox = Mailbox.objects.create(kind=Mailbox.Kind.SHARED, email_address="a@relay.example")
    naive = datetime(2026, 1, 2, 3, 4, 5)  # left to the session's time zone (UTC) by the text
    messages = [_message(mailbox, n) for n in range(bulk.COPY_MIN_ROWS)]
    messages[-1].internal_date = naive
    bulk.insert(Message, messages)
    assert copies == ["text"]
    stored = Message.objects.get(pk=messages[-1].pk)
    assert stored.internal_date == naive.replace(tzinfo=UTC)
    assert stored.text_body == AWKWARD * 500
