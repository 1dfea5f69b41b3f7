"""A shared inbox run by a team, in headless Chromium (docs/product.md §7.8): assign to me,
Done, snooze, assign to someone else, the views and their live counts, bulk actions from the
list, the keyboard shortcuts, and reading that is personal (two users side by side); on a
laptop (1440x900) and a phone (390x844). Every step saves a screenshot (to RELAY_SCREENSHOTS when it
is set) and the console must show no CSP violation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from inbox.models import Thread, ThreadEvent
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def shots(shots) -> str:
    """The shared screenshot folder (tests/web/conftest.py), in a folder of its own."""
    folder = Path(shots) / "team"
    folder.mkdir(exist_ok=True)
    return str(folder)


@pytest.fixture
def team_world():
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    sofia = f.UserFactory(username="sofia", first_name="Sofia", last_name="Silva")
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test", display_name="Support")
    mailbox.granted_users.add(tom, sofia)
    folders = mailkit.folders(mailbox)
    for day, (subject, sender, name) in enumerate(
        [
            ("Printer jams again", "ana@globex.example", "Ana Lopez"),
            ("Invoice INV-2291 is wrong", "billing@hooli.example", "Hooli Billing"),
            ("Quote for 40 widgets", "maria@umbrella.example", "Maria Santos"),
            ("Password reset does not arrive", "bob@initech.example", "Bob Porter"),
        ]
    ):
        mailkit.conversation(
            folders["inbox"], subject=subject, sender=sender, name=name, day=day, seen=False
        )
    return {"tom": tom, "sofia": sofia, "mailbox": mailbox}


def _sign_in(page, live_server, username="tom"):
    sign_in(page, live_server, username, "/inbox/")
    expect(page.locator("#thread-list")).to_be_visible()


def _row(page, subject):
    return page.locator(".inbox-thread", has_text=subject)


def _count(page, view):
    return page.locator(f'#inbox-views [data-view="{view}"] .inbox-view-count')


def _open(page, subject):
    _row(page, subject).locator(".inbox-thread-link").click()
    expect(page.locator("#conversation").get_by_role("heading", name=subject)).to_be_visible()


def test_assign_done_snooze_with_buttons_and_keys(
    page, live_server, shots, console_messages, team_world
):
    page.set_viewport_size(LAPTOP)
    _sign_in(page, live_server)
    expect(_count(page, "open")).to_have_text("4")
    expect(_count(page, "unassigned")).to_have_text("4")
    expect(_count(page, "mine")).to_have_text("0")
    shot(page, shots, "01-laptop-views.png")

    # Assign to me with the button: the state bar and the Mine count follow.
    _open(page, "Printer jams again")
    state = page.locator("#conversation .inbox-state")
    expect(state).to_contain_text("Unassigned")
    state.get_by_role("button", name="Assign to me").click()
    expect(state.locator("[data-conversation-assignee]")).to_contain_text("Tom Teammate")
    expect(page.locator("#conversation .inbox-event")).to_contain_text("Tom Teammate took this")
    expect(_count(page, "mine")).to_have_text("1")
    expect(_count(page, "unassigned")).to_have_text("3")
    shot(page, shots, "02-laptop-assigned.png")

    # e: Done. The list shows it Done, the counts move.
    page.keyboard.press("e")
    expect(state.locator("[data-conversation-status]")).to_have_text("Done")
    expect(page.locator("#conversation .inbox-event").last).to_contain_text("Done by Tom")
    expect(_count(page, "done")).to_have_text("1")
    expect(_count(page, "open")).to_have_text("3")
    expect(_row(page, "Printer jams again").locator(".inbox-status")).to_have_text("Done")
    shot(page, shots, "03-laptop-done.png")

    # i on another conversation: assign to me; h: snooze until tomorrow.
    _open(page, "Invoice INV-2291 is wrong")
    page.keyboard.press("i")
    expect(state.locator("[data-conversation-assignee]")).to_contain_text("Tom Teammate")
    page.keyboard.press("h")
    menu = page.locator("#conversation .dropdown-menu[aria-label='Snooze until']")
    expect(menu).to_be_visible()
    shot(page, shots, "04-laptop-snooze-menu.png")
    menu.get_by_role("button", name=re.compile("^Tomorrow")).click()
    expect(state.locator("[data-conversation-status]")).to_contain_text("Snoozed until")
    expect(_count(page, "snoozed")).to_have_text("1")
    expect(_count(page, "mine")).to_have_text("0")

    # #: assign to someone else.
    page.keyboard.press("#")
    assign = page.locator("#conversation .dropdown-menu[aria-label='Assign to']")
    expect(assign).to_be_visible()
    assign.get_by_role("button", name="Sofia Silva").click()
    expect(state.locator("[data-conversation-assignee]")).to_contain_text("Sofia Silva")
    expect(page.locator("#conversation .inbox-event").last).to_contain_text(
        "Tom Teammate assigned this to Sofia Silva"
    )
    expect(_row(page, "Invoice INV-2291 is wrong").locator(".inbox-owner-tag")).to_have_text(
        "Sofia"
    )
    shot(page, shots, "05-laptop-timeline.png")

    # The Done view lists what is done, across folders.
    page.locator('#inbox-views [data-view="done"]').click()
    expect(page.locator(".inbox-thread")).to_have_count(1)
    expect(page.locator(".inbox-list-head")).to_contain_text("Done")
    shot(page, shots, "06-laptop-done-view.png")

    thread = Thread.objects.get(subject="Invoice INV-2291 is wrong")
    assert thread.status == "snoozed" and thread.assignee == team_world["sofia"]
    assert ThreadEvent.objects.filter(thread=thread).count() == 3
    assert csp_violations(console_messages) == []


def test_bulk_assign_and_close_from_the_list(
    page, live_server, shots, console_messages, team_world
):
    page.set_viewport_size(LAPTOP)
    _sign_in(page, live_server)
    bulk = page.locator("#bulk-form")
    expect(bulk).to_be_hidden()
    _row(page, "Quote for 40 widgets").locator(".inbox-thread-check").check()
    _row(page, "Password reset does not arrive").locator(".inbox-thread-check").check()
    expect(bulk).to_be_visible()
    expect(bulk.locator("[data-bulk-count]")).to_have_text("2")
    shot(page, shots, "07-laptop-bulk-bar.png")

    bulk.get_by_label("Assign to").select_option(label="Sofia Silva")
    bulk.get_by_role("button", name="Assign", exact=True).click()
    expect(_row(page, "Quote for 40 widgets").locator(".inbox-owner-tag")).to_have_text("Sofia")
    expect(bulk).to_be_hidden()  # the ticks are cleared once the action ran

    _row(page, "Quote for 40 widgets").locator(".inbox-thread-check").check()
    _row(page, "Printer jams again").locator(".inbox-thread-check").check()
    bulk.get_by_role("button", name="Done").click()
    expect(_count(page, "done")).to_have_text("2")
    expect(_count(page, "open")).to_have_text("2")
    expect(_row(page, "Printer jams again").locator(".inbox-status")).to_have_text("Done")
    shot(page, shots, "08-laptop-bulk-done.png")
    assert set(Thread.objects.filter(status="done").values_list("subject", flat=True)) == {
        "Quote for 40 widgets",
        "Printer jams again",
    }
    assert csp_violations(console_messages) == []


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_bulk_across_all_mailboxes(page, live_server, shots, console_messages, team_world, size):
    """docs/product.md §7.8: the bulk bar on All mailboxes, a selection mixing the shared
    mailbox and Tom's personal one; each conversation acts in its own mailbox."""
    personal = f.MailboxFactory(owner=team_world["tom"], email_address="tom@relay.test")
    mailkit.conversation(
        mailkit.folders(personal)["inbox"],
        subject="Lunch on Friday?",
        sender="friend@example.org",
        day=9,
        seen=False,
    )
    page.set_viewport_size(LAPTOP if size == "laptop" else PHONE)
    _sign_in(page, live_server)
    page.goto(f"{live_server.url}/inbox/?mailbox=all")
    expect(_row(page, "Lunch on Friday?")).to_be_visible()
    bulk = page.locator("#bulk-form")
    expect(bulk).to_be_hidden()
    _row(page, "Lunch on Friday?").locator(".inbox-thread-check").check()
    _row(page, "Printer jams again").locator(".inbox-thread-check").check()
    expect(bulk.locator("[data-bulk-count]")).to_have_text("2")
    shot(page, shots, f"14-{size}-all-bulk-bar.png")
    bulk.get_by_role("button", name="Mark read").click()
    expect(_row(page, "Lunch on Friday?")).not_to_have_class(re.compile(r"\bis-unread\b"))
    expect(_row(page, "Printer jams again")).not_to_have_class(re.compile(r"\bis-unread\b"))
    expect(_row(page, "Quote for 40 widgets")).to_have_class(re.compile(r"\bis-unread\b"))
    expect(bulk).to_be_hidden()

    _row(page, "Lunch on Friday?").locator(".inbox-thread-check").check()
    _row(page, "Quote for 40 widgets").locator(".inbox-thread-check").check()
    bulk.get_by_role("button", name="Done").click()
    expect(_row(page, "Quote for 40 widgets").locator(".inbox-status")).to_have_text("Done")
    expect(page.locator("[data-relay-notice-toast]").last).to_contain_text(
        "2 conversations changed"
    )
    shot(page, shots, f"15-{size}-all-bulk-done.png")
    assert set(Thread.objects.filter(status="done").values_list("subject", flat=True)) == {
        "Quote for 40 widgets",
        "Lunch on Friday?",
    }
    assert csp_violations(console_messages) == []


