"""Sending against the real servers (docs/product.md §5): the outbox sends through aiosmtpd, APPENDs
to the real Dovecot's Sent folder, and the Sent-folder sync recognises the copy instead of importing
it again. Nothing here is mocked: the SMTP server is aiosmtpd on loopback (its fault modes
stand for a provider refusing or dropping), the IMAP server is Dovecot, the database is the
test PostgreSQL. A "killed worker" is a BaseException raised at a named step of
connector/outbound/ (connector/outbound/states.py; the same stand-in as the sync's
kill-at-every-step test): everything the dead worker committed stays, everything it had not is
gone."""

from __future__ import annotations

import datetime as dt
import email
import hashlib
from email import policy

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from connector.filing import tokens
from connector.ingest import storage
from connector.outbound import outbox as sending
from connector.outbound import states
from connector.sync import mailbox as sync
from crm.models import Ticket
from inbox.models import Filing, Folder, Location, Mailbox, Message, OutboxEntry
from inbox.services.composing import message_forward, message_reply, outbox_compose
from inbox.services.mailboxes import mailbox_send_test_email, mailbox_test_smtp
from inbox.services.outbox import outbox_mark_sent, outbox_send_again
from tests import factories as f
from tests.connector.filingkit import eager_celery, records  # noqa: F401
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]


class WorkerKilled(BaseException):
    """Stands for the worker process dying at a step (no handler catches a BaseException)."""


@pytest.fixture
def kill_at(monkeypatch):
    def arm(step: str):
        def hook(name, entry):
            if name == step:
                raise WorkerKilled(step)

        monkeypatch.setattr(states, "STEP_HOOK", hook)

    yield arm
    monkeypatch.setattr(states, "STEP_HOOK", None)


def run(mailbox) -> None:
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()


def support_mailbox(imap_user, smtp_server, **fields) -> tuple[Mailbox, object]:
    """A shared support mailbox on the test Dovecot, sending through the aiosmtpd server
    (which is told to accept this mailbox's login), and a staff user granted it."""
    staff = f.UserFactory()
    mailbox = make_mailbox(
        imap_user,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        display_name="Acme Support",
        **fields,
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(
        kind=Mailbox.Kind.SHARED, owner=None, create_tickets=True, create_contacts=True
    )
    mailbox.refresh_from_db()
    mailbox.granted_users.add(staff)
    smtp_server.user, smtp_server.password = imap_user.login, imap_user.password
    return mailbox, staff


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def a_request(imap_user, mailbox, subject="Printer on fire") -> tuple[Message, Ticket]:
    """Ana writes to support; the sync stores it and filing opens a ticket."""
    imap_user.server.deliver(
        imap_user,
        make_raw(subject, sender="Ana <ana@acme.example>", to=mailbox.email_address),
    )
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox, subject=subject)
    return message, Ticket.objects.get(subject=subject)


def make_due(entry: OutboxEntry) -> None:
    """Time has passed: the next attempt is due, and the claim of a worker that died finishing
    the entry (finishing_until) has run out."""
    now = timezone.now()
    OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=now, finishing_until=now)


def sent_folder_shas(imap_user) -> list[str]:
    return sorted(
        m.sha256 for m in imap_user.server.server_truth(imap_user.login) if m.folder == "Sent"
    )


@pytest.fixture
def acme(db):
    account = f.AccountFactory(name="Acme", domains=["acme.example"])
    return f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=account)


