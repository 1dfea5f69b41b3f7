"""A staff user's own addresses (docs/reliability.md C-19): mail from them is staff mail, so an
address counts only once its owner followed the link mailed to it; an admin sets a user's
addresses directly. The confirmation mail goes through Django's SMTP backend to a real
aiosmtpd server (tests/servers/smtp.py)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest
from django.urls import reverse

from crm import services
from crm.models import StaffEmail, Ticket
from tests import factories as f
from tests.conftest import login
from tests.connector.filingkit import receive, records
from tests.connector.synckit import make_raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def system_mailer(smtp_server, settings):
    """The system mailer (MAILERS, from EMAIL_* in crm/settings.py) pointed at the test SMTP
    server, instead of the in-memory outbox Django's test runner puts there."""
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": smtp_server.host,
                "port": smtp_server.port,
                "username": smtp_server.user,
                "password": smtp_server.password,
                "timeout": 10,
            },
        }
    }
    return smtp_server


def confirmation_link(smtp_server, address: str) -> str:
    mails = [m for m in smtp_server.received if m.rcpt_tos == (address,)]
    assert mails, [m.rcpt_tos for m in smtp_server.received]
    body = message_from_bytes(mails[-1].raw, policy=policy.default).get_content()
    return re.search(r"http://testserver(/\S+)", body)[1]


def test_staff_user_sets_several_addresses_of_their_own(user_client, teammate, system_mailer):
    url = reverse("crm:my_addresses")
    assert "My email addresses" in user_client.get(url).content.decode()
    response = user_client.post(url, {"emails": "Tom@Relay.test\ntom.t@relay.example"}, follow=True)
    page = response.content.decode()
    assert "Your email addresses were saved." in page
    assert "A confirmation link was mailed to tom@relay.test, tom.t@relay.example" in page
    assert sorted(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom.t@relay.example",
        "tom@relay.test",
    ]
    page = user_client.get(url).content.decode()
    assert "tom.t@relay.example" in page and "tom@relay.test" in page
    assert "Waiting for confirmation" in page

    user_client.post(url, {"emails": "tom@relay.test"})
    assert list(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom@relay.test"
    ]


def test_bad_address_saves_nothing(user_client, teammate):
    f.StaffEmailFactory(user=teammate, email="tom@relay.test")
    response = user_client.post(reverse("crm:my_addresses"), {"emails": "new@relay.test\nnope"})
    assert response.status_code == 422
    assert "“nope” is not an email address." in response.content.decode()
    assert list(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom@relay.test"
    ]


def test_address_of_another_user_is_refused(user_client, teammate, owner):
    f.StaffEmailFactory(user=owner, email="olivia@relay.test")
    response = user_client.post(
        reverse("crm:my_addresses"), {"emails": "tom@relay.test, olivia@relay.test"}
    )
    assert response.status_code == 422
    assert "olivia@relay.test already belongs to another user." in response.content.decode()
    assert not StaffEmail.objects.filter(user=teammate).exists()
    assert StaffEmail.objects.get(email="olivia@relay.test").user == owner


def test_claiming_a_customers_address_does_not_make_her_mail_staff_mail(
    client, teammate, system_mailer, tmp_path, settings
):
    """docs/reliability.md C-19: a user claims a customer's address as "my address". Until the link
    mailed to that address is followed, her mail stays a customer's: it opens her ticket."""
    settings.MEDIA_ROOT = tmp_path / "media"
    support = f.SharedMailboxFactory(email_address="support@relay.test", create_tickets=True)
    ana = f.ContactFactory(emails=["ana@acme.example"])
    login(client, teammate)
    client.post(reverse("crm:my_addresses"), {"emails": "ana@acme.example"})

    (request,) = receive(support, make_raw("Printer jams", sender="Ana <ana@acme.example>"))

    assert ("contact", ana.pk) in records(request)
    assert Ticket.objects.filter(contact=ana).count() == 1
    # The link went to the address itself, never to the user who claimed it.
    assert [m.rcpt_tos for m in system_mailer.received] == [("ana@acme.example",)]
    assert not StaffEmail.objects.get(email="ana@acme.example").is_confirmed


def test_following_the_link_confirms_the_address_and_only_for_its_user(
    client, teammate, outsider, system_mailer
):
    login(client, teammate)
    client.post(reverse("crm:my_addresses"), {"emails": "tom@relay.test"})
    link = confirmation_link(system_mailer, "tom@relay.test")

    # Opening the link (a mail scanner does) changes nothing: a button confirms.
    page = client.get(link)
    assert page.status_code == 200 and "Confirm this address" in page.content.decode()
    assert not StaffEmail.objects.get(email="tom@relay.test").is_confirmed

    login(client, outsider)
    refused = client.post(link)
    assert refused.status_code == 400
    assert "confirms an address for another user" in refused.content.decode()
    assert not StaffEmail.objects.get(email="tom@relay.test").is_confirmed

    login(client, teammate)
    done = client.post(link, follow=True)
    assert "tom@relay.test is confirmed" in done.content.decode()
    assert StaffEmail.objects.get(email="tom@relay.test", user=teammate).is_confirmed


def test_an_expired_or_altered_link_confirms_nothing(client, teammate, system_mailer, monkeypatch):
    login(client, teammate)
    client.post(reverse("crm:my_addresses"), {"emails": "tom@relay.test"})
    link = confirmation_link(system_mailer, "tom@relay.test")

    altered = client.post(link.replace("/confirm/", "/confirm/x"))
    assert altered.status_code == 400 and "not valid" in altered.content.decode()
    monkeypatch.setattr(services, "STAFF_CONFIRM_MAX_AGE", -1)
    expired = client.post(link)
    assert expired.status_code == 400 and "has expired" in expired.content.decode()
    assert not StaffEmail.objects.get(email="tom@relay.test").is_confirmed


def test_a_mail_that_cannot_be_sent_saves_nothing(user_client, teammate, system_mailer):
    system_mailer.mode = "permfail"
    response = user_client.post(reverse("crm:my_addresses"), {"emails": "tom@relay.test"})
    assert response.status_code == 422
    assert "could not be sent" in response.content.decode()
    assert not StaffEmail.objects.filter(user=teammate).exists()


def test_a_pending_claim_gives_way_to_a_confirmed_owner(
    user_client, teammate, owner, system_mailer
):
    """Someone's unconfirmed claim cannot squat a colleague's address: the colleague claims it
    too, and whoever follows the link at the address owns it."""
    StaffEmail.objects.create(user=owner, email="tom@relay.test")  # unconfirmed
    response = user_client.post(reverse("crm:my_addresses"), {"emails": "tom@relay.test"})
    assert response.status_code == 302
    assert StaffEmail.objects.get(email="tom@relay.test").user == teammate
