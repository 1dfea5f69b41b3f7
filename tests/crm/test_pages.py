"""Every page of every record type, as a signed-in user sees it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from crm.models import (
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Lead,
    LeadEmail,
    Opportunity,
    Ticket,
)
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_home_and_signing_in_land_on_the_inbox(client, user_client):
    response = user_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:inbox_page")
    f.UserFactory(username="newcomer", password="a long enough password")
    client.logout()
    response = client.post(
        reverse("login"),
        {"username": "newcomer", "password": "a long enough password"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("inbox:inbox_page")


def test_navigation_links_every_record_list_and_the_user_menu(user_client):
    html = user_client.get(reverse("crm:contact_list")).content.decode()
    for name in ("contact", "account", "lead", "ticket", "opportunity"):
        assert f'href="{reverse(f"crm:{name}_list")}"' in html
    assert reverse("crm:my_addresses") in html
    assert f'action="{reverse("logout")}"' in html  # sign out is a POST form
    assert 'href="/admin/"' not in html  # the teammate is not staff of the admin site


def test_staff_see_the_admin_link(client, admin_user):
    client.force_login(admin_user)
    assert 'href="/admin/"' in client.get(reverse("crm:contact_list")).content.decode()


def test_sign_out_is_a_post_and_ends_the_session(user_client):
    response = user_client.post(reverse("logout"))
    assert response.status_code == 302
    assert user_client.get(reverse("crm:contact_list")).status_code == 302


# --- lists -----------------------------------------------------------------------------------


def test_contact_list_shows_names_addresses_and_account(user_client):
    account = f.AccountFactory(name="Globex")
    f.ContactFactory(
        first_name="Ana",
        last_name="Lopez",
        account=account,
        emails=["ana@globex.example", "ana.lopez@globex.example"],
    )
    html = user_client.get(reverse("crm:contact_list")).content.decode()
    assert "Ana Lopez" in html
    assert "ana@globex.example" in html and "ana.lopez@globex.example" in html
    assert "Globex" in html


def test_account_list_shows_domains(user_client):
    f.AccountFactory(name="Initech", domains=["initech.example", "initech.test"])
    html = user_client.get(reverse("crm:account_list")).content.decode()
    assert "Initech" in html and "initech.example" in html and "initech.test" in html


def test_lead_list_shows_status_badge(user_client):
    f.LeadFactory(first_name="Lee", last_name="Ng", status=Lead.Status.QUALIFIED)
    html = user_client.get(reverse("crm:lead_list")).content.decode()
    assert "Lee Ng" in html
    assert 'data-value="qualified">Qualified</span>' in html


def test_ticket_list_shows_reference_status_and_priority(user_client):
    ticket = f.TicketFactory(subject="Printer on fire", priority=Ticket.Priority.URGENT)
    html = user_client.get(reverse("crm:ticket_list")).content.decode()
    assert ticket.reference in html and "Printer on fire" in html
    assert 'data-value="urgent">Urgent</span>' in html
    assert 'data-value="open">Open</span>' in html


def test_opportunity_list_shows_reference_stage_and_amount(user_client):
    opportunity = f.OpportunityFactory(
        name="Big deal", amount=Decimal("12500.00"), stage=Opportunity.Stage.PROPOSAL
    )
    html = user_client.get(reverse("crm:opportunity_list")).content.decode()
    assert opportunity.reference in html and "Big deal" in html
    assert "12,500.00" in html
    assert 'data-value="proposal">Proposal</span>' in html


@pytest.mark.parametrize("name", ["account", "contact", "lead", "ticket", "opportunity"])
def test_empty_lists_invite_to_create_the_first_record(user_client, name):
    html = user_client.get(reverse(f"crm:{name}_list")).content.decode()
    assert " yet</div>" in html
    assert reverse(f"crm:{name}_create") in html


def test_lists_paginate(user_client, settings):
    settings.RELAY_PAGE_SIZE = 5
    for n in range(12):
        f.ContactFactory(first_name="Person", last_name=f"{n:02d}")
    first = user_client.get(reverse("crm:contact_list")).content.decode()
    assert "Person 00" in first and "Person 04" in first and "Person 05" not in first
    assert "1–5 of 12" in first
    third = user_client.get(reverse("crm:contact_list"), {"page": 3}).content.decode()
    assert "Person 10" in third and "Person 11" in third and "Person 09" not in third
    # A page number past the end shows the last page rather than an error.
    assert (
        "Person 11" in user_client.get(reverse("crm:contact_list"), {"page": 99}).content.decode()
    )


def test_lead_list_filters_by_status(user_client):
    f.LeadFactory(first_name="Nina", status=Lead.Status.NEW)
    f.LeadFactory(first_name="Lola", status=Lead.Status.LOST)
    html = user_client.get(reverse("crm:lead_list"), {"status": "lost"}).content.decode()
    assert "Lola" in html and "Nina" not in html


def test_htmx_search_returns_only_the_results(user_client):
    f.ContactFactory(first_name="Ana", last_name="Lopez")
    response = user_client.get(
        reverse("crm:contact_list"),
        {"q": "ana"},
        headers={"HX-Request": "true", "HX-Target": "results"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results"')
    assert "Ana Lopez" in html
    assert "<html" not in html and 'role="search"' not in html and "main-nav" not in html


# --- details ---------------------------------------------------------------------------------


def _assert_email_tab(html, record_type, pk):
    # The Timeline (mail and notes, docs/product.md §7.4) is the first tab, Email the second.
    assert ">Timeline</button>" in html and ">Email</a>" in html
    assert 'id="timeline"' in html
    assert f'hx-get="{reverse("inbox:email_tab", args=[record_type, pk])}"' in html


def test_contact_detail(user_client):
    account = f.AccountFactory(name="Globex")
    contact = f.ContactFactory(
        first_name="Ana",
        last_name="Lopez",
        title="CTO",
        account=account,
        emails=["ana@globex.example", "a.lopez@globex.example"],
    )
    ticket = f.TicketFactory(subject="Broken login", contact=contact)
    html = user_client.get(contact.get_absolute_url()).content.decode()
    assert "Ana Lopez" in html and "CTO" in html and "Globex" in html
    assert "ana@globex.example" in html and "a.lopez@globex.example" in html
    assert ticket.reference in html
    _assert_email_tab(html, "contact", contact.pk)


def test_account_detail(user_client):
    account = f.AccountFactory(name="Initech", domains=["initech.example"])
    f.ContactFactory(first_name="Peter", last_name="Gibbons", account=account)
    opportunity = f.OpportunityFactory(name="Upgrade", account=account)
    html = user_client.get(account.get_absolute_url()).content.decode()
    assert "Initech" in html and "initech.example" in html and "Peter Gibbons" in html
    assert opportunity.reference in html
    _assert_email_tab(html, "account", account.pk)


def test_lead_detail_offers_conversion(user_client):
    lead = f.LeadFactory(
        first_name="Lee", last_name="Ng", company_name="Hooli", emails=["lee@hooli.example"]
    )
    html = user_client.get(lead.get_absolute_url()).content.decode()
    assert "Lee Ng" in html and "Hooli" in html and "lee@hooli.example" in html
    assert reverse("crm:lead_convert", args=[lead.pk]) in html
    _assert_email_tab(html, "lead", lead.pk)


def test_ticket_detail(user_client, owner):
    account = f.AccountFactory(name="Globex")
    ticket = f.TicketFactory(
        subject="VPN down",
        account=account,
        assignee=owner,
        priority=Ticket.Priority.HIGH,
        description="Since Monday",
    )
    html = user_client.get(ticket.get_absolute_url()).content.decode()
    assert ticket.reference in html and "VPN down" in html and "Globex" in html
    assert "Olivia Owner" in html and "Since Monday" in html
    assert 'data-value="high">High</span>' in html
    _assert_email_tab(html, "ticket", ticket.pk)


def test_opportunity_detail(user_client):
    opportunity = f.OpportunityFactory(
        name="Renewal", amount=Decimal("900.50"), close_date=dt.date(2027, 3, 1)
    )
    html = user_client.get(opportunity.get_absolute_url()).content.decode()
    assert opportunity.reference in html and "Renewal" in html and "900.50" in html
    assert "1 Mar 2027" in html
    _assert_email_tab(html, "opportunity", opportunity.pk)


@pytest.mark.parametrize("name", ["account", "contact", "lead", "ticket", "opportunity"])
def test_missing_record_is_404(user_client, name):
    assert user_client.get(reverse(f"crm:{name}_detail", args=[999999])).status_code == 404
    assert user_client.get(reverse(f"crm:{name}_update", args=[999999])).status_code == 404
    assert user_client.get(reverse(f"crm:{name}_delete", args=[999999])).status_code == 404


# --- create ----------------------------------------------------------------------------------


def test_create_contact_with_several_addresses(user_client):
    account = f.AccountFactory(name="Globex")
    response = user_client.post(
        reverse("crm:contact_create"),
        {
            "first_name": "Ana",
            "last_name": "Lopez",
            "title": "",
            "phone": "",
            "account": account.pk,
            "emails": "Ana@Globex.example\nana.lopez@globex.example, ",
        },
        follow=True,
    )
    contact = Contact.objects.get()
    assert contact.account == account
    assert sorted(contact.emails.values_list("email", flat=True)) == [
        "ana.lopez@globex.example",
        "ana@globex.example",
    ]
    assert response.redirect_chain[-1][0] == contact.get_absolute_url()
    assert "Contact “Ana Lopez” created." in response.content.decode()


def test_create_account_with_domains(user_client, owner):
    response = user_client.post(
        reverse("crm:account_create"),
        {
            "name": "Initech",
            "website": "https://initech.example",
            "phone": "",
            "owner": owner.pk,
            "domains": "initech.example\nINITECH.test",
        },
    )
    account = Account.objects.get()
    assert response["Location"] == account.get_absolute_url()
    assert set(account.domains.values_list("domain", flat=True)) == {
        "initech.example",
        "initech.test",
    }
    assert account.owner == owner


def test_create_lead(user_client):
    user_client.post(
        reverse("crm:lead_create"),
        {
            "first_name": "Lee",
            "last_name": "Ng",
            "company_name": "Hooli",
            "phone": "",
            "status": "contacted",
            "owner": "",
            "emails": "lee@hooli.example",
        },
    )
    lead = Lead.objects.get()
    assert lead.status == Lead.Status.CONTACTED
    assert list(lead.emails.values_list("email", flat=True)) == ["lee@hooli.example"]


def test_create_ticket_takes_the_next_reference(user_client, owner):
    existing = f.TicketFactory()
    contact = f.ContactFactory()
    response = user_client.post(
        reverse("crm:ticket_create"),
        {
            "subject": "Cannot log in",
            "description": "",
            "status": "open",
            "priority": "high",
            "account": "",
            "contact": contact.pk,
            "assignee": owner.pk,
        },
        follow=True,
    )
    ticket = Ticket.objects.get(subject="Cannot log in")
    assert ticket.number == existing.number + 1
    assert ticket.contact == contact and ticket.assignee == owner
    assert ticket.reference in response.content.decode()


def test_create_opportunity(user_client):
    account = f.AccountFactory()
    user_client.post(
        reverse("crm:opportunity_create"),
        {
            "name": "Expansion",
            "stage": "negotiation",
            "amount": "1234.50",
            "close_date": "2027-01-31",
            "account": account.pk,
            "contact": "",
            "owner": "",
        },
    )
    opportunity = Opportunity.objects.get()
    assert opportunity.reference == f"OPP-{opportunity.number}"
    assert opportunity.amount == Decimal("1234.50")
    assert opportunity.close_date == dt.date(2027, 1, 31)
    assert opportunity.account == account


@pytest.mark.parametrize("name", ["account", "contact", "lead", "ticket", "opportunity"])
def test_create_forms_render(user_client, name):
    response = user_client.get(reverse(f"crm:{name}_create"))
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in response.content.decode()


# --- edit ------------------------------------------------------------------------------------


def test_edit_contact_replaces_addresses(user_client):
    contact = f.ContactFactory(
        first_name="Ana", last_name="Lopez", emails=["old@globex.example", "keep@globex.example"]
    )
    form_html = user_client.get(reverse("crm:contact_update", args=[contact.pk])).content.decode()
    assert "old@globex.example\nkeep@globex.example" in form_html or (
        "keep@globex.example" in form_html and "old@globex.example" in form_html
    )
    user_client.post(
        reverse("crm:contact_update", args=[contact.pk]),
        {
            "first_name": "Ana",
            "last_name": "López",
            "title": "",
            "phone": "",
            "account": "",
            "emails": "keep@globex.example\nnew@globex.example",
        },
    )
    contact.refresh_from_db()
    assert contact.last_name == "López"
    assert sorted(contact.emails.values_list("email", flat=True)) == [
        "keep@globex.example",
        "new@globex.example",
    ]


def test_edit_account_domains(user_client):
    account = f.AccountFactory(name="Initech", domains=["initech.example"])
    user_client.post(
        reverse("crm:account_update", args=[account.pk]),
        {"name": "Initech Inc", "website": "", "phone": "", "owner": "", "domains": "initech.com"},
    )
    account.refresh_from_db()
    assert account.name == "Initech Inc"
    assert list(account.domains.values_list("domain", flat=True)) == ["initech.com"]


def test_edit_lead(user_client):
    lead = f.LeadFactory(emails=["lee@hooli.example"])
    user_client.post(
        reverse("crm:lead_update", args=[lead.pk]),
        {
            "first_name": "Lee",
            "last_name": "Ng",
            "company_name": "Hooli",
            "phone": "",
            "status": "qualified",
            "owner": "",
            "emails": "",
        },
    )
    lead.refresh_from_db()
    assert lead.status == Lead.Status.QUALIFIED
    assert not lead.emails.exists()


def test_edit_ticket_keeps_its_reference(user_client):
    ticket = f.TicketFactory(subject="Old")
    number = ticket.number
    user_client.post(
        reverse("crm:ticket_update", args=[ticket.pk]),
        {
            "subject": "New subject",
            "description": "",
            "status": "resolved",
            "priority": "low",
            "account": "",
            "contact": "",
            "assignee": "",
        },
    )
    ticket.refresh_from_db()
    assert (ticket.subject, ticket.status, ticket.number) == ("New subject", "resolved", number)


def test_edit_opportunity(user_client):
    opportunity = f.OpportunityFactory(name="Old")
    user_client.post(
        reverse("crm:opportunity_update", args=[opportunity.pk]),
        {
            "name": "Won it",
            "stage": "won",
            "amount": "10",
            "close_date": "",
            "account": "",
            "contact": "",
            "owner": "",
        },
    )
    opportunity.refresh_from_db()
    assert (opportunity.name, opportunity.stage, opportunity.amount) == (
        "Won it",
        "won",
        Decimal("10"),
    )


@pytest.mark.parametrize("name", ["account", "contact", "lead", "ticket", "opportunity"])
def test_edit_forms_show_current_values(user_client, name):
    record = {
        "account": lambda: f.AccountFactory(name="Current name"),
        "contact": lambda: f.ContactFactory(first_name="Current name"),
        "lead": lambda: f.LeadFactory(first_name="Current name"),
        "ticket": lambda: f.TicketFactory(subject="Current name"),
        "opportunity": lambda: f.OpportunityFactory(name="Current name"),
    }[name]()
    html = user_client.get(reverse(f"crm:{name}_update", args=[record.pk])).content.decode()
    assert 'value="Current name"' in html


# --- delete ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "model"),
    [
        ("account", lambda: f.AccountFactory(domains=["gone.example"]), Account),
        ("contact", lambda: f.ContactFactory(emails=["gone@x.example"]), Contact),
        ("lead", lambda: f.LeadFactory(emails=["gone@x.example"]), Lead),
        ("ticket", f.TicketFactory, Ticket),
        ("opportunity", f.OpportunityFactory, Opportunity),
    ],
)
def test_delete_asks_then_deletes_on_post(user_client, name, make, model):
    record = make()
    url = reverse(f"crm:{name}_delete", args=[record.pk])
    confirm = user_client.get(url)
    assert confirm.status_code == 200
    assert "This cannot be undone." in confirm.content.decode()
    assert model.objects.filter(pk=record.pk).exists()  # GET never deletes
    response = user_client.post(url, follow=True)
    assert not model.objects.filter(pk=record.pk).exists()
    assert response.redirect_chain[-1][0] == reverse(f"crm:{name}_list")
    assert "deleted." in response.content.decode()
    assert not AccountDomain.objects.exists()
    assert not ContactEmail.objects.exists() and not LeadEmail.objects.exists()


def test_new_link_on_an_account_starts_a_record_linked_to_it(user_client):
    account = f.AccountFactory(name="Globex")
    detail = user_client.get(account.get_absolute_url()).content.decode()
    link = f"{reverse('crm:ticket_create')}?account={account.pk}"
    assert link in detail
    form = user_client.get(link).content.decode()
    assert f'<option value="{account.pk}" selected>Globex</option>' in form
    # A query string never pre-selects anything on an existing record's form.
    ticket = f.TicketFactory()
    edit = user_client.get(f"{reverse('crm:ticket_update', args=[ticket.pk])}?account={account.pk}")
    assert f'<option value="{account.pk}" selected>' not in edit.content.decode()


def test_a_domain_claimed_by_two_accounts_is_flagged(user_client):
    initech = f.AccountFactory(name="Initech", domains=["shared.example", "initech.example"])
    response = user_client.post(
        reverse("crm:account_create"),
        {"name": "Initrode", "domains": "shared.example"},
        follow=True,
    )
    html = response.content.decode()
    warning = "shared.example is also claimed by Initech: mail from it is not filed automatically."
    assert warning in html  # the toast after saving, and the note on the page
    assert 'data-shared-domain="shared.example"' in html
    detail = user_client.get(initech.get_absolute_url()).content.decode()
    assert "shared.example is also claimed by" in detail and "Initrode" in detail
    assert 'data-shared-domain="initech.example"' not in detail


def test_admin_link_only_for_staff_the_admin_site_has_something_for(client):
    from django.contrib.auth.models import Permission

    url = reverse("crm:contact_list")
    bare = f.UserFactory(username="bare-staff", is_staff=True)
    client.force_login(bare)
    assert 'href="/admin/"' not in client.get(url).content.decode()
    bare.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client.force_login(type(bare).objects.get(pk=bare.pk))  # permissions are cached per object
    assert 'href="/admin/"' in client.get(url).content.decode()
    client.force_login(f.UserFactory(username="boss", is_staff=True, is_superuser=True))
    assert 'href="/admin/"' in client.get(url).content.decode()


def test_a_very_long_search_says_it_was_shortened(user_client):
    f.ContactFactory(first_name="Ana", last_name="Lopez")
    url = reverse("crm:contact_list")
    html = user_client.get(url, {"q": "Ana " + "x" * 3000}).content.decode()
    assert "Your search was shortened to its first 200 characters." in html
    html = user_client.get(url, {"q": "Ana"}).content.decode()
    assert "shortened" not in html


def test_favicon_ico_is_the_apps_icon_for_anyone(client):
    """Browsers ask for /favicon.ico where a page names no icon (the admin site): the app's
    icon, not a 404 logged in the console of every such page."""
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith(".svg")
    assert "relay" in response["Location"]