def test_a_reply_threads_out_lands_in_sent_once_and_the_answer_files_itself(
    imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)  # the first sync: from now on new mail opens tickets
    request, ticket = a_request(imap_user, mailbox)

    entry = message_reply(user=staff, message=request, text_body="We are on it.")

    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    # On the wire: one delivery, to Ana, with our headers.
    assert len(smtp_server.received) == 1
    received = smtp_server.received[0]
    assert received.rcpt_tos == ("ana@acme.example",)
    assert received.auth_user == imap_user.login
    sent_raw = storage.read_raw(entry.raw_file)
    assert received.raw == sent_raw
    wire = parsed(received.raw)
    assert wire["Message-ID"] == f"<{entry.message_id}>"
    check = tokens.check_message_id(entry.message_id)
    assert (check.status, check.record_type, check.record_id) == ("valid", "ticket", ticket.pk)
    assert wire["In-Reply-To"] == f"<{request.message_id}>"
    assert f"<{request.message_id}>" in wire["References"].split()
    assert wire["Subject"] == f"[{ticket.reference}] Re: Printer on fire"
    assert wire["From"] == f"Acme Support <{mailbox.email_address}>"
    assert wire["To"] == "Ana <ana@acme.example>"
    assert "Bcc" not in wire
    body = wire.get_body(("plain",)).get_content()
    assert body.startswith("We are on it.") and "> Hello, this is message" in body
    assert wire.get_body(("html",)) is not None

    # In Sent exactly once, byte for byte what was sent (so the sync recognises it).
    assert sent_folder_shas(imap_user) == [hashlib.sha256(sent_raw).hexdigest()]
    assert entry.appended_to_sent
    location = Location.objects.get(message=entry.sent_message, folder__name="Sent")
    assert location.uid == imap_user.server.uids(imap_user, "Sent")[0]

    # Filed on its ticket, as sent from it.
    filing = Filing.objects.get(message=entry.sent_message, ticket=ticket)
    assert filing.rule == Filing.Rule.SENT_FROM_RECORD

    # The Sent-folder sync imports nothing new: the outbox row and the message are one.
    before = Message.objects.filter(mailbox=mailbox).count()
    run(mailbox)
    assert Message.objects.filter(mailbox=mailbox).count() == before
    assert Message.objects.filter(mailbox=mailbox, message_id=entry.message_id).count() == 1
    assert Message.objects.get(mailbox=mailbox, message_id=entry.message_id) == entry.sent_message
    assert_in_step(mailbox, imap_user)

    # Ana answers our reply (her client keeps the thread headers, drops the reference):
    # it files itself on the same ticket and opens nothing new.
    imap_user.server.deliver(
        imap_user,
        make_raw(
            "Re: Printer on fire",
            sender="Ana <ana@acme.example>",
            to=mailbox.email_address,
            in_reply_to=f"<{entry.message_id}>",
        ),
    )
    run(mailbox)
    answer = Message.objects.get(mailbox=mailbox, subject="Re: Printer on fire")
    assert ("ticket", ticket.pk) in records(answer)
    assert Ticket.objects.count() == 1


