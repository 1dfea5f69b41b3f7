"""Every list and detail page (and the Email tab) takes the same number of queries whether it
shows 3 rows or 300: no query per row."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
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
from inbox.models import Filing, Message
from tests import factories as f

pytestmark = pytest.mark.django_db

_numbers = itertools.count(50_000)


def _count(client, url, **headers) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, headers=headers)
    assert response.status_code == 200, url
    return len(queries)


def _add_rows(name: str, n: int, *, owner, account: Account, contact: Contact) -> None:
    """n more rows of a record type, each with the related rows its list shows."""
    if name == "account":
        accounts = Account.objects.bulk_create(
            Account(name=f"Account {i}", owner=owner) for i in range(n)
        )
        AccountDomain.objects.bulk_create(
            AccountDomain(account=a, domain=f"a{a.pk}-{k}.example")
            for a in accounts
            for k in range(2)
        )
    elif name == "contact":
        contacts = Contact.objects.bulk_create(
            Contact(first_name="C", last_name=str(i), account=account) for i in range(n)
        )
        ContactEmail.objects.bulk_create(
            ContactEmail(contact=c, email=f"c{c.pk}-{k}@x.example")
            for c in contacts
            for k in range(2)
        )
    elif name == "lead":
        leads = Lead.objects.bulk_create(
            Lead(first_name="L", last_name=str(i), owner=owner) for i in range(n)
        )
        LeadEmail.objects.bulk_create(
            LeadEmail(lead=lead, email=f"l{lead.pk}-{k}@x.example")
            for lead in leads
            for k in range(2)
        )
    elif name == "ticket":
        Ticket.objects.bulk_create(
            Ticket(
                number=next(_numbers),
                subject=f"T {i}",
                account=account,
                contact=contact,
                assignee=owner,
            )
            for i in range(n)
        )
    elif name == "opportunity":
        Opportunity.objects.bulk_create(
            Opportunity(
                number=next(_numbers),
                name=f"O {i}",
                account=account,
                contact=contact,
                owner=owner,
                close_date=dt.date(2027, 1, 1),
            )
            for i in range(n)
        )


@pytest.mark.parametrize("name", ["account", "contact", "lead", "ticket", "opportunity"])
def test_list_pages_take_the_same_queries_for_3_and_300_rows(user_client, owner, name):
    account = f.AccountFactory()
    contact = f.ContactFactory(account=account)
    existing = {"account": 1, "contact": 1}.get(name, 0)
    _add_rows(name, 3 - existing, owner=owner, account=account, contact=contact)
    url = reverse(f"crm:{name}_list")
    few = _count(user_client, url)
    _add_rows(name, 297, owner=owner, account=account, contact=contact)
    many = _count(user_client, url)
    assert few == many
    # And searching does not change the shape either.
    assert _count(user_client, f"{url}?q=1") == _count(user_client, f"{url}?q=2")


def _detail_with_related(name: str, n: int, owner):
    """A record of type `name` with n of everything its detail page lists."""
    account = f.AccountFactory(owner=owner)
    contact = f.ContactFactory(account=account)
    if name == "account":
        AccountDomain.objects.bulk_create(
            AccountDomain(account=account, domain=f"d{i}.example") for i in range(n)
        )
        _add_rows("contact", n, owner=owner, account=account, contact=contact)
        _add_rows("ticket", n, owner=owner, account=account, contact=contact)
        _add_rows("opportunity", n, owner=owner, account=account, contact=contact)
        return account
    if name == "contact":
        ContactEmail.objects.bulk_create(
            ContactEmail(contact=contact, email=f"e{i}@x.example") for i in range(n)
        )
        _add_rows("ticket", n, owner=owner, account=account, contact=contact)
        _add_rows("opportunity", n, owner=owner, account=account, contact=contact)
        return contact
    if name == "lead":
        lead = f.LeadFactory(owner=owner)
        LeadEmail.objects.bulk_create(
            LeadEmail(lead=lead, email=f"e{i}@x.example") for i in range(n)
        )
        return lead
    if name == "ticket":
        return f.TicketFactory(account=account, contact=contact, assignee=owner)
    return f.OpportunityFactory(account=account, contact=contact, owner=owner)


@pytest.mark.parametrize("name", ["account", "contact", "lead", "ticket", "opportunity"])
def test_detail_pages_take_the_same_queries_for_3_and_300_related_rows(user_client, owner, name):
    few = _count(user_client, _detail_with_related(name, 3, owner).get_absolute_url())
    many = _count(user_client, _detail_with_related(name, 300, owner).get_absolute_url())
    assert few == many


def test_converted_lead_detail_takes_a_fixed_number_of_queries(user_client, owner):
    from crm.services import lead_convert

    lead = _detail_with_related("lead", 3, owner)
    lead_convert(lead=lead)
    plain = _detail_with_related("lead", 3, owner)
    # The converted lead shows its contact and account, fetched with the lead itself.
    assert _count(user_client, lead.get_absolute_url()) == _count(
        user_client, plain.get_absolute_url()
    )


def _file_messages(n: int, *, mailbox, contact) -> None:
    messages = Message.objects.bulk_create(
        Message(
            mailbox=mailbox,
            sha256=f"{contact.pk}-{mailbox.pk}-{i}",
            subject=f"S{i}",
            from_address="x@customer.example",
            date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        )
        for i in range(n)
    )
    Filing.objects.bulk_create(
        Filing(message=m, record_type="contact", contact=contact, rule=Filing.Rule.SENDER)
        for m in messages
    )


def test_email_tab_takes_the_same_queries_for_3_and_300_messages(client, teammate, shared_mailbox):
    client.force_login(teammate)
    few_contact, many_contact = f.ContactFactory(), f.ContactFactory()
    _file_messages(3, mailbox=shared_mailbox, contact=few_contact)
    _file_messages(300, mailbox=shared_mailbox, contact=many_contact)
    urls = [reverse("inbox:email_tab", args=["contact", c.pk]) for c in (few_contact, many_contact)]
    few, many = (_count(client, url, HX_Request="true") for url in urls)
    assert few == many