def test_reading_is_personal_for_two_users(
    browser, page, live_server, shots, console_messages, team_world
):
    page.set_viewport_size(LAPTOP)
    _sign_in(page, live_server, "tom")
    expect(page.locator(".inbox-thread.is-unread")).to_have_count(4)
    _open(page, "Printer jams again")
    expect(_row(page, "Printer jams again")).not_to_have_class(re.compile(r"\bis-unread\b"))
    expect(page.locator(".inbox-thread.is-unread")).to_have_count(3)
    shot(page, shots, "09-tom-read-it.png")

    # Sofia, in her own browser, still has it unread, and her unread filter agrees.
    sofia = browser.new_context(viewport=LAPTOP).new_page()
    _sign_in(sofia, live_server, "sofia")
    expect(sofia.locator(".inbox-thread.is-unread")).to_have_count(4)
    expect(_row(sofia, "Printer jams again")).to_have_class(re.compile(r"\bis-unread\b"))
    expect(sofia.locator(".inbox-folder.active .inbox-unread-count")).to_have_text("4")
    shot(sofia, shots, "10-sofia-still-unread.png")
    sofia.context.close()

    # Tom marks it unread again: for himself.
    page.locator("#conversation").get_by_role("button", name="Mark unread").click()
    expect(_row(page, "Printer jams again")).to_have_class(re.compile(r"\bis-unread\b"))
    assert csp_violations(console_messages) == []


