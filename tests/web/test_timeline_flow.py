"""A contact's page at a laptop and a phone: the timeline (mail and notes, newest first) at the
centre, the fields beside it on a laptop and above it on a phone (docs/product.md §7.4)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from notes.models import Note
from tests import factories as f
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _at(day, hour=9):
    return dt.datetime(2026, 3, day, hour, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "name,viewport", [("laptop", (1440, 900)), ("phone", (390, 844))], ids=["laptop", "phone"]
)
def test_contact_page_timeline(
    page, live_server, shots, console_messages, settings, name, viewport
):
    settings.RELAY_PAGE_SIZE = 4
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test")
    mailbox.granted_users.add(tom)
    account = f.AccountFactory(name="Globex")
    contact = f.ContactFactory(
        first_name="Ana",
        last_name="Lopez",
        title="CTO",
        account=account,
        emails=["ana@globex.example"],
    )
    for day, subject in ((1, "Quote request"), (3, "Re: Quote request"), (6, "Signed order")):
        message = f.MessageFactory(
            mailbox=mailbox,
            subject=subject,
            date=_at(day),
            from_name="Ana Lopez",
            from_address="ana@globex.example",
            text_body=f"{subject}: the details are in the attached sheet.",
        )
        f.FilingFactory(message=message, contact=contact)
    for day, body in ((2, "Called Ana back about the quote"), (7, "Order booked in the ERP")):
        note = Note.objects.create(author=tom, body=body, target_type="contact", contact=contact)
        Note.objects.filter(pk=note.pk).update(created_at=_at(day))

    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    sign_in(page, live_server, "tom")
    page.wait_for_load_state("load")
    page.goto(f"{live_server.url}{contact.get_absolute_url()}")
    page.wait_for_load_state("load")

    timeline = page.locator("#timeline")
    entries = timeline.locator(".relay-timeline-entry")
    # Newest first, mail and notes interleaved; four to a page here.
    expect(entries).to_have_count(4)
    expect(entries.nth(0)).to_contain_text("Order booked in the ERP")
    expect(entries.nth(1)).to_contain_text("Signed order")
    expect(entries.nth(2)).to_contain_text("Re: Quote request")
    expect(entries.nth(3)).to_contain_text("Called Ana back about the quote")
    fields = page.locator(".relay-fields")
    expect(fields).to_contain_text("ana@globex.example")
    field_box, timeline_box = fields.bounding_box(), timeline.bounding_box()
    if name == "laptop":
        # Side by side: the fields in a column to the left of the timeline.
        assert field_box["x"] + field_box["width"] <= timeline_box["x"]
    else:
        # Stacked: the fields above the timeline, related records and notes below it,
        # nothing wider than the screen.
        assert field_box["y"] + field_box["height"] <= timeline_box["y"]
        more_box = page.locator(".relay-record-more").bounding_box()
        assert timeline_box["y"] + timeline_box["height"] <= more_box["y"]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport[0]
    shot(page, shots, f"{name}-1-timeline.png")

    # Show older: the rest, oldest last.
    timeline.get_by_role("link", name="Show older").click()
    expect(entries).to_have_count(1)
    expect(entries.nth(0)).to_contain_text("Quote request")
    expect(timeline.get_by_role("link", name="Show older")).to_have_count(0)
    shot(page, shots, f"{name}-2-older.png")

    # A note added in the notes panel goes to the top of the timeline at once.
    # Newest is a plain link: the note is written on the page it opens, once that has loaded
    # (written on the page being left, it was added there and that page stayed: CI on f03a3e2).
    timeline.get_by_role("link", name="Newest").click()
    page.wait_for_url(re.compile(r"/contacts/\d+/#timeline$"))
    page.wait_for_load_state("load")
    expect(entries).to_have_count(4)
    panel = page.locator(".notes-panel")
    panel.get_by_label(re.compile("Add a note")).fill("Ana asked for a call on Friday")
    panel.get_by_role("button", name="Add note").click()
    expect(entries.nth(0)).to_contain_text("Ana asked for a call on Friday")
    expect(entries).to_have_count(4)
    # Each note is listed once, on the timeline; the panel above it is the form alone.
    expect(page.get_by_text("Ana asked for a call on Friday")).to_have_count(1)
    expect(page.get_by_text("Order booked in the ERP")).to_have_count(1)
    expect(panel.get_by_label(re.compile("Add a note"))).to_have_value("")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays at the top of the shot
    shot(page, shots, f"{name}-3-note-added.png")

    # A message opens as its conversation.
    timeline.get_by_role("link", name="Signed order").click()
    expect(page).to_have_url(re.compile(r"/inbox/conversations/\d+/"))
    assert [m for m in console_messages if m.startswith(("error", "pageerror"))] == []
