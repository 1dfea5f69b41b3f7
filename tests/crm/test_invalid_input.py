"""Bad input on every form: the user sees a clear error on the field, and nothing is saved."""

from __future__ import annotations

import pytest
from django.urls import reverse

from crm.models import Account, AccountDomain, Contact, ContactEmail, Lead, Opportunity, Ticket
from tests import factories as f

pytestmark = pytest.mark.django_db


def _errors(response) -> str:
    assert response.status_code == 422
    html = response.content.decode()
    assert "Nothing was saved" in html
    return html


def test_contact_with_one_bad_address_among_good_ones_is_not_created(user_client):
    response = user_client.post(
        reverse("crm:contact_create"),
        {
            "first_name": "Ana",
            "last_name": "Lopez",
            "title": "",
            "phone": "",
            "account": "",
            "emails": "ana@globex.example\nnot-an-address\nana2@globex.example",
        },
    )
    html = _errors(response)
    assert "“not-an-address” is not an email address." in html
    assert 'class="invalid-feedback' in html
    # What the user typed is kept, so they can fix the one bad line.
    assert "ana2@globex.example" in html
    assert not Contact.objects.exists() and not ContactEmail.objects.exists()


def test_every_bad_address_is_named(user_client):
    response = user_client.post(
        reverse("crm:contact_create"),
        {"first_name": "Ana", "emails": "one@, two@@x.example, ok@x.example"},
    )
    html = _errors(response)
    assert (
        "“one@”: Enter a domain such as example.com." in html and "“two@@x.example” is not" in html
    )
    assert not Contact.objects.exists()


def test_contact_needs_a_name_or_an_address(user_client):
    html = _errors(user_client.post(reverse("crm:contact_create"), {"emails": ""}))
    assert "Give the contact a name or at least one email address." in html
    assert not Contact.objects.exists()


def test_editing_a_contact_with_a_bad_address_changes_nothing(user_client):
    contact = f.ContactFactory(first_name="Ana", emails=["ana@globex.example"])
    response = user_client.post(
        reverse("crm:contact_update", args=[contact.pk]),
        {
            "first_name": "Renamed",
            "last_name": "",
            "title": "",
            "phone": "",
            "account": "",
            "emails": "new@globex.example\nbad address@globex.example",
        },
    )
    assert "is not an email address" in _errors(response)
    contact.refresh_from_db()
    assert contact.first_name == "Ana"
    assert list(contact.emails.values_list("email", flat=True)) == ["ana@globex.example"]


def test_contact_with_unknown_account_is_refused(user_client):
    response = user_client.post(
        reverse("crm:contact_create"), {"first_name": "Ana", "account": "999999"}
    )
    assert "Select a valid choice" in _errors(response)
    assert not Contact.objects.exists()


def test_account_with_bad_domain_is_not_created(user_client):
    response = user_client.post(
        reverse("crm:account_create"),
        {
            "name": "Initech",
            "website": "",
            "phone": "",
            "owner": "",
            "domains": "initech.example\nnot a domain\n-bad-.example",
        },
    )
    html = _errors(response)
    assert "“not a domain” is not a valid domain name." in html
    assert "“-bad-.example” is not a valid domain name." in html
    assert not Account.objects.exists() and not AccountDomain.objects.exists()


def test_account_needs_a_name(user_client):
    response = user_client.post(reverse("crm:account_create"), {"name": "", "domains": "a.example"})
    assert "This field is required." in _errors(response)
    assert not Account.objects.exists()


def test_account_with_bad_website(user_client):
    response = user_client.post(
        reverse("crm:account_create"), {"name": "Initech", "website": "javascript:alert(1)"}
    )
    assert "Enter a valid URL." in _errors(response)
    assert not Account.objects.exists()


def test_editing_an_account_with_a_bad_domain_changes_nothing(user_client):
    account = f.AccountFactory(name="Initech", domains=["initech.example"])
    response = user_client.post(
        reverse("crm:account_update", args=[account.pk]),
        {"name": "Renamed", "domains": "ok.example\nbad_domain"},
    )
    assert "is not a valid domain name" in _errors(response)
    account.refresh_from_db()
    assert account.name == "Initech"
    assert list(account.domains.values_list("domain", flat=True)) == ["initech.example"]


def test_lead_with_bad_address_is_not_created(user_client):
    response = user_client.post(
        reverse("crm:lead_create"),
        {"first_name": "Lee", "status": "new", "emails": "lee@hooli.example; lee@"},
    )
    assert "“lee@”: Enter a domain" in _errors(response)
    assert not Lead.objects.exists()


def test_lead_cannot_be_marked_converted_by_hand(user_client):
    response = user_client.post(
        reverse("crm:lead_create"), {"first_name": "Lee", "status": "converted"}
    )
    assert "Select a valid choice" in _errors(response)
    assert not Lead.objects.exists()


def test_ticket_needs_a_subject_and_valid_choices(user_client):
    response = user_client.post(
        reverse("crm:ticket_create"),
        {"subject": "", "status": "sleeping", "priority": "normal"},
    )
    html = _errors(response)
    assert "This field is required." in html and "Select a valid choice" in html
    assert not Ticket.objects.exists()
    # A refused ticket does not use up a number either.
    assert f.TicketFactory().number == 1000


def test_opportunity_with_bad_amount_and_date(user_client):
    response = user_client.post(
        reverse("crm:opportunity_create"),
        {"name": "Deal", "stage": "proposal", "amount": "-5", "close_date": "31/31/2027"},
    )
    html = _errors(response)
    assert "The amount cannot be negative." in html and "Enter a valid date." in html
    assert not Opportunity.objects.exists()


def test_opportunity_amount_must_be_a_number(user_client):
    response = user_client.post(
        reverse("crm:opportunity_create"),
        {"name": "Deal", "stage": "proposal", "amount": "lots"},
    )
    assert "Enter a number." in _errors(response)
    assert not Opportunity.objects.exists()


def test_too_many_addresses(user_client):
    emails = "\n".join(f"p{n}@x.example" for n in range(51))
    response = user_client.post(
        reverse("crm:contact_create"), {"first_name": "Ana", "emails": emails}
    )
    assert "Enter at most 50 addresses." in _errors(response)
    assert not Contact.objects.exists()
