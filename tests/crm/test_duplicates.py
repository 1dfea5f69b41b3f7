"""Duplicate warnings on the contact and lead forms (docs/product.md §1.2): the same address,
the same name at the same account or company, the same name at the same company domain. The
form shows them and saves nothing until the person goes on anyway."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.models import Contact, Lead
from tests import factories as f

pytestmark = pytest.mark.django_db


def _post(client, url, data):
    response = client.post(url, data)
    return response, response.content.decode()


def test_contact_with_an_address_that_exists_warns_and_can_go_on(user_client):
    ana = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@acme.example"])
    url = reverse("crm:contact_create")
    data = {"first_name": "Anna", "last_name": "Lopes", "emails": "ANA@acme.example"}
    response, html = _post(user_client, url, data)
    assert response.status_code == 200
    assert 'id="duplicates"' in html and "also has ana@acme.example" in html
    assert f'href="{ana.get_absolute_url()}"' in html
    assert "Create anyway" in html and 'name="duplicates_ok"' in html
    assert Contact.objects.count() == 1  # nothing saved yet

    response = user_client.post(url, {**data, "duplicates_ok": "1"})
    assert response.status_code == 302
    assert Contact.objects.count() == 2


def test_same_name_at_the_same_account_or_company_domain(user_client):
    acme = f.AccountFactory(name="Acme")
    f.ContactFactory(first_name="Ana", last_name="Lopez", account=acme)
    f.ContactFactory(first_name="Bo", last_name="Berg", emails=["bo@initech.example"])
    f.ContactFactory(first_name="Cy", last_name="Free", emails=["cy@gmail.com"])
    url = reverse("crm:contact_create")

    _, html = _post(
        user_client, url, {"first_name": "ana", "last_name": "LOPEZ", "account": acme.pk}
    )
    assert "same name, at Acme" in html
    _, html = _post(
        user_client,
        url,
        {"first_name": "Bo", "last_name": "Berg", "emails": "b.berg@initech.example"},
    )
    assert "same name, same company domain" in html
    # A free-mail domain says nothing about who someone is.
    response, html = _post(
        user_client, url, {"first_name": "Cy", "last_name": "Free", "emails": "cy.free@gmail.com"}
    )
    assert response.status_code == 302 and 'id="duplicates"' not in html


def test_lead_with_the_same_name_at_the_same_company_warns(user_client):
    f.LeadFactory(first_name="Dee", last_name="Dunn", company_name="Globex")
    url = reverse("crm:lead_create")
    data = {"first_name": "Dee", "last_name": "Dunn", "company_name": "globex", "status": "new"}
    response, html = _post(user_client, url, data)
    assert response.status_code == 200 and "same name, at Globex" in html
    assert Lead.objects.count() == 1


def test_editing_a_contact_does_not_warn_about_itself(user_client):
    ana = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@acme.example"])
    response = user_client.post(
        reverse("crm:contact_update", args=[ana.pk]),
        {"first_name": "Ana", "last_name": "Lopez", "emails": "ana@acme.example"},
    )
    assert response.status_code == 302


def test_the_check_costs_the_same_queries_whatever_the_number_of_records(user_client):
    url = reverse("crm:contact_create")
    data = {"first_name": "Ana", "last_name": "Lopez", "emails": "ana@acme.example"}
    f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@acme.example"])
    with CaptureQueriesContext(connection) as few:
        user_client.post(url, data)
    for _ in range(6):
        f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@acme.example"])
    with CaptureQueriesContext(connection) as many:
        user_client.post(url, data)
    assert len(many) == len(few)
