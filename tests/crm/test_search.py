"""Search on every list: names, email addresses, domains and references."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests import factories as f

pytestmark = pytest.mark.django_db


def _search(client, name, q, **params):
    return client.get(reverse(f"crm:{name}_list"), {"q": q, **params}).content.decode()


def test_contacts_by_name_and_by_address(user_client):
    f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@globex.example"])
    f.ContactFactory(first_name="Bob", last_name="Smith", emails=["bob@initech.example"])
    by_name = _search(user_client, "contact", "lopez")
    assert "Ana Lopez" in by_name and "Bob Smith" not in by_name
    by_address = _search(user_client, "contact", "bob@initech")
    assert "Bob Smith" in by_address and "Ana Lopez" not in by_address
    full_name = _search(user_client, "contact", "ana lopez")
    assert "Ana Lopez" in full_name and "Bob Smith" not in full_name
    assert "No contacts match your search" in _search(user_client, "contact", "zebra")


def test_contact_with_several_matching_addresses_is_listed_once(user_client):
    f.ContactFactory(
        first_name="Ana", last_name="Lopez", emails=["ana@globex.example", "ana.l@globex.example"]
    )
    html = _search(user_client, "contact", "globex")
    assert html.count(">Ana Lopez</a>") == 1
    assert "1 contact matching “globex”" in html


def test_accounts_by_name_and_domain(user_client):
    f.AccountFactory(name="Globex", domains=["globex.example"])
    f.AccountFactory(name="Initech", domains=["initech.example", "initech.test"])
    assert "Initech" not in _search(user_client, "account", "globex")
    by_domain = _search(user_client, "account", "initech.test")
    assert "Initech" in by_domain and "Globex" not in by_domain


def test_leads_by_name_company_and_address(user_client):
    f.LeadFactory(
        first_name="Lee", last_name="Ng", company_name="Hooli", emails=["lee@hooli.example"]
    )
    f.LeadFactory(first_name="Mia", last_name="Wong", company_name="Pied Piper")
    assert "Lee Ng" in _search(user_client, "lead", "hooli.example")
    by_company = _search(user_client, "lead", "pied")
    assert "Mia Wong" in by_company and "Lee Ng" not in by_company


def test_ticket_by_reference(user_client):
    tickets = [f.TicketFactory(subject=f"Problem {n}") for n in range(3)]
    wanted = tickets[1]
    for query in (wanted.reference, wanted.reference.lower(), f"TKT {wanted.number}"):
        html = _search(user_client, "ticket", query)
        assert f">{wanted.subject}</a>" in html, query
        assert f">{tickets[0].subject}</a>" not in html and f">{tickets[2].subject}</a>" not in html


def test_ticket_tkt_1042_is_found(user_client):
    tickets = [f.TicketFactory(subject=f"Ticket number {n}") for n in range(43)]
    assert tickets[42].reference == "TKT-1042"
    html = _search(user_client, "ticket", "TKT-1042")
    assert "TKT-1042" in html and ">Ticket number 42</a>" in html
    assert "1 ticket matching" in html


def test_ticket_by_subject_account_and_status(user_client):
    account = f.AccountFactory(name="Globex")
    f.TicketFactory(subject="Printer jam", account=account)
    f.TicketFactory(subject="Email bounce", status="closed")
    assert "Printer jam" in _search(user_client, "ticket", "globex")
    html = _search(user_client, "ticket", "", status="closed")
    assert "Email bounce" in html and "Printer jam" not in html


def test_opportunity_by_reference_and_name(user_client):
    first = f.OpportunityFactory(name="Renewal")
    second = f.OpportunityFactory(name="Expansion")
    html = _search(user_client, "opportunity", second.reference)
    assert "Expansion" in html and "Renewal" not in html
    assert first.reference == "OPP-1"
    html = _search(user_client, "opportunity", "renew")
    assert "Renewal" in html and "Expansion" not in html
    html = _search(user_client, "opportunity", "", stage="prospecting")
    assert "Renewal" in html and "Expansion" in html


def test_search_keeps_the_query_across_pages(user_client, settings):
    settings.RELAY_PAGE_SIZE = 2
    for n in range(5):
        f.ContactFactory(first_name="Match", last_name=f"M{n}")
    f.ContactFactory(first_name="Other")
    html = _search(user_client, "contact", "match")
    assert "?q=match&amp;page=2" in html
    assert 'value="match"' in html
