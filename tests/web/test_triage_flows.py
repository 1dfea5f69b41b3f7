"""Triage and Qualify in a real browser, at laptop 1440x900 and phone 390x844
(docs/product.md §4.6, §4.7, §7.1): signing in lands on the Inbox; triage lists newest mail
first with its snippet and To line; a refused bulk action keeps the ticks; Dismiss; "always
ignore" after its dry run; Qualify offers the sender's contact first, and an unlink is undone;
a destructive action asks in the app's dialog, never confirm(). Screenshots go to
$RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from inbox.models import ExclusionPattern, Filing, PendingChange, TriageEntry
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import csp_violations, shot, sign_in
from tests.workerkit import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


def _world():
    ada = f.UserFactory(
        username="ada", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )
    support = f.SharedMailboxFactory(email_address="support@relay.test")
    support.granted_users.add(ada)
    folders = mailkit.folders(support)
    ana = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@globex.example"])
    rows = {}
    for day, subject, sender, name, to in (
        (1, "Weekly deals", "deals@promo.example", "Promo", "support@relay.test"),
        (2, "More deals", "offers@promo.example", "Promo", "support@relay.test"),
        (3, "Invoice 2291 is wrong", "ana@globex.example", "Ana Lopez", "billing@relay.test"),
        (4, "Hello there", "someone@gmail.com", "Some One", "support@relay.test"),
    ):
        (message,) = mailkit.conversation(
            folders["inbox"], subject=subject, sender=sender, name=name, to=to, day=day
        )
        f.TriageEntryFactory(message=message, reason="unfiled")
        rows[subject] = message
    return ada, ana, rows


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_triage_dismiss_ignore_and_qualify_with_undo(
    page, live_server, shots, console_messages, viewport
):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    native_dialogs = []
    page.on("dialog", lambda dialog: (native_dialogs.append(dialog.message), dialog.dismiss()))
    _ada, ana, rows = _world()

    sign_in(page, live_server, "ada", "/")
    expect(page).to_have_url(re.compile(r"/inbox/$"))  # signing in lands on the Inbox

    page.goto(f"{live_server.url}/inbox/triage/")
    items = page.locator(".inbox-triage-item")
    expect(items).to_have_count(4)
    expect(items.nth(0)).to_contain_text("Hello there")  # newest first
    expect(items.nth(3)).to_contain_text("Weekly deals")
    invoice = items.filter(has_text="Invoice 2291 is wrong")
    expect(invoice).to_contain_text("To billing@relay.test")
    expect(invoice).to_contain_text(rows["Invoice 2291 is wrong"].snippet)
    shot(page, shots, f"{viewport}-triage-1-list.png")

    # File two without picking a record: refused, and both stay ticked.
    items.nth(0).get_by_role("checkbox").check()
    items.nth(1).get_by_role("checkbox").check()
    page.get_by_role("button", name="File selected").click()
    expect(page.get_by_text("Pick the record to file the messages on.")).to_be_visible()
    expect(items.nth(0).get_by_role("checkbox")).to_be_checked()
    expect(items.nth(1).get_by_role("checkbox")).to_be_checked()
    expect(items.nth(2).get_by_role("checkbox")).not_to_be_checked()
    shot(page, shots, f"{viewport}-triage-2-ticks-kept.png")

    # Dismiss one.
    hello = items.filter(has_text="Hello there")
    hello.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(page.get_by_text("Dismissed: it stays in the mailbox, unfiled.")).to_be_visible()
    expect(items).to_have_count(3)

    # Always ignore the promo domain: the dry run first, then save.
    items.filter(has_text="Weekly deals").get_by_role("link", name="Always ignore…").click()
    page.get_by_label(re.compile("Everyone at promo.example")).check()
    page.get_by_role("button", name="Try it on the last 100 messages").click()
    dry_run = page.locator("#dry-run")
    expect(dry_run).to_contain_text("would have excluded 2 of the last 100 messages")
    expect(dry_run).to_contain_text("2 messages in triage would leave it now")
    assert not ExclusionPattern.objects.exists()
    shot(page, shots, f"{viewport}-triage-3-ignore-dry-run.png")
    dry_run.get_by_role("button", name="Always ignore promo.example").click()
    expect(page.get_by_text("promo.example is ignored from now on")).to_be_visible()
    expect(items).to_have_count(1)
    assert ExclusionPattern.objects.filter(pattern="promo.example").exists()

    # Qualify: the sender's contact comes first; link it, unlink it, undo.
    items.first.get_by_role("button", name="Qualify").click()
    dialog = page.locator("#qualify-modal")
    existing = dialog.locator("section", has_text="The sender is already in Relay")
    expect(existing).to_contain_text("Ana Lopez")
    shot(page, shots, f"{viewport}-triage-4-qualify-existing.png")
    existing.get_by_role("button", name="File on Ana Lopez").click()
    expect(dialog.get_by_text("Filed on Ana Lopez.")).to_be_visible()
    dialog.get_by_role("button", name="Remove from Ana Lopez").click()
    expect(dialog.get_by_text("Removed from Ana Lopez.")).to_be_visible()
    shot(page, shots, f"{viewport}-triage-5-unlink-undo.png")
    dialog.get_by_role("button", name="Undo").click()
    expect(dialog.get_by_text("Back on Ana Lopez.")).to_be_visible()
    filing = Filing.objects.get(message=rows["Invoice 2291 is wrong"], contact=ana)
    assert filing.unlinked_at is None
    assert not TriageEntry.objects.filter(resolved_at=None).exists()

    assert native_dialogs == []
    assert csp_violations(console_messages) == []
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_deleting_asks_in_the_apps_dialog_not_confirm(
    page, live_server, shots, console_messages, viewport
):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    native_dialogs = []
    page.on("dialog", lambda dialog: (native_dialogs.append(dialog.message), dialog.accept()))
    _ada, _ana, rows = _world()
    message = rows["Invoice 2291 is wrong"]
    sign_in(page, live_server, "ada", "/")
    page.goto(f"{live_server.url}/inbox/conversations/{message.pk}/")

    def ask():
        page.get_by_role("button", name="More").click()
        page.locator(".dropdown-menu.show").get_by_role("button", name="Delete").click()
        confirm = page.locator("#relay-confirm")
        expect(confirm).to_be_visible()
        expect(confirm).to_contain_text("Move this message to Trash?")
        return confirm

    confirm = ask()
    shot(page, shots, f"{viewport}-confirm-dialog.png")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    deletes = PendingChange.objects.filter(action=PendingChange.Action.DELETE)
    assert not deletes.exists()

    confirm = ask()
    confirm.get_by_role("button", name="Delete").click()
    expect(confirm).to_be_hidden()
    wait_for(deletes.exists, timeout=30, what="the delete the dialog confirmed")
    assert native_dialogs == []
    assert csp_violations(console_messages) == []
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))]
