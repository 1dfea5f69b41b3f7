"""The Email API (docs/product.md §6): XML documents from allowed senders to a support mailbox
create and update accounts, contacts and tickets, all or nothing, and the sender is told what
happened. Documents go through the real path: a stored message handed to the filing pass.
Their sender is authenticated (our server's header says DKIM passed for web.example), as the
API requires (docs/reliability.md C-17); the attacks on that are in
tests/connector/emailapi/test_api_sender_authentication.py."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import xmlschema
from django.conf import settings

from connector.emailapi import document as email_api
from connector.emailapi import intake
from crm.models import Account, AccountDomain, Contact, ContactEmail, Ticket
from inbox.models import Attachment, EmailApiRequest, EmailApiSender, OutboxEntry, TriageEntry
from tests import factories as f
from tests.connector.filingkit import mail

pytestmark = pytest.mark.django_db

SCHEMA_DIR = Path(settings.BASE_DIR) / "schema"
NS = 'xmlns="urn:relay-crm:email-api:1"'
FORMS = "forms@web.example"
# Our receiving server's verdict on mail the web form service really sent.
VERIFIED = {"authentication-results": ["mx.relay.test; dkim=pass header.d=web.example"]}


@pytest.fixture
def support(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RELAY_AUTHSERV_IDS = ["mx.relay.test"]
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test", create_tickets=True)
    EmailApiSender.objects.create(mailbox=mailbox, address="Forms@Web.example")
    return mailbox


def send(mailbox, body: str, *, sender: str = FORMS, subject: str = "API", **fields):
    fields.setdefault("headers", VERIFIED)
    message = mail(
        mailbox,
        sender=sender,
        to=[mailbox.email_address],
        subject=subject,
        text_body=body,
        **fields,
    )
    intake.file_new_mail(message_ids=[message.pk])
    return message


def doc(*operations: str, request_id: str = "") -> str:
    rid = f' id="{request_id}"' if request_id else ""
    return (
        f'<?xml version="1.0"?>\n<request {NS}{rid}>\n' + "\n".join(operations) + "\n</request>\n"
    )


def reply_to(message) -> OutboxEntry:
    entries = list(OutboxEntry.objects.filter(reply_to_message=message, purpose="api_reply"))
    assert len(entries) == 1, entries
    return entries[0]


def assert_rejected(message, *fragments: str) -> str:
    request = EmailApiRequest.objects.get(message=message)
    assert request.outcome == "rejected"
    reply = reply_to(message)
    assert reply.to == [FORMS] and reply.state == OutboxEntry.State.QUEUED
    assert "was rejected: nothing was saved" in reply.text_body
    for fragment in fragments:
        assert fragment in reply.text_body, reply.text_body
    return reply.text_body


def nothing_saved() -> None:
    assert not Account.objects.exists()
    assert not Contact.objects.exists()
    assert not Ticket.objects.exists()


# --- each record type -------------------------------------------------------------------------


def test_web_form_example_creates_account_contact_and_ticket(support):
    body = (SCHEMA_DIR / "examples" / "web-form-new-customer.xml").read_text()
    message = send(support, body, subject="New customer form")

    account = Account.objects.get()
    assert account.name == "Acme Printing Ltd" and account.phone == "+44 20 7946 0000"
    assert list(account.domains.values_list("domain", flat=True)) == ["acme-printing.example"]
    contact = Contact.objects.get()
    assert (contact.first_name, contact.last_name, contact.account) == ("Ana", "Lima", account)
    assert list(contact.emails.values_list("email", flat=True)) == [
        "ana.lima@acme-printing.example"
    ]
    ticket = Ticket.objects.get()  # the document's ticket only: the mail itself opened none
    assert ticket.subject == "Printer jams on every second page"
    assert ticket.priority == "high" and ticket.contact == contact and ticket.account == account

    reply = reply_to(message)
    assert reply.to == [FORMS] and reply.from_address == "support@relay.test"
    assert reply.subject == "[Email API applied] Re: New customer form"
    assert "request form-20261124-0042 (in the message body) was applied" in reply.text_body
    assert f"created ticket #{ticket.pk}: {ticket.reference} " in reply.text_body
    assert f"createContact (line 10): created contact #{contact.pk}: Ana Lima" in reply.text_body
    assert (reply.record_type, reply.record_id) == ("ticket", ticket.pk)
    assert reply.in_reply_to == message.message_id
    assert EmailApiRequest.objects.get(message=message).outcome == "applied"
    message.refresh_from_db()
    assert message.filed_at is not None
    assert not message.filings.exists() and not TriageEntry.objects.filter(message=message)


def test_ticket_for_a_known_contact_found_by_address(support):
    acme = f.AccountFactory(name="Customer Ltd")
    it = f.ContactFactory(first_name="IT", emails=["it@customer.example"], account=acme)
    body = (SCHEMA_DIR / "examples" / "monitoring-alert.xml").read_text()
    send(support, body)
    ticket = Ticket.objects.get()
    assert ticket.priority == "urgent" and ticket.contact == it and ticket.account == acme
    assert Contact.objects.count() == 1


def test_updates_change_only_the_fields_given(support):
    account = f.AccountFactory(name="Acme", phone="1", domains=["acme-printing.example"])
    contact = f.ContactFactory(
        first_name="Ana", title="Clerk", emails=["ana.lima@acme-printing.example"]
    )
    ticket = f.TicketFactory(subject="Printer", description="It jams.", status="open")
    body = (
        (SCHEMA_DIR / "examples" / "update-records.xml")
        .read_text()
        .replace('id="12"', f'id="{account.pk}"')
        .replace("TKT-1042", ticket.reference)
    )
    message = send(support, body)

    account.refresh_from_db()
    contact.refresh_from_db()
    ticket.refresh_from_db()
    assert account.name == "Acme" and account.phone == "+44 20 7946 0001"
    assert set(account.domains.values_list("domain", flat=True)) == {
        "acme-printing.example",
        "acme.example",
    }
    assert contact.first_name == "Ana" and contact.title == "Operations director"
    assert set(contact.emails.values_list("email", flat=True)) == {
        "ana.lima@acme-printing.example",
        "ana@acme.example",
    }
    assert ticket.status == "resolved" and ticket.subject == "Printer"
    assert ticket.description.startswith("It jams.\n\n--- ")
    assert ticket.description.endswith(f"{FORMS} ---\nThe customer confirmed the fix works.")
    text = reply_to(message).text_body
    assert f"updated account #{account.pk}" in text and f"updated contact #{contact.pk}" in text
    assert f"updated ticket #{ticket.pk}: {ticket.reference}" in text


def test_the_document_may_come_as_an_xml_attachment(support):
    from connector.ingest import storage

    body = doc("<createAccount><name>Attached Ltd</name></createAccount>")
    digest, path = storage.save_blob(body.encode())
    message = mail(
        support,
        sender=FORMS,
        subject="see attachment",
        text_body="Hello, attached.",
        headers=VERIFIED,
    )
    blob = f.AttachmentBlobFactory(sha256=digest, size=len(body), file=path)
    Attachment.objects.create(
        message=message, blob=blob, filename="request.xml", content_type="application/xml"
    )
    intake.file_new_mail(message_ids=[message.pk])
    assert Account.objects.get().name == "Attached Ltd"
    assert 'the attachment "request.xml"' in reply_to(message).text_body
    assert not Ticket.objects.exists()


def test_published_examples_follow_the_schema_and_the_api_accepts_them():
    schema = xmlschema.XMLSchema(str(SCHEMA_DIR / "relay-email-api.xsd"))
    examples = sorted((SCHEMA_DIR / "examples").glob("*.xml"))
    assert len(examples) >= 3
    for path in examples:
        schema.validate(str(path))
        root, lines = email_api.parse(path.read_bytes())
        checker = email_api._Checker(lines)
        _, operations = checker.operations(root)
        assert checker.errors == [] and operations, path.name


# --- errors -------------------------------------------------------------------------------------


def test_every_error_is_reported_with_its_path_and_line_and_nothing_is_saved(support):
    body = doc(
        "<createAccount><name>Fine Ltd</name></createAccount>",
        "<createContact>",
        "  <email>ana(at)example.com</email>",
        "</createContact>",
        "<createTicket>",
        "  <priority>asap</priority>",
        "  <colour>red</colour>",
        "</createTicket>",
    )
    message = send(support, body)
    nothing_saved()
    text = assert_rejected(
        message,
        "4 errors:",
        'line 5, /request/createContact[1]/email[1]: "ana(at)example.com" is not a valid email',
        'line 8, /request/createTicket[1]/priority: "asap" is not one of low, normal, high, urgent',
        "line 9, /request/createTicket[1]/colour: unknown element in <createTicket>",
    )
    assert "line 7, /request/createTicket[1]: <subject> is required" in text
    assert text.count("\n- ") == 4


def test_an_error_while_applying_rolls_back_the_records_made_before_it(support):
    body = doc(
        '<createAccount key="a"><name>Acme</name><domain>acme.example</domain></createAccount>',
        '<createContact><firstName>Ana</firstName><account key="a"/></createContact>',
        '<updateTicket reference="TKT-999999"><status>closed</status></updateTicket>',
    )
    message = send(support, body)
    nothing_saved()
    assert not AccountDomain.objects.exists() and not ContactEmail.objects.exists()
    assert_rejected(message, "line 5, /request/updateTicket[1]: there is no ticket TKT-999999")


ERRORS = [
    # (operations, expected path in the reply, expected text)
    (
        ['<createAccount colour="red"><name>A</name></createAccount>'],
        "/request/createAccount[1]/@colour",
        "unknown attribute; allowed: key",
    ),
    (["<deleteAccount/>"], "/request/deleteAccount[1]", "unknown operation <deleteAccount>"),
    (["<createAccount/>"], "/request/createAccount[1]", "<name> is required"),
    (["<createAccount><name>  </name></createAccount>"], "createAccount[1]/name", "is empty"),
    (
        [f"<createAccount><name>{'x' * 201}</name></createAccount>"],
        "/request/createAccount[1]/name",
        "is 201 characters long; at most 200",
    ),
    (
        ["<createAccount><name>A</name><name>B</name></createAccount>"],
        "/request/createAccount[1]/name",
        "may appear only once",
    ),
    (
        [
            '<createAccount key="a"><name>A</name></createAccount>',
            '<createAccount key="a"><name>B</name></createAccount>',
        ],
        "/request/createAccount[2]/@key",
        'key "a" is already used by /request/createAccount[1]',
    ),
    (
        ['<createContact><firstName>A</firstName><account key="nope"/></createContact>'],
        "/request/createContact[1]/account/@key",
        'no account with key "nope" is created earlier in this request',
    ),
    (
        ['<createContact><firstName>A</firstName><account id="1" key="b"/></createContact>'],
        "/request/createContact[1]/account",
        "name the account with exactly one of: @id, @key",
    ),
    (
        ['<updateAccount id="-3"><phone>1</phone></updateAccount>'],
        "/request/updateAccount[1]/@id",
        '"-3" is not a record id',
    ),
    (
        ['<updateAccount id="999999"><phone>1</phone></updateAccount>'],
        "/request/updateAccount[1]",
        "there is no account with id 999999",
    ),
    (
        ['<updateAccount id="5"/>'],
        "/request/updateAccount[1]",
        "nothing to update: give at least one field",
    ),
    (
        ["<updateContact><title>X</title></updateContact>"],
        "/request/updateContact[1]",
        "name the record to update with exactly one of: @email, @id",
    ),
    (
        ['<updateContact email="nobody@x.example"><title>X</title></updateContact>'],
        "/request/updateContact[1]",
        "there is no contact with the address nobody@x.example",
    ),
    (
        ['<updateTicket reference="ABC"><status>open</status></updateTicket>'],
        "/request/updateTicket[1]/@reference",
        'a ticket reference is required, as "TKT-1042"',
    ),
    (
        ["<createTicket><subject>S</subject><status>done</status></createTicket>"],
        "/request/createTicket[1]/status",
        '"done" is not one of open, pending, resolved, closed',
    ),
    (
        ["<createTicket><subject>S</subject><note>n</note></createTicket>"],
        "/request/createTicket[1]/note",
        "<note> adds to an existing ticket",
    ),
    (
        ["<createTicket><subject><b>S</b></subject></createTicket>"],
        "/request/createTicket[1]/subject",
        "holds elements; only text is allowed here",
    ),
    (
        ["<createAccount><name>A</name><website>not a url</website></createAccount>"],
        "/request/createAccount[1]/website",
        "Enter a valid URL.",
    ),
    (
        [],
        "/request",
        "the request holds no operation",
    ),
    (
        ["<createAccount><name>A</name></createAccount>"] * 101,
        "/request",
        "101 operations; at most 100 per request",
    ),
]


@pytest.mark.parametrize(("operations", "path", "text"), ERRORS)
def test_each_error(support, operations, path, text):
    message = send(support, doc(*operations))
    nothing_saved()
    reply = assert_rejected(message)
    assert f"{path}: {text}" in reply or (path in reply and text in reply), reply


def test_a_contact_address_is_never_given_to_a_second_contact(support):
    existing = f.ContactFactory(emails=["ana@acme.example"])
    message = send(support, doc("<createContact><email>ANA@acme.example</email></createContact>"))
    assert Contact.objects.count() == 1
    assert_rejected(
        message,
        f"ana@acme.example already belongs to contact #{existing.pk}: "
        f'use <updateContact id="{existing.pk}">',
    )


def test_an_address_shared_by_two_contacts_is_ambiguous(support):
    a = f.ContactFactory(emails=["shared@acme.example"])
    b = f.ContactFactory(emails=["shared@acme.example"])
    message = send(
        support,
        doc(
            "<createTicket><subject>S</subject>"
            '<contact email="shared@acme.example"/></createTicket>'
        ),
    )
    assert not Ticket.objects.exists()
    assert_rejected(message, f"belongs to several contacts (#{a.pk}, #{b.pk}): name one by id")


@pytest.mark.parametrize(
    ("root", "found"),
    [
        ('<request xmlns="urn:example:other">', 'found <request> in namespace "urn:example:other"'),
        ("<request>", "found <request> in no namespace"),
        (f"<createTicket {NS}>", "found <createTicket>"),
    ],
)
def test_wrong_namespace_or_root(support, root, found):
    tag = root[1:].split()[0].rstrip(">")
    message = send(support, f"{root}<createAccount><name>A</name></createAccount></{tag}>")
    nothing_saved()
    assert_rejected(
        message, 'the root element must be <request xmlns="urn:relay-crm:email-api:1">', found
    )


def test_not_well_formed_xml_names_line_and_column(support):
    message = send(support, doc("<createAccount><name>A</nam></createAccount>"))
    nothing_saved()
    assert_rejected(message, "line 3, not well-formed XML (mismatched tag, column")


# --- hostile XML --------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<request xmlns="urn:relay-crm:email-api:1">
  <createAccount><name>&lol9;</name></createAccount>
</request>
"""


