"""The admin site: CRM records with their addresses inline, staff addresses on the user."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from crm.models import Account, ContactEmail, StaffEmail, Ticket
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize("model", ["account", "contact", "lead", "ticket", "opportunity"])
def test_changelists_and_add_pages_open(admin_client, model):
    assert admin_client.get(reverse(f"admin:crm_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:crm_{model}_add")).status_code == 200


def test_contact_change_page_has_email_inline(admin_client):
    contact = f.ContactFactory(emails=["ana@globex.example"])
    html = admin_client.get(reverse("admin:crm_contact_change", args=[contact.pk])).content
    assert b"ana@globex.example" in html and b"emails-TOTAL_FORMS" in html


def test_account_added_in_admin_stores_normalised_domains(admin_client):
    response = admin_client.post(
        reverse("admin:crm_account_add"),
        {
            "name": "Globex",
            "website": "",
            "phone": "",
            "owner": "",
            "domains-TOTAL_FORMS": "1",
            "domains-INITIAL_FORMS": "0",
            "domains-0-domain": "GLOBEX.Example.",
        },
    )
    assert response.status_code == 302
    assert list(Account.objects.get().domains.values_list("domain", flat=True)) == [
        "globex.example"
    ]


def test_bad_address_in_admin_inline_is_an_error_not_a_crash(admin_client):
    contact = f.ContactFactory()
    response = admin_client.post(
        reverse("admin:crm_contact_change", args=[contact.pk]),
        {
            "first_name": "Ana",
            "last_name": "",
            "phone": "",
            "title": "",
            "account": "",
            "emails-TOTAL_FORMS": "1",
            "emails-INITIAL_FORMS": "0",
            "emails-0-email": "nope",
        },
    )
    assert response.status_code == 200
    assert "is not an email address" in response.content.decode()
    assert not ContactEmail.objects.exists()


def test_ticket_added_in_admin_gets_the_next_reference(admin_client):
    first = f.TicketFactory()
    response = admin_client.post(
        reverse("admin:crm_ticket_add"),
        {
            "subject": "From the admin",
            "description": "",
            "status": "open",
            "priority": "normal",
            "account": "",
            "contact": "",
            "assignee": "",
        },
    )
    assert response.status_code == 302
    assert Ticket.objects.get(subject="From the admin").number == first.number + 1


def test_user_admin_edits_staff_addresses_inline(admin_client, teammate):
    url = reverse("admin:auth_user_change", args=[teammate.pk])
    page = admin_client.get(url).content.decode()
    assert "staff_emails-TOTAL_FORMS" in page
    data = {
        "username": teammate.username,
        "first_name": "Tom",
        "last_name": "Teammate",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
        "staff_emails-TOTAL_FORMS": "2",
        "staff_emails-INITIAL_FORMS": "0",
        "staff_emails-0-email": "Tom@Relay.test",
        "staff_emails-1-email": "tom@work.example",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert sorted(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom@relay.test",
        "tom@work.example",
    ]
    # An admin sets a user's addresses directly: they count at once (docs/reliability.md C-19).
    assert not StaffEmail.objects.filter(user=teammate, confirmed_at__isnull=True).exists()


def test_admin_confirms_an_address_a_user_is_waiting_for(admin_client, teammate):
    """docs/reliability.md C-19: an admin may set a user's addresses directly; one the user
    added and has not confirmed shows as waiting, and unticking it confirms it."""
    waiting = StaffEmail.objects.create(user=teammate, email="tom@relay.test")
    url = reverse("admin:auth_user_change", args=[teammate.pk])
    page = admin_client.get(url).content.decode()
    assert re.search(r'<input[^>]*name="staff_emails-0-waiting"[^>]*checked', page)
    data = {
        "username": teammate.username,
        "first_name": "Tom",
        "last_name": "Teammate",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
        "staff_emails-TOTAL_FORMS": "1",
        "staff_emails-INITIAL_FORMS": "1",
        "staff_emails-0-id": waiting.pk,
        "staff_emails-0-user": teammate.pk,
        "staff_emails-0-email": "tom@relay.test",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    waiting.refresh_from_db()
    assert waiting.is_confirmed
