"""All mailboxes in headless Chromium at a laptop (1440x900) and a phone (390x844): pick
All mailboxes in the sidebar, search, see results from both of the user's mailboxes (each
naming its mailbox, an archived one included) and none from a colleague's personal mailbox,
open one (docs/product.md §7.2). Screenshots go to RELAY_SCREENSHOTS (when set); the
console must stay clean."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = {"1440": {"width": 1440, "height": 900}, "390": {"width": 390, "height": 844}}


@pytest.fixture
def world():
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    personal = f.MailboxFactory(
        owner=olivia, email_address="olivia@relay.test", display_name="Olivia"
    )
    shared = f.SharedMailboxFactory(email_address="support@relay.test", display_name="Support")
    shared.granted_users.add(olivia)
    colleague = f.MailboxFactory(
        owner=f.UserFactory(username="tom"), email_address="tom@relay.test", display_name="Tom"
    )
    mine, team, theirs = (mailkit.folders(m) for m in (personal, shared, colleague))
    for day in range(6):
        mailkit.conversation(
            team["inbox"], subject=f"Order {day} shipped", sender=f"p{day}@customer.example"
        )
    mailkit.conversation(
        mine["inbox"],
        subject="Invoice for Globex",
        sender="ana@globex.example",
        name="Ana Lopez",
        day=10,
    )
    archived = mailkit.conversation(
        team["archive"],
        subject="Globex printer broken",
        sender="bob@globex.example",
        name="Bob Stone",
        day=11,
    )
    mailkit.conversation(theirs["inbox"], subject="Globex salary review", day=12)
    return {"archived": archived[-1]}


@pytest.mark.parametrize("screen", SCREENS)
def test_search_all_mailboxes_and_open_a_result(
    page, live_server, shots, console_messages, world, screen
):
    page.set_viewport_size(SCREENS[screen])
    sign_in(page, live_server, "olivia", "/inbox/")
    page.wait_for_load_state("load")

    page.locator("[data-all-mailboxes]").click()
    expect(page.locator(".inbox-list-head")).to_contain_text("All mailboxes")
    rows = page.locator("#thread-list .inbox-thread")
    expect(rows).to_have_count(8)

    page.get_by_placeholder("Search all mailboxes").fill("globex")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Globex printer broken")
    expect(rows.nth(0).locator(".inbox-mailbox-tag")).to_have_text("Support")
    expect(rows.nth(1)).to_contain_text("Invoice for Globex")
    expect(rows.nth(1).locator(".inbox-mailbox-tag")).to_have_text("Olivia")
    expect(page.locator("#thread-list")).not_to_contain_text("salary")
    expect(page).to_have_url(re.compile(r"mailbox=all.*q=globex"))
    shot(page, shots, f"all-mailboxes-search-{screen}.png")

    rows.nth(0).locator(".inbox-thread-link").click()
    expect(page).to_have_url(re.compile(rf"/inbox/conversations/{world['archived'].pk}/"))
    expect(page.locator(".inbox-conversation-head h2")).to_have_text("Globex printer broken")
    expect(rows).to_have_count(2)  # the search's list stays beside it
    # The mail itself is there: its frame shows the body, at a readable height.
    frame = page.locator("#conversation .relay-message-frame").first
    expect(frame).to_be_visible()
    body = page.frame_locator("#conversation .relay-message-frame").first.locator("body")
    expect(body).to_contain_text(world["archived"].text_body[:20])
    box = frame.bounding_box()
    assert box["height"] > 60 and box["width"] > 200, box
    shot(page, shots, f"all-mailboxes-open-{screen}.png")

    page.reload()
    expect(page.locator(".inbox-conversation-head h2")).to_have_text("Globex printer broken")
    expect(rows).to_have_count(2)
    expect(body).to_contain_text(world["archived"].text_body[:20])
    assert frame.bounding_box()["height"] > 60
    shot(page, shots, f"all-mailboxes-reloaded-{screen}.png")
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))], "\n".join(
        console_messages
    )
