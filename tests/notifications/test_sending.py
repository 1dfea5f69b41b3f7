"""A message I sent that failed, or whose outcome is unknown, tells me (docs/product.md §7.10),
driven through the real outbox against aiosmtpd and Dovecot (tests/servers/)."""

from __future__ import annotations

import pytest

from connector.outbound import outbox as sending
from inbox.models import Mailbox, OutboxEntry
from inbox.services.composing import outbox_compose
from notifications.models import Kind, Notification
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.outbound.test_sending import make_due, support_mailbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def acme(db):
    account = f.AccountFactory(name="Acme", domains=["acme.example"])
    return f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=account)


def test_a_refused_message_tells_its_author(imap_user, smtp_server, acme):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.mode = "permfail"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Quote", text_body="Hi"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.FAILED
    (note,) = Notification.objects.all()
    assert note.recipient == staff and note.kind == Kind.SEND_FAILED
    assert note.text.startswith("Your message “Quote” to ana@acme.example could not be sent")
    assert "554" in note.text
    assert note.url == f"/inbox/outbox/?show=problems#outbox-{entry.pk}"  # where its actions are


def test_an_unknown_outcome_tells_its_author_once_a_person_must_decide(
    imap_user, smtp_server, acme
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.mode = "drop"
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Quote", text_body="Hi"
    )
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY
    # Relay first looks in the Sent folder; nobody is told yet.
    assert not Notification.objects.exists()
    smtp_server.mode = "accept"
    for _ in range(3):
        make_due(entry)
        sending.dispatch_due(enqueue=sending.process_entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY and entry.next_attempt_at is None
    (note,) = Notification.objects.all()
    assert note.recipient == staff and note.kind == Kind.SEND_FAILED
    assert "Nobody knows whether your message “Quote”" in note.text


def test_a_refused_smtp_login_tells_the_admins_the_mailbox_needs_reconnecting(
    imap_user, smtp_server, acme, admin_user
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    smtp_server.password = "something-else"
    outbox_compose(user=staff, mailbox=mailbox, to="ana@acme.example", subject="Q", text_body="Hi")
    assert Mailbox.objects.get(pk=mailbox.pk).state == Mailbox.State.NEEDS_RECONNECT
    (note,) = Notification.objects.all()
    assert note.recipient == admin_user and note.kind == Kind.RECONNECT
    assert "the SMTP server refused the login" in note.text
