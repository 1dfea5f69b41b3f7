"""The Outbox as a person uses it (docs/product.md §5.4), against the real servers: aiosmtpd
refuses a recipient, cuts the connection after the data or accepts, Dovecot holds the mailbox,
PostgreSQL the rows. Each test reads what the pages say, then acts through them."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from connector.outbound import outbox as sending
from inbox.models import Mailbox, OutboxEntry
from inbox.services.composing import message_reply, outbox_compose
from inbox.services.outbox import outbox_cancel, outbox_send_again
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.outbound.test_sending import a_request, run, support_mailbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]

UNKNOWN_USER = "550 5.1.1 <ana@acme.example>: Recipient address rejected: User unknown"
PLAIN_UNKNOWN = "The address ana@acme.example does not exist"


@pytest.fixture
def acme(db):
    account = f.AccountFactory(name="Acme", domains=["acme.example"])
    return f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=account)


def page(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_a_refused_reply_is_failed_in_plain_words_on_the_outbox_and_in_the_conversation(
    client, imap_user, smtp_server, acme, caplog
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)  # the first sync: from now on new mail opens tickets
    message, _ticket = a_request(imap_user, mailbox)
    smtp_server.refuse = {"ana@acme.example": UNKNOWN_USER}
    entry = message_reply(user=staff, message=message, text_body="We are on it.")
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.FAILED
    # The one hook for whatever follows a failed send (inbox/services/outbox.py).
    assert f"outbox {entry.pk} went wrong: state=failed created_by={staff.pk}" in caplog.text
    client.force_login(staff)

    outbox = page(client, reverse("inbox:outbox"))
    assert PLAIN_UNKNOWN in outbox
    assert "Check the spelling" in outbox
    assert "5.1.1" in outbox  # the raw answer, behind "The server's answer"
    assert "The server's answer" in outbox
    conversation = page(client, reverse("inbox:conversation", args=[message.pk]))
    assert PLAIN_UNKNOWN in conversation
    assert reverse("inbox:outbox_action", args=[entry.pk, "send_again"]) in conversation
    # Its own banner, which does not say incoming mail stopped.
    elsewhere = page(client, reverse("inbox:preferences"))
    assert "1 message you sent did not go out" in elsewhere
    assert "Incoming mail is not affected" in elsewhere
    assert "stopped syncing" not in elsewhere

    # The address is fixed at the recipient's end: Send again, from the conversation.
    smtp_server.refuse = {}
    back = reverse("inbox:conversation", args=[message.pk])
    response = client.post(
        reverse("inbox:outbox_action", args=[entry.pk, "send_again"]), {"next": back}
    )
    assert response.status_code == 302 and response["Location"] == back
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    assert len(smtp_server.received) == 1
    assert smtp_server.received[0].rcpt_tos == ("ana@acme.example",)
    assert "did not go out" not in page(client, reverse("inbox:preferences"))
    assert PLAIN_UNKNOWN not in page(client, back)


def test_outcome_unknown_says_check_sent_and_mark_as_sent_settles_it(
    client, imap_user, smtp_server, acme, caplog
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)  # the first sync: from now on new mail opens tickets
    message, _ticket = a_request(imap_user, mailbox)
    smtp_server.mode = "drop"
    entry = message_reply(user=staff, message=message, text_body="Done.")
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY
    assert f"outbox {entry.pk} went wrong: state=verify" in caplog.text
    client.force_login(staff)

    for url in (reverse("inbox:outbox"), reverse("inbox:conversation", args=[message.pk])):
        html = page(client, url)
        assert "Outcome unknown" in html
        assert "nobody knows whether it went out" in html
        assert "Mark as sent or Send again" in html
        assert reverse("inbox:outbox_action", args=[entry.pk, "mark_sent"]) in html
    response = client.post(reverse("inbox:outbox_action", args=[entry.pk, "mark_sent"]))
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    # Marking sends nothing: the one copy the server may have is all there is.
    assert smtp_server.attempts == 1 and smtp_server.received == []
    # Settled: neither action is offered again.
    assert client.post(reverse("inbox:outbox_action", args=[entry.pk, "mark_sent"])).status_code
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT


def test_cancel_a_queued_reply_and_it_is_never_sent(client, imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)  # the first sync: from now on new mail opens tickets
    message, _ticket = a_request(imap_user, mailbox)
    # The mailbox's login was refused: the reply waits in the outbox.
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    entry = message_reply(user=staff, message=message, text_body="Oops, wrong customer.")
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.QUEUED
    client.force_login(staff)
    html = page(client, reverse("inbox:outbox") + "?show=waiting")
    assert "Cancel sending" in html

    client.post(reverse("inbox:outbox_action", args=[entry.pk, "cancel"]))
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.CANCELLED and entry.cancelled_by == staff
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
    assert entry.pk not in sending.dispatch_due(enqueue=sending.process_entry)
    sending.process_entry(entry.pk)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.CANCELLED
    assert not any(b"wrong customer" in m.raw for m in smtp_server.received)
    assert "Cancel sending" not in page(client, reverse("inbox:conversation", args=[message.pk]))


def test_cancel_after_a_worker_took_it_is_refused_and_it_goes_once(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
    claimed = sending._claim(entry.pk)  # a worker took it: "sending" is committed
    assert claimed is not None
    with pytest.raises(ValidationError, match="Too late to cancel"):
        outbox_cancel(user=staff, entry=entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENDING


def test_cancel_racing_a_worker_either_cancels_or_sends_never_both(imap_user, smtp_server, acme):
    """The cancel's conditional UPDATE and the worker's claim (row lock, state check) run at
    the same moment from two connections, several times: exactly one of them wins."""
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    outcomes = []
    for round_ in range(6):
        Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
        entry = outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject=f"Race {round_}"
        )
        Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
        start = threading.Barrier(2)
        cancelled = []

        def cancel(entry=entry, start=start, cancelled=cancelled):
            start.wait()
            try:
                outbox_cancel(user=staff, entry=entry)
                cancelled.append(True)
            except ValidationError:
                cancelled.append(False)
            finally:
                connection.close()

        def work(entry=entry, start=start):
            start.wait()
            try:
                sending.send_entry(entry.pk)
            finally:
                connection.close()

        threads = [threading.Thread(target=cancel), threading.Thread(target=work)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entry.refresh_from_db()
        delivered = [m for m in smtp_server.received if f"Race {round_}".encode() in m.raw]
        if cancelled == [True]:
            assert entry.state == OutboxEntry.State.CANCELLED and delivered == []
        else:
            assert entry.state == OutboxEntry.State.SENT and len(delivered) == 1
        outcomes.append(cancelled[0])
    assert smtp_server.attempts == outcomes.count(False)


def test_edit_and_resend_sends_a_new_message_and_keeps_the_failed_one_as_replaced(
    client, imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)  # the first sync: from now on new mail opens tickets
    message, _ticket = a_request(imap_user, mailbox)
    smtp_server.refuse = {"ana@acme.example": UNKNOWN_USER}
    failed = message_reply(user=staff, message=message, text_body="Your fix is ready.")
    failed.refresh_from_db()
    assert failed.state == OutboxEntry.State.FAILED
    client.force_login(staff)
    edit = reverse("inbox:outbox_edit", args=[failed.pk])
    form = page(client, edit)
    assert "ana@acme.example" in form and "Your fix is ready." in form and PLAIN_UNKNOWN in form
    assert "did not go out" not in form  # the page says it; no banner on top

    response = client.post(
        edit,
        {
            "to": "ana.lopez@acme.example",
            "subject": failed.subject,
            "body": "Your fix is ready (corrected address).",
        },
    )
    assert response.status_code == 302
    failed.refresh_from_db()
    new = failed.replaced_by
    assert new is not None and new.state == OutboxEntry.State.SENT
    assert new.message_id != failed.message_id
    assert new.in_reply_to == failed.in_reply_to and new.reply_to_message_id == message.pk
    assert failed.state == OutboxEntry.State.FAILED
    (delivered,) = smtp_server.received
    assert delivered.rcpt_tos == ("ana.lopez@acme.example",)
    assert b"corrected address" in delivered.raw
    html = page(client, reverse("inbox:outbox"))
    assert "Replaced" in html and "Edited and sent again as a new message" in html
    # The replaced one is done with: no second sending of it.
    with pytest.raises(ValidationError):
        outbox_send_again(user=staff, entry=failed)
    assert client.get(edit).status_code == 302
    assert "did not go out" not in page(client, reverse("inbox:preferences"))


def test_a_refused_smtp_login_has_its_own_banner_not_the_incoming_one(
    client, imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    Mailbox.objects.filter(pk=mailbox.pk).update(kind=Mailbox.Kind.PERSONAL, owner=staff)
    mailbox.granted_users.clear()
    smtp_server.password = "changed-at-the-provider"
    entry = outbox_compose(user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hi")
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT and mailbox.refused_by == "smtp"
    client.force_login(staff)
    html = page(client, reverse("inbox:preferences"))
    assert "cannot send: its outgoing mail server no longer accepts the sign-in" in html
    assert "New mail will not arrive" not in html
    outbox = page(client, reverse("inbox:outbox"))
    assert "Reconnect the mailbox; the message then goes out by itself." in outbox
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.RETRYING


def test_a_refused_separate_smtp_login_is_reconnected_with_the_smtp_password(
    client, imap_user, smtp_server, acme
):
    """docs/product.md §2.5, §2.8: the mailbox signs in to SMTP with a login of its own, which
    the real aiosmtpd server stops accepting while IMAP still works. Reconnect asks for that
    SMTP password (not the mailbox's own), names the server that refused it, tests a new one
    against that server only, and once accepted the mailbox resumes and the waiting mail goes."""
    mailbox, staff = support_mailbox(
        imap_user, smtp_server, smtp_auth="separate", smtp_login="relay-smtp"
    )
    mailbox.set_smtp_password("old-smtp-password")
    mailbox.save(update_fields=["smtp_password_encrypted"])
    smtp_server.user, smtp_server.password = "relay-smtp", "changed-at-the-provider"
    entry = outbox_compose(user=staff, mailbox=mailbox, to="ana@acme.example", subject="Waiting")
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT and mailbox.refused_by == "smtp"
    admin = f.UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    url = reverse("inbox:mailbox_reconnect", args=[mailbox.pk])

    html = page(client, url)
    assert f"the outgoing server <strong>{smtp_server.host}:{smtp_server.port}</strong>" in html
    assert "refused the separate SMTP login <strong>relay-smtp</strong>" in html
    assert 'name="smtp_password"' in html and 'name="password"' not in html

    logins = len(smtp_server.logins)
    response = client.post(url, {"smtp_password": "still-wrong"})
    assert response.status_code == 400
    assert f"{smtp_server.host} did not accept it" in response.content.decode()
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    assert mailbox.smtp_password.reveal() == "old-smtp-password"
    assert mailbox.password.reveal() == imap_user.password  # the IMAP password is untouched

    response = client.post(url, {"smtp_password": "changed-at-the-provider"})
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:mailbox_health", args=[mailbox.pk])
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE and mailbox.refused_by == ""
    assert mailbox.smtp_password.reveal() == "changed-at-the-provider"
    assert mailbox.password.reveal() == imap_user.password
    assert smtp_server.logins[logins:].count("relay-smtp") >= 2  # the test, then the send
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT
    (delivered,) = smtp_server.received
    assert b"Subject: Waiting" in delivered.raw
