"""The Email tab with mail that came the way real mail comes: delivered to the test Dovecot,
synced, filed (and re-filed when someone adds an address to a record), then read through the
web pages as each persona (docs/reliability.md C-13, S-08)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse

from connector.sync import mailbox as sync
from crm.models import Contact
from inbox.models import Filing, Mailbox, Message
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.synckit import make_mailbox, make_raw
from tests.servers.fixtures import ImapUser

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]

HTMX = {"HX-Request": "true"}


def tab(client, contact) -> str:
    response = client.get(reverse("inbox:email_tab", args=["contact", contact.pk]), headers=HTMX)
    assert response.status_code == 200
    return response.content.decode()


def synced(mailbox) -> None:
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()


def create_contact(client, email: str) -> Contact:
    """A colleague adds the correspondent as a contact on the contact page."""
    response = client.post(
        reverse("crm:contact_create"),
        {"first_name": "Dr", "last_name": "Who", "title": "", "phone": "", "emails": email},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return Contact.objects.get(emails__email=email)


def doctors_letter(imap_user, owner_address: str) -> None:
    imap_user.server.deliver(
        imap_user,
        make_raw(
            "Your test results",
            sender="Dr Who <doctor@clinic.example>",
            to=f"Olivia <{owner_address}>",
            body="The biopsy came back and we should talk about it soon.\n",
            extra_headers={"Cc": "Family <family@home.example>"},
        ),
    )


# --- personal mail and the privacy its owner chose (docs/reliability.md C-13) -----------------


def test_mail_of_an_owner_who_shares_nothing_never_shows_to_the_colleague_who_files_it(
    client, owner, outsider, imap_user
):
    mailbox = make_mailbox(imap_user, owner=owner, active_folders=["INBOX"])
    client.force_login(owner)
    saved = client.post(
        reverse("inbox:mailbox_settings", args=[mailbox.pk]),
        {"display_name": "", "refresh_interval": "300", "signature": "", "privacy": "nothing"},
    )
    assert saved.status_code == 302
    doctors_letter(imap_user, mailbox.email_address)
    synced(mailbox)

    client.force_login(outsider)
    contact = create_contact(client, "doctor@clinic.example")

    # Re-filing did put it on the record (the owner sees it there)...
    message = Message.objects.get(subject="Your test results")
    assert Filing.objects.filter(message=message, contact=contact).exists()
    client.force_login(owner)
    assert "Your test results" in tab(client, contact)
    # ...and the colleague whose action filed it sees nothing of it: no subject, no people,
    # no text, no count.
    client.force_login(outsider)
    html = tab(client, contact)
    for leak in ("Your test results", "biopsy", "family@home.example", "Family", "Olivia"):
        assert leak not in html, leak
    assert "filed here" not in html.replace("No email filed here yet", "")
    assert "No email filed here yet" in html


def test_a_mailbox_connected_with_the_defaults_shows_colleagues_subject_and_people_only(
    client, owner, outsider, imap_user
):
    server = imap_user.server
    connection = {
        "email_address": imap_user.email,
        "login": imap_user.login,
        "password": imap_user.password,
        "imap_host": server.host,
        "imap_port": str(server.port),
        "imap_security": "none",
        "smtp_host": "",
        "smtp_port": "465",
        "smtp_security": "ssl",
        "sync_from": "2000-01-01",
    }
    client.force_login(owner)
    # Test connection shows the folders and the options, privacy preselected.
    options = client.post(reverse("inbox:mailbox_test"), connection).content.decode()
    privacy = re.search(r'<select name="privacy".*?</select>', options, re.S).group(0)
    default = re.search(r'<option value="(\w+)"[^>]*selected', privacy).group(1)
    response = client.post(
        reverse("inbox:mailbox_connect"),
        {
            **connection,
            "folders_shown": "1",
            "active_folders": ["INBOX"],
            "refresh_interval": "300",
            "signature": "",
            "privacy": default,  # what the browser posts when the owner leaves it alone
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    mailbox = Mailbox.objects.get(owner=owner)
    doctors_letter(imap_user, mailbox.email_address)
    synced(mailbox)

    client.force_login(outsider)
    contact = create_contact(client, "doctor@clinic.example")
    html = tab(client, contact)
    assert "Your test results" in html and "Family" in html  # the Cc, by name
    assert "biopsy" not in html
    assert "1 message filed here" in html


# --- copies of one mail in several mailboxes (docs/reliability.md S-08) ---------------------


def test_a_forged_copy_with_the_same_message_id_sender_and_date_never_hides_the_real_mail(
    client, owner, teammate, dovecot, imap_user
):
    support = make_mailbox(imap_user, active_folders=["INBOX"])
    Mailbox.objects.filter(pk=support.pk).update(kind=Mailbox.Kind.SHARED, owner=None)
    support.granted_users.add(teammate)
    olivias = make_mailbox(
        ImapUser(dovecot, dovecot.create_user()), owner=owner, active_folders=["INBOX"]
    )
    f.ContactFactory(first_name="Ana", emails=["ana@customer.example"])
    same = {
        "sender": "Ana <ana@customer.example>",
        "message_id": "<order-7@customer.example>",
        "date": dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC),
    }
    forged = make_raw("Please pay to the new account", body="IBAN changed, pay now.\n", **same)
    genuine = make_raw("Order 7 confirmed", body="Thanks, see you Monday.\n", **same)
    # The forgery arrives first; the genuine mail reaches support@ and, byte for byte, Olivia.
    dovecot.deliver(imap_user, forged)
    dovecot.deliver(imap_user, genuine)
    dovecot.deliver(olivias.login, genuine)
    synced(support)
    synced(olivias)
    contact = Contact.objects.get(emails__email="ana@customer.example")
    assert Filing.objects.filter(contact=contact).count() == 3

    client.force_login(teammate)
    html = tab(client, contact)
    assert "Order 7 confirmed" in html and "Please pay to the new account" in html
    # Identical bytes are one mail: the genuine one once, the teammate's readable copy.
    assert html.count("Order 7 confirmed") == 1 and "2 messages filed here" in html