def test_phone_views_state_bar_and_done(page, live_server, shots, console_messages, team_world):
    page.set_viewport_size(PHONE)
    _sign_in(page, live_server)
    expect(page.locator("#inbox-views")).to_be_visible()
    expect(_count(page, "open")).to_have_text("4")
    shot(page, shots, "11-phone-inbox.png")
    _open(page, "Quote for 40 widgets")
    state = page.locator("#conversation .inbox-state")
    expect(state).to_be_visible()
    shot(page, shots, "12-phone-conversation.png")
    state.get_by_role("button", name="Assign to me").click()
    expect(state.locator("[data-conversation-assignee]")).to_contain_text("Tom Teammate")
    state.get_by_role("button", name="Done").click()
    expect(state.locator("[data-conversation-status]")).to_have_text("Done")
    shot(page, shots, "13-phone-done.png")
    page.get_by_role("link", name="Back to the list").click()
    # The counts are live within one poll (every 15 s, and at once on a change): seen once
    # under load taking longer than 5 s, cause not yet found (closing note of this stop).
    expect(_count(page, "done")).to_have_text("1", timeout=20_000)
    _row(page, "Printer jams again").locator(".inbox-thread-check").check()
    expect(page.locator("#bulk-form")).to_be_visible()
    shot(page, shots, "14-phone-bulk.png")
    assert csp_violations(console_messages) == []