def test_billion_laughs_is_refused_before_any_expansion(support):
    started = time.monotonic()
    message = send(support, BILLION_LAUGHS)
    assert time.monotonic() - started < 5
    nothing_saved()
    text = assert_rejected(message, "line 2, a DTD (<!DOCTYPE lolz>) is not accepted")
    assert "lollol" not in text and len(text) < 2000


def test_external_entity_is_never_read(support, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY")
    body = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>\n'
        f"<request {NS}><createAccount><name>&x;</name></createAccount></request>"
    )
    message = send(support, body)
    nothing_saved()
    text = assert_rejected(message, "a DTD (<!DOCTYPE r>) is not accepted")
    assert "TOP-SECRET-CANARY" not in text


def test_external_dtd_is_never_fetched(support):
    """A listener stands where the DTD points: not one connection may reach it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    hits = []

    def accept():
        try:
            conn, _ = listener.accept()
            hits.append(1)
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    body = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE request SYSTEM "http://127.0.0.1:{port}/evil.dtd">\n'
        f"<request {NS}><createAccount><name>A</name></createAccount></request>"
    )
    message = send(support, body)
    thread.join()
    listener.close()
    assert hits == []
    nothing_saved()
    assert_rejected(message, "is not accepted")


def test_a_document_over_the_size_cap_is_refused_unparsed(support, settings):
    settings.RELAY_EMAIL_API_MAX_BYTES = 50_000
    operations = ["<createAccount><name>Filler Ltd</name></createAccount>"] * 1200
    body = doc(*operations)
    assert len(body) > 50_000
    message = send(support, body)
    nothing_saved()
    assert_rejected(
        message, f"the document is {len(body.rstrip())} bytes; the limit is 50000 bytes"
    )


def test_an_oversized_attachment_is_refused_by_its_size(support, settings):
    from connector.ingest import storage

    settings.RELAY_EMAIL_API_MAX_BYTES = 1000
    body = doc(*["<createAccount><name>Filler Ltd</name></createAccount>"] * 40)
    digest, path = storage.save_blob(body.encode())
    message = mail(support, sender=FORMS, subject="big", text_body="attached", headers=VERIFIED)
    blob = f.AttachmentBlobFactory(sha256=digest, size=len(body), file=path)
    Attachment.objects.create(message=message, blob=blob, filename="big.xml")
    intake.file_new_mail(message_ids=[message.pk])
    nothing_saved()
    assert_rejected(message, f"the document is {len(body)} bytes; the limit is 1000 bytes")


# --- who may use it -----------------------------------------------------------------------------


def test_a_sender_not_on_the_list_gets_ordinary_support_handling(support):
    body = doc("<createAccount><name>Intruder Ltd</name></createAccount>")
    message = send(support, body, sender="mallory@evil.example", subject="Hello")
    assert not Account.objects.filter(name="Intruder Ltd").exists()
    assert not EmailApiRequest.objects.exists()
    assert not OutboxEntry.objects.filter(purpose="api_reply").exists()
    # It is ordinary mail to a support mailbox: it opened a ticket like any other request.
    assert Ticket.objects.get().subject == "Hello"
    assert message.filings.filter(record_type="ticket").exists()


def test_an_allowed_sender_on_a_mailbox_that_is_not_for_support(support):
    other = f.SharedMailboxFactory(email_address="sales@relay.test", create_tickets=False)
    EmailApiSender.objects.create(mailbox=other, address=FORMS)
    send(other, doc("<createAccount><name>Sales Ltd</name></createAccount>"))
    assert not Account.objects.exists() and not EmailApiRequest.objects.exists()


def test_the_list_is_per_mailbox(support):
    other = f.SharedMailboxFactory(email_address="help@relay.test", create_tickets=True)
    send(other, doc("<createAccount><name>Other Ltd</name></createAccount>"))
    assert not Account.objects.filter(name="Other Ltd").exists()


def test_a_forged_allowed_sender_is_refused_without_a_reply(support):
    message = send(
        support,
        doc("<createAccount><name>Forged Ltd</name></createAccount>"),
        headers={"authentication-results": "mx.relay.test; spf=fail; dkim=none; dmarc=fail"},
    )
    nothing_saved()
    request = EmailApiRequest.objects.get(message=message)
    assert request.outcome == "rejected" and "sender not verified" in request.errors[0]
    assert not OutboxEntry.objects.exists()


def test_plain_mail_from_an_allowed_sender_is_filed_as_usual(support):
    message = send(support, "Hi, just a question about my invoice.", subject="Invoice")
    assert not EmailApiRequest.objects.exists()
    assert Ticket.objects.get().subject == "Invoice"
    assert message.filings.filter(record_type="ticket").exists()


# --- once only ----------------------------------------------------------------------------------


def test_a_document_filed_twice_is_applied_once(support):
    message = send(support, doc("<createTicket><subject>Once</subject></createTicket>"))
    intake.file_new_mail(message_ids=[message.pk])  # a redelivered task
    intake.file_pending(older_than=__import__("datetime").timedelta(0))  # the sweep
    assert Ticket.objects.count() == 1
    assert OutboxEntry.objects.filter(purpose="api_reply").count() == 1
    assert EmailApiRequest.objects.count() == 1


def test_a_first_sync_history_document_is_not_applied(support):
    message = mail(
        support,
        sender=FORMS,
        subject="old",
        text_body=doc("<createAccount><name>Old Ltd</name></createAccount>"),
        headers=VERIFIED,
    )
    intake.file_new_mail(message_ids=[message.pk], initial=True)
    assert not Account.objects.exists() and not EmailApiRequest.objects.exists()


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_end_to_end_a_web_form_mail_becomes_records_and_the_sender_gets_the_answer(
    imap_user, smtp_server, tmp_path, settings
):
    """Delivered to Dovecot, synced, filed by the task the signal enqueues (run in-process),
    the reply sent through the real SMTP path to the sender."""
    from email import message_from_bytes, policy

    from crm.celery import app
    from inbox.models import Mailbox
    from tests.connector.synckit import make_mailbox, make_raw

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RELAY_AUTHSERV_IDS = ["mx.relay.test"]
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    try:
        mailbox = make_mailbox(
            imap_user,
            smtp_host=smtp_server.host,
            smtp_port=smtp_server.port,
            smtp_security="none",
        )
        Mailbox.objects.filter(pk=mailbox.pk).update(kind="shared", owner=None, create_tickets=True)
        smtp_server.user, smtp_server.password = imap_user.login, imap_user.password
        EmailApiSender.objects.create(mailbox=mailbox, address=FORMS)
        from connector.sync import mailbox as sync

        assert sync.sync_mailbox(mailbox.pk).completed  # the first sync: nothing there yet
        body = (SCHEMA_DIR / "examples" / "web-form-new-customer.xml").read_text()
        raw = make_raw("Form 42", sender=f"Web form <{FORMS}>", body=body)
        # As our receiving server hands it on: its verdict on top (docs/reliability.md C-17).
        verdict = b"Authentication-Results: mx.relay.test; dkim=pass header.d=web.example\r\n"
        imap_user.server.deliver(imap_user, verdict + raw)
        assert sync.sync_mailbox(mailbox.pk).completed
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = False, False

    ticket = Ticket.objects.get()
    assert ticket.subject == "Printer jams on every second page"
    assert ticket.contact.account.name == "Acme Printing Ltd"
    assert [m.rcpt_tos for m in smtp_server.received] == [(FORMS,)]
    reply = message_from_bytes(smtp_server.received[0].raw, policy=policy.default)
    assert reply["Subject"] == "[Email API applied] Re: Form 42"
    assert f"created ticket #{ticket.pk}: {ticket.reference}" in reply.get_content()


def test_a_footer_after_the_document_is_ignored(support):
    body = doc("<createAccount><name>Footer Ltd</name></createAccount>")
    send(support, body + "\n-- \nSent by the Acme web form service\n<https://forms.example>\n")
    assert Account.objects.get().name == "Footer Ltd"
