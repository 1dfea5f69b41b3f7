from __future__ import annotations

import pytest
from django.urls import reverse

from crm.models import Account, Contact, Lead
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_convert_asks_first_then_creates_contact_and_account(user_client):
    lead = f.LeadFactory(
        first_name="Lee",
        last_name="Ng",
        company_name="Hooli",
        emails=["lee@hooli.example", "lee.ng@hooli.example"],
    )
    url = reverse("crm:lead_convert", args=[lead.pk])
    page = user_client.get(url).content.decode()
    assert "Convert “Lee Ng”" in page and "Hooli" in page and "lee.ng@hooli.example" in page
    assert not Contact.objects.exists()

    response = user_client.post(url, follow=True)
    contact = Contact.objects.get()
    assert response.redirect_chain[-1][0] == contact.get_absolute_url()
    html = response.content.decode()
    assert "Lead converted: contact “Lee Ng” created at account “Hooli”." in html
    assert contact.account == Account.objects.get(name="Hooli")
    assert sorted(contact.emails.values_list("email", flat=True)) == [
        "lee.ng@hooli.example",
        "lee@hooli.example",
    ]
    lead.refresh_from_db()
    assert lead.status == Lead.Status.CONVERTED and lead.converted_contact == contact

    detail = user_client.get(lead.get_absolute_url()).content.decode()
    assert "Converted" in detail and contact.get_absolute_url() in detail
    assert url not in detail  # no second conversion offered


def test_convert_reuses_an_account_with_the_company_name(user_client):
    account = f.AccountFactory(name="Hooli")
    lead = f.LeadFactory(company_name="hooli")
    user_client.post(reverse("crm:lead_convert", args=[lead.pk]))
    assert Account.objects.count() == 1
    assert Contact.objects.get().account == account


def test_converting_twice_creates_nothing_more(user_client):
    lead = f.LeadFactory(company_name="Hooli")
    url = reverse("crm:lead_convert", args=[lead.pk])
    user_client.post(url)
    response = user_client.post(url, follow=True)
    assert "already been converted" in response.content.decode()
    assert Contact.objects.count() == 1 and Account.objects.count() == 1


def test_convert_is_post_only_to_act(user_client):
    lead = f.LeadFactory()
    assert user_client.put(reverse("crm:lead_convert", args=[lead.pk])).status_code == 405
    assert not Contact.objects.exists()
