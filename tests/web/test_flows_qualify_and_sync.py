"""Qualify and Sync now in headless Chromium, at a laptop (1440x900) and a phone (390x844):
Qualify offers the contact that already has the sender's address before "create"; quick-create
shows what is wrong and, given an address a contact has, files there instead of making a
duplicate; an unlink is undone from the dialog; Sync now asks for a sync, and a paused mailbox
says so instead (docs/product.md §4.6, §7.2).

Screenshots go to $RELAY_SCREENSHOTS (when set); the console must stay clean."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from crm.models import Contact, Lead
from inbox.models import Filing, Mailbox
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def world():
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    mailbox = f.MailboxFactory(owner=olivia, email_address="olivia@relay.test")
    folders = mailkit.folders(mailbox)
    account = f.AccountFactory(name="Globex", domains=["globex.example"])
    ana = f.ContactFactory(
        first_name="Ana", last_name="Lopez", account=account, emails=["ana@globex.example"]
    )
    mailkit.conversation(folders["inbox"], subject="Team lunch on Friday", day=1)
    quote = mailkit.conversation(
        folders["inbox"],
        size=2,
        subject="Quote for 40 widgets",
        sender="ana@globex.example",
        name="Ana Lopez",
        day=9,
    )
    return {"user": olivia, "mailbox": mailbox, "ana": ana, "quote": quote}


def _sign_in(page, live_server):
    sign_in(page, live_server, "olivia", "/inbox/")
    expect(page.locator("#thread-list")).to_be_visible()
    page.wait_for_load_state("load")


def _clean(console_messages):
    errors = [m for m in console_messages if m.startswith(("error", "pageerror"))]
    assert not errors, "\n".join(console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_qualify_links_the_existing_contact_and_never_makes_a_duplicate(
    page, live_server, shots, console_messages, world, screen
):
    page.set_viewport_size(SCREENS[screen])
    _sign_in(page, live_server)
    page.locator(".inbox-thread", has_text="Quote for 40 widgets").locator(
        ".inbox-thread-link"
    ).click()
    conversation = page.locator("#conversation")
    expect(conversation.get_by_role("heading", name="Quote for 40 widgets")).to_be_visible()
    conversation.get_by_role("button", name="Qualify").click()
    dialog = page.locator("#qualify-modal")
    expect(dialog.get_by_role("heading", name="Qualify")).to_be_visible()

    # "The sender is already in Relay" comes first, above "New from the sender".
    existing = dialog.get_by_role("heading", name="The sender is already in Relay")
    create = dialog.get_by_role("heading", name="New from the sender")
    expect(existing).to_be_visible()
    assert existing.bounding_box()["y"] < create.bounding_box()["y"]
    first = dialog.locator(".inbox-candidate").first
    expect(first).to_contain_text("Ana Lopez")
    expect(first).to_contain_text("Already has ana@globex.example")
    expect(dialog.locator(".inbox-quick-create")).to_contain_text(
        "ana@globex.example is already on Ana Lopez"
    )
    shot(page, shots, f"{screen}-qualify-existing-first.png")

    # Quick-create with no name: what is wrong, in the dialog; nothing made.
    dialog.locator("#qc-first").fill("")
    dialog.locator("#qc-last").fill("")
    dialog.get_by_role("button", name="Create and file").click()
    expect(dialog.locator("#qc-errors")).to_have_text("Give the new record a name.")
    assert Contact.objects.count() == 1 and not Filing.objects.exists()
    dialog.locator("#qc-errors").scroll_into_view_if_needed()
    shot(page, shots, f"{screen}-quick-create-errors.png")

    # A new contact with the address Ana has: filed on Ana instead, and it says so.
    dialog.locator("#qc-first").fill("Ana")
    dialog.locator("#qc-last").fill("López")
    dialog.get_by_role("button", name="Create and file").click()
    expect(dialog.get_by_role("status")).to_have_text(
        "Ana Lopez already has ana@globex.example: filed there instead of creating a second one."
    )
    assert Contact.objects.count() == 1 and not Lead.objects.exists()
    assert set(Filing.objects.values_list("contact__last_name", flat=True)) == {"Lopez"}
    expect(dialog.locator(".inbox-chip", has_text="Ana Lopez")).to_be_visible()
    shot(page, shots, f"{screen}-quick-create-filed-instead.png")

    # Unlink from the dialog, then Undo: back as it was.
    dialog.get_by_role("button", name="Remove from Ana Lopez").click()
    removed = dialog.get_by_role("status")
    expect(removed).to_contain_text("Removed from Ana Lopez.")
    expect(dialog.locator(".inbox-chip", has_text="Ana Lopez")).to_have_count(0)
    shot(page, shots, f"{screen}-unlinked-with-undo.png")
    removed.get_by_role("button", name="Undo").click()
    expect(dialog.get_by_role("status")).to_contain_text("Back on Ana Lopez.")
    expect(dialog.locator(".inbox-chip", has_text="Ana Lopez")).to_be_visible()
    message = world["quote"][-1]
    filing = Filing.objects.get(message=message, contact=world["ana"])
    assert filing.unlinked_at is None
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_be_hidden()
    panel = conversation.locator("[data-filed-panel]")
    expect(panel.locator(".inbox-filed-item", has_text="Ana Lopez")).to_be_visible()
    _clean(console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_sync_now_from_the_inbox(page, live_server, shots, console_messages, world, screen):
    page.set_viewport_size(SCREENS[screen])
    _sign_in(page, live_server)
    mailbox = world["mailbox"]
    button = page.locator("#thread-list").get_by_role("button", name="Sync now")
    expect(button).to_be_visible()
    button.click()
    expect(page.locator("#sync-status")).to_have_text("Checking the server for new mail…")
    shot(page, shots, f"{screen}-sync-now.png")

    # Paused meanwhile: Sync now says so, and asks for nothing.
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.PAUSED, sync_requested_at=None)
    page.locator("#thread-list").get_by_role("button", name="Sync now").click()
    expect(page.locator("#sync-status")).to_contain_text("paused")
    shot(page, shots, f"{screen}-sync-now-paused.png")
    # The longer answer wraps inside the list's head; nothing is pushed off a phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= SCREENS[screen]["width"]
    mailbox.refresh_from_db()
    assert mailbox.sync_requested_at is None
    _clean(console_messages)
