"""The contact and lead forms warn before saving a look-alike, in headless Chromium at a laptop
(1440x900) and a phone (390x844): each look-alike linked with why it matched, nothing saved
yet, and "Create anyway" saves (docs/product.md §1.2, crm/selectors.py `possible_duplicates`).

Screenshots go to $RELAY_SCREENSHOTS (when set); the console must stay clean."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from crm.models import Contact, Lead
from tests import factories as f
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def _sign_in(page, live_server, path):
    f.UserFactory(username="olivia")
    sign_in(page, live_server, "olivia", path)
    page.wait_for_load_state("load")


def _clean(page, console_messages):
    errors = [m for m in console_messages if m.startswith(("error", "pageerror"))]
    assert not errors, "\n".join(console_messages)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("screen", SCREENS)
def test_contact_form_warns_of_the_same_address_then_creates_anyway(
    page, live_server, shots, console_messages, screen
):
    page.set_viewport_size(SCREENS[screen])
    ana = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@globex.example"])
    _sign_in(page, live_server, "/contacts/new/")
    page.get_by_label("First name").fill("Anna")
    page.get_by_label("Last name").fill("Lopes")
    page.get_by_label("Email addresses").fill("ANA@globex.example")
    page.get_by_role("button", name="Create contact").click()

    warning = page.locator("#duplicates")
    expect(warning).to_contain_text("This looks like a contact that is already in Relay")
    expect(warning).to_contain_text("also has ana@globex.example")
    expect(warning.get_by_role("link", name="Ana Lopez")).to_have_attribute(
        "href", ana.get_absolute_url()
    )
    expect(warning).to_contain_text("Nothing was saved yet.")
    # What was typed is kept.
    expect(page.get_by_label("First name")).to_have_value("Anna")
    assert Contact.objects.count() == 1
    shot(page, shots, f"{screen}-contact-duplicate-warning.png")

    page.get_by_role("button", name="Create anyway").click()
    expect(page.get_by_role("heading", name="Anna Lopes")).to_be_visible()
    assert Contact.objects.count() == 2
    _clean(page, console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_lead_form_warns_of_the_same_name_at_the_same_company(
    page, live_server, shots, console_messages, screen
):
    page.set_viewport_size(SCREENS[screen])
    bo = f.LeadFactory(first_name="Bo", last_name="Berg", company_name="Initech")
    f.LeadFactory(first_name="Bo", last_name="Berg", company_name="Hooli")
    _sign_in(page, live_server, "/leads/new/")
    page.get_by_label("First name").fill("bo")
    page.get_by_label("Last name").fill("Berg")
    page.get_by_label("Company name").fill("initech")
    page.get_by_role("button", name="Create lead").click()

    warning = page.locator("#duplicates")
    expect(warning).to_contain_text("This looks like a lead that is already in Relay")
    expect(warning.get_by_role("listitem")).to_have_count(1)
    expect(warning.get_by_role("listitem")).to_contain_text("same name, at Initech")
    expect(warning.get_by_role("link", name="Bo Berg")).to_have_attribute(
        "href", bo.get_absolute_url()
    )
    assert Lead.objects.count() == 2
    shot(page, shots, f"{screen}-lead-duplicate-warning.png")

    # Cancel goes back to the list, with nothing made.
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", name="Leads")).to_be_visible()
    assert Lead.objects.count() == 2
    _clean(page, console_messages)
