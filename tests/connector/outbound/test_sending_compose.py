"""Composing outgoing mail (docs/product.md §5.1): strict recipients (docs/reliability.md M-03),
header values that cannot smuggle a header (M-01, M-02), our Message-IDs (M-07), reply and forward
addressing, and the bytes built for the wire. No server is needed here: build_message is pure once
the entry exists, and the services only write rows."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from django.core.exceptions import ValidationError

from connector.filing import tokens
from connector.outbound import compose
from connector.outbound import outbox as sending
from inbox.addresses import Recipient, parse_recipient, parse_recipients
from inbox.models import OutboxEntry
from inbox.services.composing import (
    MAX_ATTACHMENT_BYTES,
    MAX_REFERENCES,
    message_reply,
    outbox_compose,
    reply_recipients,
)
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "value, expected",
    [
        ("ana@acme.example", Recipient("", "ana@acme.example")),
        ("  Ana@ACME.example ", Recipient("", "ana@acme.example")),
        ("Ana Lopez <ana@acme.example>", Recipient("Ana Lopez", "ana@acme.example")),
        ('"Lopez, Ana" <ana@acme.example>', Recipient("Lopez, Ana", "ana@acme.example")),
        (
            '"Ana \\"the boss\\"" <ana@acme.example>',
            Recipient('Ana "the boss"', "ana@acme.example"),
        ),
        ("<ana@acme.example>", Recipient("", "ana@acme.example")),
        ("ana@bücher.example", Recipient("", "ana@xn--bcher-kva.example")),
        ("José <jose+tickets@acme.example>", Recipient("José", "jose+tickets@acme.example")),
        # A display name that looks like an address: allowed, and what is used is shown.
        (
            '"alice@bank.example" <mallory@evil.example>',
            Recipient("alice@bank.example", "mallory@evil.example"),
        ),
    ],
)
def test_recipients_that_are_accepted(value, expected):
    assert parse_recipient(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        '"alice@example.com"@evil.example',  # CVE-2023-27043: quoted local part
        "alice@example.com@evil.example",
        "alice(comment)@example.com",
        "alice@example.com (Alice)",
        "Alice <alice@example.com> (x)",
        "alice",
        "alice@",
        "@example.com",
        "alice@localhost",
        "alice@-bad-.example",
        "ali ce@example.com",
        "josé@acme.example",  # non-ASCII before the @ needs SMTPUTF8
        "Ana <ana@acme.example",
        'Ana" <ana@acme.example>',
        "<ana@acme.example> <bo@acme.example>",
        "Ana\r\nBcc: v@evil.example <ana@acme.example>",
        "ana@acme.example\x00",
        ".ana@acme.example",
        "ana..lopez@acme.example",
    ],
)
def test_crafted_recipients_are_refused(value):
    with pytest.raises(ValidationError):
        parse_recipients(value)


def test_a_recipient_field_splits_on_commas_and_semicolons_outside_quotes():
    parsed = parse_recipients('"Lopez, Ana" <ana@acme.example>; bo@acme.example, Ana@acme.example')
    assert parsed == [
        Recipient("Lopez, Ana", "ana@acme.example"),
        Recipient("", "bo@acme.example"),
    ]
    assert [str(r) for r in parsed] == ['"Lopez, Ana" <ana@acme.example>', "bo@acme.example"]
    # What is stored parses back to the same recipients.
    assert parse_recipients([str(r) for r in parsed]) == parsed


def test_too_many_recipients_are_refused():
    with pytest.raises(ValidationError):
        parse_recipients(", ".join(f"u{i}@acme.example" for i in range(201)))


def entry_for(mailbox, **fields) -> OutboxEntry:
    owner = mailbox.owner
    return outbox_compose(
        user=owner,
        mailbox=mailbox,
        **{"to": "ana@acme.example", "subject": "Hello", "text_body": "Hi", **fields},
    )


def wire(entry: OutboxEntry):
    entry.message_id = compose.final_message_id(entry)
    raw = compose.build_message(entry)
    return raw, email.message_from_bytes(raw, policy=policy.default)


def test_the_bytes_are_7bit_crlf_and_short_lined(personal_mailbox):
    entry = entry_for(
        personal_mailbox,
        subject="Grüße aus Köln – " + "sehr lang " * 20,
        text_body="Zeile mit Umlauten: äöü\n" + "x" * 2000 + "\n.\n.leading dot\n",
        attachments=[("Übersicht.pdf", "application/pdf", bytes(range(256)) * 40)],
    )
    raw, message = wire(entry)
    assert max(raw) < 128
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert message["Subject"] == entry.subject
    body = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\n.\n.leading dot\n" in body
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "Übersicht.pdf"
    assert attachment.get_content() == bytes(range(256)) * 40


def test_reply_to_a_subject_that_decodes_to_a_line_break(personal_mailbox):
    """docs/reliability.md M-02: an encoded-word can decode to CR LF; the reply's subject is
    normalised and the header block gets no extra field."""
    original = f.MessageFactory(
        mailbox=personal_mailbox,
        subject="Invoice\r\nBcc: victim@evil.example",
        message_id="orig@acme.example",
        text_body="Pay me.",
    )
    f.MessageAddressFactory(message=original, role="from", address="ana@acme.example")
    entry = message_reply(user=personal_mailbox.owner, message=original, text_body="Paid.")
    assert entry.subject == "Re: Invoice Bcc: victim@evil.example"
    raw, message = wire(entry)
    assert message["Bcc"] is None
    assert not re.search(rb"(?im)^bcc:", raw)
    assert message["In-Reply-To"] == "<orig@acme.example>"


def test_our_message_ids_cannot_be_guessed(personal_mailbox):
    ids = {entry_for(personal_mailbox).message_id for _ in range(20)}
    assert len(ids) == 20
    for message_id in ids:
        local = message_id.partition("@")[0]
        assert re.fullmatch(r"relay-[0-9a-f]{32}", local), message_id  # 128 random bits
        assert tokens.check_message_id(message_id).status == "none"


def test_mail_sent_from_a_record_carries_its_signed_token_and_reference(personal_mailbox):
    ticket = f.TicketFactory(subject="Printer")
    entry = entry_for(personal_mailbox, record=ticket, subject="About your printer")
    assert entry.subject == f"[{ticket.reference}] About your printer"
    _, message = wire(entry)
    check = tokens.check_message_id(message["Message-ID"].strip("<>"))
    assert (check.status, check.record_type, check.record_id) == ("valid", "ticket", ticket.pk)
    # The reference is not doubled when the subject has it already.
    again = entry_for(personal_mailbox, record=ticket, subject=f"Re: [{ticket.reference}] x")
    assert again.subject == f"Re: [{ticket.reference}] x"


def test_reply_addressing(personal_mailbox):
    own = personal_mailbox.email_address
    received = f.MessageFactory(mailbox=personal_mailbox, subject="Re: RE: Plans")
    for role, address, name in [
        ("from", "ana@acme.example", "Ana"),
        ("reply_to", "team@acme.example", "Team"),
        ("to", own, ""),
        ("to", "bo@acme.example", "Bo"),
        ("cc", "cy@acme.example", ""),
        ("cc", "ANA@acme.example", ""),
    ]:
        f.MessageAddressFactory(message=received, role=role, address=address.lower(), name=name)
    to, cc = reply_recipients(message=received, mailbox=personal_mailbox)
    assert [str(r) for r in to] == ["Team <team@acme.example>"] and cc == []
    to, cc = reply_recipients(message=received, mailbox=personal_mailbox, reply_all=True)
    assert [str(r) for r in cc] == ["Bo <bo@acme.example>", "cy@acme.example", "ana@acme.example"]
    entry = message_reply(user=personal_mailbox.owner, message=received, text_body="x")
    assert entry.subject == "Re: Plans"

    # Replying to mail we sent ourselves goes to its recipients, not back to us.
    ours = f.MessageFactory(mailbox=personal_mailbox, subject="Offer")
    f.MessageAddressFactory(message=ours, role="from", address=own)
    f.MessageAddressFactory(message=ours, role="to", address="dan@client.example", name="Dan")
    to, _ = reply_recipients(message=ours, mailbox=personal_mailbox)
    assert [str(r) for r in to] == ["Dan <dan@client.example>"]


def test_references_are_trimmed_keeping_the_first_and_the_last(personal_mailbox):
    chain = " ".join(f"<m{i}@acme.example>" for i in range(40))
    original = f.MessageFactory(
        mailbox=personal_mailbox, message_id="m40@acme.example", references=chain
    )
    f.MessageAddressFactory(message=original, role="from", address="ana@acme.example")
    entry = message_reply(user=personal_mailbox.owner, message=original, text_body="x")
    refs = entry.references.split()
    assert len(refs) == MAX_REFERENCES
    assert refs[0] == "<m0@acme.example>" and refs[-1] == "<m40@acme.example>"


def test_html_only_compose_gets_a_text_part(personal_mailbox):
    entry = entry_for(
        personal_mailbox,
        text_body="",
        html_body="<p>Hello <b>Ana</b></p><script>x()</script><p>Bye</p>",
    )
    _, message = wire(entry)
    text = message.get_body(("plain",)).get_content()
    assert "Hello Ana" in text and "Bye" in text and "x()" not in text
    assert "<b>Ana</b>" in message.get_body(("html",)).get_content()


def test_no_recipient_or_a_foreign_mailbox_is_refused(personal_mailbox, outsider):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(ValidationError):
        entry_for(personal_mailbox, to="")
    with pytest.raises(PermissionDenied):
        outbox_compose(user=outsider, mailbox=personal_mailbox, to="a@acme.example", subject="x")
    assert not OutboxEntry.objects.exists()


def test_bcc_is_in_the_envelope_only(personal_mailbox):
    entry = entry_for(personal_mailbox, cc="Cy <cy@acme.example>", bcc="boss@acme.example")
    raw, message = wire(entry)
    assert message["Bcc"] is None and b"boss@acme.example" not in raw
    sender, recipients = sending._envelope(entry)
    assert sender == personal_mailbox.email_address
    assert recipients == ["ana@acme.example", "cy@acme.example", "boss@acme.example"]


def test_attachments_are_capped(personal_mailbox):
    big = b"x" * (MAX_ATTACHMENT_BYTES // 2 + 1)
    with pytest.raises(ValidationError):
        entry_for(
            personal_mailbox,
            attachments=[("a.bin", "application/octet-stream", big)] * 2,
        )
    assert not OutboxEntry.objects.exists()
