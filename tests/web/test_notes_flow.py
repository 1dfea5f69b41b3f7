"""A note with a mention, in two real browsers: Olivia writes on a shared conversation and picks
Tom from the mention picker; Tom's bell, already open on another page, counts it at its next
poll, and the notification takes him to the note. At laptop and phone sizes, with screenshots."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from notes.models import Note
from tests import factories as f
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def _sign_in(page, live_server, username: str) -> None:
    sign_in(page, live_server, username)
    expect(page).to_have_url(re.compile(r"/inbox/"))  # signing in lands on the Inbox


def _watch(page) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    return messages


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_a_mention_reaches_the_other_user_live(browser, live_server, output_path, size):
    f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    f.UserFactory(username="tina", first_name="Tina", last_name="Stranger")  # not granted
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test")
    mailbox.granted_users.add(*type(tom).objects.filter(username__in=["olivia", "tom"]))
    thread = f.ThreadFactory(mailbox=mailbox, subject="Invoice 7 is wrong")
    message = f.MessageFactory(
        mailbox=mailbox,
        thread=thread,
        subject="Invoice 7 is wrong",
        from_name="Ana Lopez",
        from_address="ana@globex.example",
        snippet="The total does not match the order.",
        text_body="The total does not match the order.",
    )

    viewport = SIZES[size]
    contexts = [browser.new_context(viewport=viewport) for _ in range(2)]
    try:
        _mention_flow(live_server, output_path, size, message, *[c.new_page() for c in contexts])
    finally:
        for context in contexts:
            context.close()


def _mention_flow(live_server, output_path, size, message, olivia_page, tom_page):
    olivia_log, tom_log = _watch(olivia_page), _watch(tom_page)
    # Tom's clock is under the test's control: the bell polls every 30 s.
    tom_page.clock.install()
    _sign_in(olivia_page, live_server, "olivia")
    _sign_in(tom_page, live_server, "tom")
    bell = tom_page.locator(".relay-bell")
    expect(bell).to_be_visible()  # outside the collapsed menu, on a phone too
    expect(tom_page.locator(".relay-bell-count")).to_have_count(0)

    olivia_page.goto(f"{live_server.url}/inbox/conversations/{message.pk}/")
    panel = olivia_page.locator(".notes-panel")
    expect(panel.get_by_role("heading", name="Internal notes")).to_be_visible()
    box = panel.get_by_label(re.compile("Add a note"))
    box.click()
    box.press_sequentially("Tom, can you call Ana about the total? @t")
    picker = panel.locator(".notes-suggest-list")
    expect(picker.get_by_role("option", name=re.compile("Tom Teammate"))).to_be_visible()
    expect(picker.get_by_role("option", name=re.compile("Tina"))).to_have_count(0)
    shot(olivia_page, output_path, f"{size}-1-mention-picker.png")
    picker.get_by_role("option", name=re.compile("Tom Teammate")).click()
    expect(box).to_have_value("Tom, can you call Ana about the total? @tom ")
    box.press_sequentially("thanks")
    panel.get_by_role("button", name="Add note").click()
    note_text = olivia_page.locator(".notes-panel .note-body")
    expect(note_text).to_have_text("Tom, can you call Ana about the total? @tom thanks")
    expect(olivia_page.locator(".notes-panel .note-mention")).to_have_text("@tom")
    note = Note.objects.get()
    shot(olivia_page, output_path, f"{size}-2-note-written.png")

    # Mentioning someone who cannot see the conversation is refused, with the reason.
    box = olivia_page.locator(".notes-panel").get_by_label(re.compile("Add a note"))
    box.fill("@tina have a look")
    olivia_page.locator(".notes-panel").get_by_role("button", name="Add note").click()
    expect(olivia_page.get_by_role("alert")).to_contain_text(
        "@tina cannot see this conversation, so they cannot be mentioned here."
    )
    assert Note.objects.count() == 1

    # Tom's page, open all along: the bell counts it at its next poll.
    tom_page.clock.fast_forward("00:31")
    expect(tom_page.locator(".relay-bell-count")).to_have_text("1")
    expect(bell).to_have_attribute("aria-label", "Notifications: 1 unread")
    shot(tom_page, output_path, f"{size}-3-bell.png")

    bell.click()
    expect(tom_page.get_by_role("heading", name="Notifications")).to_be_visible()
    entry = tom_page.get_by_role("link", name=re.compile("Olivia Owner mentioned you on"))
    expect(entry).to_be_visible()
    shot(tom_page, output_path, f"{size}-4-notifications.png")
    entry.click()
    expect(tom_page).to_have_url(re.compile(rf"/inbox/conversations/{message.pk}/#note-{note.pk}$"))
    expect(tom_page.locator(f"#note-{note.pk}")).to_contain_text("can you call Ana")
    expect(tom_page.locator(".relay-bell-count")).to_have_count(0)
    shot(tom_page, output_path, f"{size}-5-note-seen.png")

    assert csp_violations(olivia_log) == [] and csp_violations(tom_log) == []
    assert [m for m in olivia_log + tom_log if m.startswith("pageerror")] == []


@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
def test_a_records_page_shows_its_notes_beside_its_details(page, live_server, output_path, size):
    """A record's notes are listed once, on its timeline; the form to add one is above it
    (docs/product.md §7.4)."""
    f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    ticket = f.TicketFactory(subject="VPN drops every hour", description="Since Monday.")
    log = _watch(page)
    page.set_viewport_size(SIZES[size])
    _sign_in(page, live_server, "olivia")
    page.goto(f"{live_server.url}{ticket.get_absolute_url()}")
    panel = page.locator(".notes-panel")
    expect(page.locator("#timeline")).to_contain_text("Nothing here yet")
    panel.get_by_label(re.compile("Add a note")).fill(
        "Their firewall drops idle tunnels <b>after 60 min</b>: see https://vpn.example/kb/42."
    )
    panel.get_by_role("button", name="Add note").click()
    body = page.locator("#timeline .note-body")
    expect(body).to_have_text(
        "Their firewall drops idle tunnels <b>after 60 min</b>: see https://vpn.example/kb/42."
    )
    expect(page.locator(".note-body")).to_have_count(1)  # once, on the timeline
    expect(body.get_by_role("link", name="https://vpn.example/kb/42")).to_have_attribute(
        "href", "https://vpn.example/kb/42"
    )
    expect(page.locator(".note-body b")).to_have_count(0)
    shot(page, output_path, f"{size}-ticket-notes.png")
    assert csp_violations(log) == []
