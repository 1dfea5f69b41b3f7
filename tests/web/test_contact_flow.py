"""A person signs in, creates a contact with two addresses through the form, opens it and
looks at its Email tab, which htmx loads from the inbox app."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from crm.models import Contact
from tests import factories as f
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _no_csp_violations(console_messages):
    assert csp_violations(console_messages) == []


def _sign_in(page, live_server):
    f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    sign_in(page, live_server, "tom", "/contacts/")  # a page that wants a signed-in user
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()
    # Visible is not ready: the deferred scripts (keyboard shortcuts, htmx handlers) run
    # just before the load event, which a loaded machine can delay past the next key.
    page.wait_for_load_state("load")


def test_create_contact_and_open_its_email_tab(page, live_server, output_path, console_messages):
    page.set_viewport_size({"width": 1280, "height": 800})
    _sign_in(page, live_server)
    shot(page, output_path, "1-contacts-empty.png")

    page.get_by_role("link", name="New contact").click()
    page.get_by_label("First name").fill("Ana")
    page.get_by_label("Last name").fill("Lopez")
    page.get_by_label("Email addresses").fill("ana@globex.example\nAna.Lopez@Globex.example")
    shot(page, output_path, "2-contact-form.png")
    page.get_by_role("button", name="Create contact").click()

    # The detail page, with the success toast.
    expect(page.get_by_role("heading", name="Ana Lopez")).to_be_visible()
    expect(page.get_by_text("Contact “Ana Lopez” created.")).to_be_visible()
    expect(page.get_by_role("link", name="ana.lopez@globex.example")).to_be_visible()
    contact = Contact.objects.get()
    assert sorted(contact.emails.values_list("email", flat=True)) == [
        "ana.lopez@globex.example",
        "ana@globex.example",
    ]
    shot(page, output_path, "3-contact-detail.png")

    with page.expect_response(lambda r: "/inbox/records/contact/" in r.url) as tab_response:
        page.get_by_role("tab", name="Email").click()
    assert tab_response.value.status == 200
    assert tab_response.value.request.headers.get("hx-request") == "true"
    expect(page.get_by_text("No email filed here yet")).to_be_visible()
    expect(page.get_by_role("tab", name="Email")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#email-pane")).to_have_class(re.compile(r"\bactive\b.*\bshow\b"))
    expect(page.locator("#details-pane")).to_be_hidden()
    shot(page, output_path, "4-email-tab.png")

    _no_csp_violations(console_messages)


def test_bad_address_keeps_the_form_and_saves_nothing(
    page, live_server, output_path, console_messages
):
    _sign_in(page, live_server)
    page.goto(f"{live_server.url}/contacts/new/")
    page.get_by_label("First name").fill("Ana")
    page.get_by_label("Email addresses").fill("ana@globex.example\nnot-an-address")
    page.get_by_role("button", name="Create contact").click()
    expect(page.get_by_text("“not-an-address” is not an email address.")).to_be_visible()
    shot(page, output_path, "form-error.png")
    assert not Contact.objects.exists()
    _no_csp_violations(console_messages)


def test_phone_layout_and_search(page, live_server, output_path, console_messages):
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, live_server)
    for n in range(3):
        f.TicketFactory(subject=f"Printer problem {n}", priority="urgent" if n else "low")
    page.goto(f"{live_server.url}/tickets/")
    # On a phone the menu folds behind the toggler and opens on a tap.
    contacts_link = page.get_by_role("link", name="Contacts")
    expect(contacts_link).to_be_hidden()
    page.get_by_role("button", name="Toggle navigation").click()
    expect(contacts_link).to_be_visible()
    # Bootstrap ignores a second tap while the menu is still sliding open.
    expect(page.locator("#main-nav")).to_have_class(re.compile(r"\bshow\b"))
    shot(page, output_path, "phone-menu.png")
    page.get_by_role("button", name="Toggle navigation").click()
    expect(contacts_link).to_be_hidden()

    # Typing a reference narrows the list without a page load (htmx swaps #results).
    page.get_by_role("searchbox").fill("TKT-1001")
    expect(page.get_by_text("1 ticket matching “TKT-1001”")).to_be_visible()
    expect(page.get_by_role("link", name="Printer problem 1")).to_be_visible()
    expect(page.get_by_role("link", name="Printer problem 0")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/tickets/\?q=TKT-1001"))
    shot(page, output_path, "phone-tickets.png")

    # The ticket's page and its Email tab fit the phone's width (no sideways scrolling).
    page.get_by_role("link", name="Printer problem 1").click()
    expect(page.get_by_role("heading", name="Printer problem 1")).to_be_visible()
    page.get_by_role("tab", name="Email").click()
    expect(page.get_by_text("No email filed here yet")).to_be_visible()
    expect(page.locator("#email-pane")).to_have_class(re.compile(r"\bshow\b"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, output_path, "phone-ticket-email.png")
    _no_csp_violations(console_messages)


def test_email_tab_of_a_record_deleted_meanwhile_says_so(
    page, live_server, output_path, console_messages
):
    _sign_in(page, live_server)
    contact = f.ContactFactory(first_name="Gone", last_name="Soon")
    page.goto(f"{live_server.url}{contact.get_absolute_url()}")
    contact.delete()  # someone else deletes it while this page is open
    page.get_by_role("tab", name="Email").click()
    # The Email tab says so (the notes panel on Details may say the same, if it loaded after).
    email = page.get_by_role("tabpanel", name="Email")
    expect(email.get_by_text("This is no longer here: it may have been deleted.")).to_be_visible()
    expect(email.get_by_role("button", name="Try again")).to_be_visible()
    shot(page, output_path, "email-tab-gone.png")
    _no_csp_violations(console_messages)
