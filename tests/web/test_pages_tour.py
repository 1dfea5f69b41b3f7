"""Every kind of page with real data in a real browser: it renders, its htmx parts load, and
the browser reports no Content Security Policy violation or script error on any of them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests import factories as f
from tests.web.helpers import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _seed():
    user = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate", is_staff=True)
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test")
    mailbox.granted_users.add(user)
    globex = f.AccountFactory(
        name="Globex Corporation",
        website="https://globex.example",
        domains=["globex.example", "globex-mail.example"],
    )
    ana = f.ContactFactory(
        first_name="Ana",
        last_name="Lopez",
        title="Head of IT",
        account=globex,
        emails=["ana@globex.example", "ana.lopez@globex-mail.example"],
    )
    f.ContactFactory(
        first_name="Bo", last_name="Chen", account=globex, emails=["bo@globex.example"]
    )
    ticket = f.TicketFactory(
        subject="VPN drops every hour since the upgrade",
        account=globex,
        contact=ana,
        assignee=user,
        priority="urgent",
        description="Started Monday.\nAffects all staff.",
    )
    f.TicketFactory(subject="Invoice address change", account=globex, status="pending")
    f.TicketFactory(subject="Password reset for Bo", status="resolved", priority="low")
    f.OpportunityFactory(
        name="Globex renewal 2027",
        account=globex,
        contact=ana,
        stage="negotiation",
        amount=Decimal("48000"),
        close_date=dt.date(2027, 2, 28),
        owner=user,
    )
    f.OpportunityFactory(name="Extra seats", account=globex, stage="won", amount=Decimal("3200.50"))
    lead = f.LeadFactory(
        first_name="Lee",
        last_name="Ng",
        company_name="Hooli",
        status="qualified",
        emails=["lee@hooli.example"],
        owner=user,
    )
    f.LeadFactory(first_name="Mia", last_name="Wong", company_name="Pied Piper")
    for day, subject in ((2, "Re: VPN drops every hour"), (3, "VPN drops every hour")):
        message = f.MessageFactory(
            mailbox=mailbox,
            subject=subject,
            from_name="Ana Lopez",
            from_address="ana@globex.example",
            date=dt.datetime(2026, 11, day, 9, 30, tzinfo=dt.UTC),
            snippet="Hi team, the VPN keeps dropping every hour since the upgrade on Monday. "
            "Could you have a look before the board meeting?",
        )
        f.FilingFactory(message=message, contact=ana)
        f.FilingFactory(message=message, ticket=ticket, rule="subject_reference")
    return {"account": globex, "contact": ana, "ticket": ticket, "lead": lead}


def test_every_page_renders_cleanly(page, live_server, output_path, console_messages):
    records = _seed()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("tom")
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    shot(page, output_path, "login.png")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox/"))  # signing in lands on the Inbox
    # Tom is staff with no admin permission: the admin site has nothing for him, no link.
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)

    for name in ("contacts", "accounts", "leads", "tickets", "opportunities"):
        page.goto(f"{live_server.url}/{name}/")
        expect(page.locator("#results table")).to_be_visible()
        shot(page, output_path, f"list-{name}.png")

    for kind, record in records.items():
        page.goto(f"{live_server.url}{record.get_absolute_url()}")
        shot(page, output_path, f"detail-{kind}.png")
    # A direct link to the Email tab opens it; both filed messages are there, newest first.
    page.goto(f"{live_server.url}{records['ticket'].get_absolute_url()}#email")
    expect(page.locator("#email-pane .relay-message")).to_have_count(2)
    expect(page.locator("#email-pane")).to_have_class(re.compile(r"\bshow\b"))
    expect(page.locator("#email-pane .relay-message-subject").first).to_have_text(
        "VPN drops every hour"
    )
    shot(page, output_path, "email-tab-ticket.png")

    page.goto(f"{live_server.url}/tickets/{records['ticket'].pk}/edit/")
    shot(page, output_path, "form-ticket.png")
    page.goto(f"{live_server.url}/leads/{records['lead'].pk}/convert/")
    shot(page, output_path, "lead-convert.png")
    page.goto(f"{live_server.url}/accounts/{records['account'].pk}/delete/")
    shot(page, output_path, "delete-account.png")
    page.goto(f"{live_server.url}/me/addresses/")
    page.get_by_label("My email addresses").fill("tom@relay.test\ntom.t@relay.example")
    page.get_by_role("button", name="Save addresses").click()
    expect(page.get_by_text("Your email addresses were saved.")).to_be_visible()
    shot(page, output_path, "my-addresses.png")

    # The user menu signs out with a POST and lands on the sign-in page.
    page.get_by_role("button", name="Tom Teammate").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Relay")).to_be_visible()

    problems = [
        m
        for m in console_messages
        if "Content Security Policy" in m or m.startswith(("error", "pageerror"))
    ]
    assert problems == []