def test_temporary_refusal_is_retried_with_back_off_and_sent_once(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.mode = "tempfail"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.RETRYING
    assert "451" in entry.last_error
    assert entry.next_attempt_at > timezone.now() + dt.timedelta(seconds=30)
    # Not due yet: the tick leaves it alone.
    assert sending.dispatch_due(enqueue=lambda pk: None) == []

    sending.process_entry(entry.pk)  # a second temporary refusal: a longer wait
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.RETRYING and entry.attempts == 2
    assert entry.next_attempt_at > timezone.now() + dt.timedelta(seconds=90)

    smtp_server.mode = "accept"
    make_due(entry)
    dispatched = sending.dispatch_due(enqueue=sending.process_entry)
    assert dispatched == [entry.pk]
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT and entry.attempts == 3
    assert len(smtp_server.received) == 1
    assert smtp_server.attempts == 3
    assert len(sent_folder_shas(imap_user)) == 1
    # Nothing left to do, however often the tick runs.
    assert sending.dispatch_due(enqueue=sending.process_entry) == []
    assert len(smtp_server.received) == 1


def test_permanent_refusal_fails_with_the_servers_answer(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.mode = "permfail"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.FAILED
    assert "554" in entry.last_error and "Message refused" in entry.last_error
    assert entry.next_attempt_at is None
    smtp_server.mode = "accept"
    assert sending.dispatch_due(enqueue=sending.process_entry) == []
    assert smtp_server.received == [] and sent_folder_shas(imap_user) == []
    # A person may send it again; then it goes.
    outbox_send_again(user=staff, entry=entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    assert len(smtp_server.received) == 1


def test_connection_cut_at_data_is_a_plain_retry(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.mode = "drop_at_data"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )
    entry.refresh_from_db()
    # Nothing of the message had been sent: retrying cannot make a second copy.
    assert entry.state == OutboxEntry.State.RETRYING
    smtp_server.mode = "accept"
    make_due(entry)
    sending.process_entry(entry.pk)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    assert len(smtp_server.received) == 1


def test_connection_lost_after_the_data_is_verify_never_a_blind_resend(
    imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.mode = "drop"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY, entry.last_error
    smtp_server.mode = "accept"
    # The tick reconciles it: the Sent folder does not hold our Message-ID (this server does
    # not file SMTP mail there itself), so it stays "verify" for a person, never re-sent.
    for _ in range(3):
        make_due(entry)
        sending.dispatch_due(enqueue=sending.process_entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY
    assert "Not found in the Sent folder" in entry.last_error
    assert entry.next_attempt_at is None
    assert smtp_server.attempts == 1 and smtp_server.received == []
    # The person decides: send again. At most one delivery in all.
    outbox_send_again(user=staff, entry=entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    assert len(smtp_server.received) == 1
    assert len(sent_folder_shas(imap_user)) == 1


def test_verify_is_reconciled_from_a_sent_folder_that_holds_our_message_id(
    imap_user, smtp_server, acme
):
    """Gmail files SMTP mail in Sent itself: finding our Message-ID there settles "verify"
    as sent, linked to that copy, with no second delivery and no APPEND of ours."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)

    def provider_copy(name, entry):
        # What Gmail does when it accepts: a copy of the message in Sent.
        if name == "smtp_accepted":
            raw = storage.read_raw(entry.raw_file)
            imap_user.server.deliver(imap_user, raw, folder="Sent", flags=["\\Seen"])
            raise WorkerKilled(name)

    states.STEP_HOOK = provider_copy
    try:
        with pytest.raises(WorkerKilled):
            outbox_compose(
                user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
            )
    finally:
        states.STEP_HOOK = None
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SENDING  # what the dead worker left
    assert sending.dispatch_due(enqueue=sending.process_entry) == []  # its claim still runs
    OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now())
    assert sending.dispatch_due(enqueue=sending.process_entry) == [entry.pk]
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert entry.sent_message is not None and entry.appended_to_sent
    assert len(smtp_server.received) == 1
    assert len(sent_folder_shas(imap_user)) == 1


def test_worker_killed_between_sending_and_appending(imap_user, smtp_server, acme, kill_at):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    kill_at("sent_committed")
    with pytest.raises(WorkerKilled):
        outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
        )
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SENT and not entry.appended_to_sent
    assert entry.sent_message is None and sent_folder_shas(imap_user) == []
    kill_at("never")
    # The tick finishes the job (store, file, APPEND) and sends nothing again.
    make_due(entry)
    assert sending.dispatch_due(enqueue=sending.process_entry) == [entry.pk]
    entry.refresh_from_db()
    assert entry.appended_to_sent and entry.sent_message is not None
    assert len(smtp_server.received) == 1
    assert sent_folder_shas(imap_user) == [entry.sent_message.sha256]
    run(mailbox)
    assert_in_step(mailbox, imap_user)
    assert Message.objects.filter(mailbox=mailbox, message_id=entry.message_id).count() == 1


def test_worker_killed_after_append_before_recording_it(imap_user, smtp_server, acme, kill_at):
    """APPEND went through, the worker died before writing it down: the retry finds our
    Message-ID in Sent and records that copy instead of appending a second
    (docs/reliability.md S-23)."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    kill_at("appended")
    with pytest.raises(WorkerKilled):
        outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
        )
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SENT and not entry.appended_to_sent
    assert len(sent_folder_shas(imap_user)) == 1
    kill_at("never")
    make_due(entry)
    sending.dispatch_due(enqueue=sending.process_entry)
    entry.refresh_from_db()
    assert entry.appended_to_sent
    assert len(sent_folder_shas(imap_user)) == 1
    assert Location.objects.filter(message=entry.sent_message, folder__name="Sent").count() == 1
    run(mailbox)
    assert_in_step(mailbox, imap_user)
    assert len(smtp_server.received) == 1


def test_a_second_task_finding_the_entry_sent_appends_no_second_copy(
    imap_user, smtp_server, acme, monkeypatch
):
    """The composer's request and the tick's both enqueue a new entry; the second task can
    find it "sent" while the first worker is still finishing it, between looking in Sent and
    its APPEND. Only one of them finishes: one copy in Sent, not two (docs/reliability.md S-23;
    found by bench/soak.py)."""
    from connector.transport.imap import ImapSession

    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    original = ImapSession.append
    others = []

    def append(session, *args, **kwargs):
        if not others:
            # The other worker's task, while this one has searched Sent and not yet appended.
            others.append(None)
            entry = OutboxEntry.objects.get(mailbox=mailbox)
            others[0] = sending.process_entry(entry.pk)
        return original(session, *args, **kwargs)

    monkeypatch.setattr(ImapSession, "append", append)
    outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert others and others[0].state == OutboxEntry.State.SENT
    assert entry.state == OutboxEntry.State.SENT and entry.appended_to_sent
    assert len(smtp_server.received) == 1
    assert sent_folder_shas(imap_user) == [entry.sent_message.sha256]
    run(mailbox)
    assert_in_step(mailbox, imap_user)


def test_worker_killed_right_after_the_servers_250(imap_user, smtp_server, acme, kill_at):
    """docs/reliability.md S-24: the server took the mail, the worker died before committing "sent".
    The row is "sending"; when its claim runs out it becomes "verify", is searched for, and is never
    sent a second time by itself."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    kill_at("smtp_accepted")
    with pytest.raises(WorkerKilled):
        outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
        )
    kill_at("never")
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SENDING
    # A redelivered task (acks_late) while the claim runs: nothing happens.
    sending.process_entry(entry.pk)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENDING
    OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now())
    for _ in range(3):
        sending.dispatch_due(enqueue=sending.process_entry)
        make_due(entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY
    assert len(smtp_server.received) == 1 and smtp_server.attempts == 1


def test_partial_recipient_refusal_is_recorded_per_recipient(
    imap_user, smtp_server, acme, monkeypatch
):
    from tests.servers import smtp as smtp_fixture

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # aiosmtpd collects a connection's hooks when it opens: set before sending.
        if address == "nobody@acme.example":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    monkeypatch.setattr(smtp_fixture._Handler, "handle_RCPT", handle_RCPT, raising=False)
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    entry = outbox_compose(
        user=staff,
        mailbox=mailbox,
        to="ana@acme.example, nobody@acme.example",
        cc="Bo <bo@acme.example>",
        subject="Hello",
        text_body="Hi",
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    assert entry.recipient_status["ana@acme.example"] == "accepted"
    assert entry.recipient_status["bo@acme.example"] == "accepted"
    assert entry.recipient_status["nobody@acme.example"].startswith("refused: 550")
    assert "2 of 3 recipients accepted" in entry.last_error
    assert len(smtp_server.received) == 1
    assert set(smtp_server.received[0].rcpt_tos) == {"ana@acme.example", "bo@acme.example"}
    assert len(sent_folder_shas(imap_user)) == 1


def test_header_injection_is_refused_before_anything_is_queued(imap_user, smtp_server, acme):
    from django.core.exceptions import ValidationError

    mailbox, staff = support_mailbox(imap_user, smtp_server)
    attempts = [
        dict(to="ana@acme.example", subject="Hi\r\nBcc: victim@evil.example"),
        dict(to="ana@acme.example", subject="Hi\nBcc: victim@evil.example"),
        dict(to="ana@acme.example", subject="Hi\u2028Bcc: victim@evil.example"),
        dict(to="Ana\r\nBcc: victim@evil.example <ana@acme.example>", subject="Hi"),
        dict(to='"Ana\r\nBcc: victim@evil.example" <ana@acme.example>', subject="Hi"),
        dict(to=["ana@acme.example\r\nBcc: victim@evil.example"], subject="Hi"),
        dict(to="ana@acme.example", cc="x@acme.example\nBcc: victim@evil.example", subject="Hi"),
    ]
    for fields in attempts:
        with pytest.raises(ValidationError):
            outbox_compose(user=staff, mailbox=mailbox, text_body="x", **fields)
    Mailbox.objects.filter(pk=mailbox.pk).update(display_name="Support\r\nBcc: v@evil.example")
    mailbox.refresh_from_db()
    with pytest.raises(ValidationError):
        outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
        )
    assert not OutboxEntry.objects.exists()
    assert smtp_server.attempts == 0 and smtp_server.received == []


def test_a_row_with_a_line_break_written_by_other_code_is_failed_not_sent(
    imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    entry = OutboxEntry.objects.create(
        mailbox=mailbox,
        message_id="relay-0123456789abcdef@relay.test",
        from_address=mailbox.email_address,
        to=["ana@acme.example"],
        subject="Hi\r\nBcc: victim@evil.example",
        text_body="x",
    )
    sending.process_entry(entry.pk)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.FAILED
    assert "line breaks" in entry.last_error
    assert smtp_server.attempts == 0 and smtp_server.received == []


def test_sending_as_a_mailbox_without_the_grant_is_refused(imap_user, smtp_server, acme, outsider):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    with pytest.raises(PermissionDenied):
        outbox_compose(
            user=outsider, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
        )
    imap_user.server.deliver(imap_user, make_raw("Question", sender="ana@acme.example"))
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox, subject="Question")
    with pytest.raises(PermissionDenied):
        message_reply(user=outsider, message=message, text_body="x")
    with pytest.raises(PermissionDenied):
        message_forward(user=outsider, message=message, to="x@evil.example")
    assert not OutboxEntry.objects.filter(created_by=outsider).exists()
    assert smtp_server.received == []


def test_forward_carries_the_originals_attachments(imap_user, smtp_server, acme):
    from email.message import EmailMessage

    mailbox, staff = support_mailbox(imap_user, smtp_server)
    original = EmailMessage()
    original["From"] = "Ana <ana@acme.example>"
    original["To"] = mailbox.email_address
    original["Subject"] = "Invoice"
    original["Message-ID"] = "<invoice@acme.example>"
    original.set_content("Please find the invoice attached.")
    pdf = b"%PDF-1.4 fake invoice " + bytes(range(256))
    original.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    imap_user.server.deliver(imap_user, original.as_bytes().replace(b"\n", b"\r\n"))
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox, subject="Invoice")

    message_forward(
        user=staff,
        message=message,
        to="Bo Accountant <bo@books.example>",
        text_body="For you.",
        attachments=[("notes.txt", "text/plain", b"my notes")],
    )
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    wire = parsed(smtp_server.received[0].raw)
    assert wire["Subject"] == "Fwd: Invoice"
    assert "In-Reply-To" not in wire
    files = {part.get_filename(): part.get_content() for part in wire.iter_attachments()}
    assert files["invoice.pdf"] == pdf
    assert files["notes.txt"] == "my notes"
    text = wire.get_body(("plain",)).get_content()
    assert "For you." in text and "Forwarded message" in text and "Subject: Invoice" in text


def test_reply_all_and_signature(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    Mailbox.objects.filter(pk=mailbox.pk).update(signature="Acme Support\nhttps://acme.example")
    imap_user.server.deliver(
        imap_user,
        make_raw(
            "Meeting",
            sender="Ana <ana@acme.example>",
            to=f"{mailbox.email_address}, Bo <bo@acme.example>",
            extra_headers={"Cc": "Cy <cy@acme.example>", "Reply-To": "ana.work@acme.example"},
        ),
    )
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox, subject="Meeting")
    message_reply(user=staff, message=message, text_body="Fine by me.", reply_all=True)
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert entry.to == ["ana.work@acme.example"]
    assert entry.cc == ["Bo <bo@acme.example>", "Cy <cy@acme.example>"]
    wire = parsed(smtp_server.received[0].raw)
    text = wire.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # The signature (RFC 3676 4.3 separator) above the quoted original.
    assert "Fine by me.\n\n-- \nAcme Support\nhttps://acme.example\n\nOn " in text
    assert mailbox.email_address not in smtp_server.received[0].rcpt_tos


def test_smtp_test_and_test_email(imap_user, smtp_server, acme, admin_user):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    assert mailbox_test_smtp(user=admin_user, mailbox=mailbox) is None
    with pytest.raises(PermissionDenied):
        mailbox_test_smtp(user=staff, mailbox=mailbox)
    smtp_server.password = "changed-on-the-server"
    answer = mailbox_test_smtp(user=admin_user, mailbox=mailbox)
    assert answer and "refused the login" in answer
    smtp_server.password = imap_user.password

    entry = mailbox_send_test_email(
        user=admin_user, mailbox=mailbox, to="Me <me@elsewhere.example>"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT and entry.purpose == "test"
    assert smtp_server.received[-1].rcpt_tos == ("me@elsewhere.example",)
    assert parsed(smtp_server.received[-1].raw)["Subject"] == "Relay CRM test email"


def test_ticket_acknowledgement_goes_out_through_the_outbox(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    request, ticket = a_request(imap_user, mailbox, subject="Router broken")
    ack = OutboxEntry.objects.get(purpose="acknowledgement")
    assert ack.state == OutboxEntry.State.QUEUED  # written by filing, no signal: the tick
    sending.dispatch_due(enqueue=sending.process_entry)
    ack.refresh_from_db()
    assert ack.state == OutboxEntry.State.SENT, ack.last_error
    wire = parsed(smtp_server.received[0].raw)
    assert wire["Auto-Submitted"] == "auto-replied"  # RFC 3834: no auto-reply ping-pong
    assert wire["In-Reply-To"] == f"<{request.message_id}>"
    assert f"[{ticket.reference}]" in wire["Subject"]
    assert ("ticket", ticket.pk) in records(ack.sent_message)


def test_sent_folder_created_by_the_sender_is_synced(imap_user, smtp_server, acme):
    """Sending before the first sync: the sender finds Sent by its special use and the
    sync, run afterwards, still treats it as an active folder and imports nothing twice."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Early", text_body="x"
    )
    entry.refresh_from_db()
    assert entry.appended_to_sent
    assert Folder.objects.get(mailbox=mailbox, name="Sent").special_use == "sent"
    run(mailbox)
    assert Folder.objects.get(mailbox=mailbox, name="Sent").is_active
    assert_in_step(mailbox, imap_user)
    assert Message.objects.filter(mailbox=mailbox, message_id=entry.message_id).count() == 1


def test_gmail_files_its_own_copy_in_sent_and_the_entry_becomes_that_copy(
    imap_user, smtp_server, acme
):
    """A provider that files SMTP mail in Sent itself (Gmail, "saves_sent") stores bytes of
    its own (here: one header more). No APPEND is made, and the entry is linked to the
    provider's copy, so the sync shows the mail once. The login is XOAUTH2 on both servers
    with a still-valid token (this Dovecot takes a bearer token equal to the password)."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    mailbox.connection_type = Mailbox.ConnectionType.GOOGLE
    mailbox.set_oauth_tokens(
        access_token=imap_user.password,
        refresh_token="rt-not-needed",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    mailbox.save()
    smtp_server.oauth_token = imap_user.password
    run(mailbox)
    ticket = f.TicketFactory(subject="Quota")

    def gmail_keeps_a_copy(name, entry):
        if name == "smtp_accepted":
            raw = storage.read_raw(entry.raw_file)
            imap_user.server.deliver(
                imap_user, b"X-Gm-Message-State: AOJu0Yx\r\n" + raw, folder="Sent", flags=["\\Seen"]
            )

    states.STEP_HOOK = gmail_keeps_a_copy
    try:
        entry = outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject="Quota", record=ticket
        )
    finally:
        states.STEP_HOOK = None
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert smtp_server.logins == [imap_user.login]  # XOAUTH2
    assert len(sent_folder_shas(imap_user)) == 1  # Gmail's copy only: we appended nothing
    assert entry.sent_message.sha256 == sent_folder_shas(imap_user)[0]
    assert ("ticket", ticket.pk) in records(entry.sent_message)
    run(mailbox)
    assert Message.objects.filter(mailbox=mailbox, message_id=entry.message_id).count() == 1
    assert_in_step(mailbox, imap_user)


def test_a_server_silent_after_the_data_is_verify_not_a_second_copy(
    imap_user, smtp_server, acme, monkeypatch, settings
):
    """docs/reliability.md M-05: the server takes the mail but answers too late; the client has
    timed out. The outcome is unknown: "verify", never re-sent by itself, so the recipient has one
    copy."""
    import asyncio

    from tests.servers import smtp as smtp_fixture

    answer = smtp_fixture._Handler.handle_DATA

    async def slow_handle_DATA(self, server, session, envelope):
        verdict = await answer(self, server, session, envelope)
        await asyncio.sleep(2.5)
        return verdict

    monkeypatch.setattr(smtp_fixture._Handler, "handle_DATA", slow_handle_DATA)
    settings.RELAY_SMTP_TIMEOUT = 1.0
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY, entry.last_error
    for _ in range(3):
        make_due(entry)
        sending.dispatch_due(enqueue=sending.process_entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY
    assert len(smtp_server.received) == 1  # delivered once, never twice
    outbox_mark_sent(user=staff, entry=entry)  # the person confirms it arrived
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    # ...and then it is stored and appended like any sent mail, still one delivery.
    assert entry.appended_to_sent and entry.sent_message is not None
    assert len(sent_folder_shas(imap_user)) == 1 and len(smtp_server.received) == 1


def test_several_copies_with_our_message_id_are_all_kept_and_none_is_linked(
    imap_user, smtp_server, acme, kill_at
):
    """RFC 4549 4.2.2.2: when the search matches more than one message, use none of them.
    The outcome is settled (our Message-ID is in Sent: it went out), both copies stay."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)

    def two_copies(name, entry):
        if name == "smtp_accepted":
            raw = storage.read_raw(entry.raw_file)
            for tag in (b"a", b"b"):
                imap_user.server.deliver(imap_user, b"X-Copy: " + tag + b"\r\n" + raw, "Sent")
            raise WorkerKilled(name)

    states.STEP_HOOK = two_copies
    try:
        with pytest.raises(WorkerKilled):
            outbox_compose(
                user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
            )
    finally:
        states.STEP_HOOK = None
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now())
    sending.dispatch_due(enqueue=sending.process_entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT and entry.sent_message is None
    assert len(smtp_server.received) == 1 and len(sent_folder_shas(imap_user)) == 2
    run(mailbox)
    assert Message.objects.filter(mailbox=mailbox, message_id=entry.message_id).count() == 2
    assert_in_step(mailbox, imap_user)


def test_sending_over_starttls_verifies_the_certificate(imap_user, smtp_server_starttls, acme):
    """The self-signed test certificate is refused unless the mailbox opted in
    (docs/reliability.md C-04): the entry fails with the reason and nothing is sent in clear text;
    with the opt-in it goes."""
    server = smtp_server_starttls
    mailbox, staff = support_mailbox(imap_user, server)
    Mailbox.objects.filter(pk=mailbox.pk).update(smtp_security="starttls")
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.FAILED and "certificate" in entry.last_error
    assert server.received == []

    Mailbox.objects.filter(pk=mailbox.pk).update(allow_insecure_cert=True)
    outbox_send_again(user=staff, entry=entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert len(server.received) == 1


def test_a_refused_smtp_login_waits_for_reconnect_without_a_retry_storm(
    imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.password = "changed-at-the-provider"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
    )
    entry.refresh_from_db()
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    assert entry.state == OutboxEntry.State.RETRYING and "reconnected" in entry.last_error
    for _ in range(5):
        assert sending.dispatch_due(enqueue=sending.process_entry) == []
        sending.process_entry(entry.pk)
    assert smtp_server.logins == [] and smtp_server.attempts == 0
    # Reconnected (the settings service re-tests and reactivates it): the entry goes out.
    smtp_server.password = imap_user.password
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
    assert sending.dispatch_due(enqueue=sending.process_entry) == [entry.pk]
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    assert len(smtp_server.received) == 1
