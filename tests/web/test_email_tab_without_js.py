"""A record's Email tab with JavaScript turned off (docs/product.md §7.4), on a laptop
(1440x900) and a phone (390x844): the tab's link opens it as a page, it is read and paged with
plain links, and Qualify on one entry files that message on another record through plain
forms. Screenshots go to $RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from inbox.models import Filing
from tests import factories as f
from tests.web.helpers import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.mark.parametrize("size", SIZES)
def test_email_tab_reads_pages_and_qualifies_without_javascript(
    browser, live_server, settings, shots, size
):
    settings.RELAY_PAGE_SIZE = 2
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test")
    mailbox.granted_users.add(tom)
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@acme.example"])
    globex = f.AccountFactory(name="Globex Industries")
    subjects = ["Quote request", "Re: Quote request", "Signed order", "Delivery date?"]
    messages = {}
    for day, subject in enumerate(subjects, start=1):
        message = f.MessageFactory(
            mailbox=mailbox,
            subject=subject,
            date=dt.datetime(2026, 3, day, 9, 0, tzinfo=dt.UTC),
            from_name="Ana Lopez",
            from_address="ana@acme.example",
        )
        f.FilingFactory(message=message, contact=contact)
        messages[subject] = message

    context = browser.new_context(java_script_enabled=False, viewport=SIZES[size])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/?next={contact.get_absolute_url()}")
    page.get_by_label("Username").fill("tom")
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Ana Lopez")).to_be_visible()

    # The tab's link opens the Email tab as a page: newest first, two to a page.
    page.get_by_role("tab", name="Email").click()
    expect(page).to_have_url(re.compile(r"/records/contact/\d+/email/$"))
    entries = page.locator("#email-tab-content .relay-message")
    expect(entries).to_have_count(2)
    expect(entries.nth(0)).to_contain_text("Delivery date?")
    expect(entries.nth(1)).to_contain_text("Signed order")
    expect(page.locator("#email-tab-content")).to_contain_text("4 messages filed here")
    shot(page, shots, f"email-nojs-01-tab-{size}.png")
    page.get_by_role("navigation", name="Email pages").get_by_role("link", name="2").click()
    expect(page).to_have_url(re.compile(r"\?page=2$"))
    expect(entries).to_have_count(2)
    expect(entries.nth(0)).to_contain_text("Re: Quote request")
    expect(entries.nth(1)).to_contain_text("Quote request")
    shot(page, shots, f"email-nojs-02-page-2-{size}.png")

    # Qualify on one entry: a page; search and Link are plain forms.
    entries.nth(0).get_by_role("link", name="Qualify").click()
    expect(page.get_by_role("heading", name="Filed on")).to_be_visible()
    page.get_by_role("searchbox", name="Find a record").fill("Globex")
    page.get_by_role("searchbox", name="Find a record").press("Enter")
    page.get_by_role("button", name="File on Globex Industries").click()
    expect(page.locator(".inbox-chip", has_text="Globex Industries")).to_be_visible()
    shot(page, shots, f"email-nojs-03-qualified-{size}.png")
    target = messages["Re: Quote request"]
    assert Filing.objects.filter(message=target, account=globex, unlinked_at__isnull=True).exists()
    assert not Filing.objects.filter(account=globex).exclude(message=target).exists()
    assert errors == []
    context.close()
