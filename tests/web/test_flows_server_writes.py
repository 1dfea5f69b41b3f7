"""Moves the mail server refuses, and moves to a folder Relay does not sync, in headless
Chromium at a laptop (1440x900) and a phone (390x844), against the test Dovecot: the refused
move is shown in the conversation with the reason and Retry, which works once the folder is
back; the message moved to an unsynced folder is never called "No longer on the server"
(docs/product.md §7.12, §3.6; docs/reliability.md X-19, S-35).

The syncs run in the test's own thread (connector/sync/mailbox.py `sync_mailbox`, as the
worker would), so each step waits on exactly one. Screenshots go to
$RELAY_SCREENSHOTS (when set); the console must stay clean."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from connector.sync import mailbox as sync
from inbox.models import Message, PendingChange
from tests import factories as f
from tests.connector.synckit import make_mailbox, make_raw
from tests.web.helpers import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def _sync(mailbox) -> None:
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()


def _move(page, live_server, message, folder_label):
    """Open the conversation at its own address and move it with More > Move to."""
    page.goto(f"{live_server.url}/inbox/conversations/{message.pk}/")
    conversation = page.locator("#conversation")
    expect(conversation.get_by_role("heading", name=message.subject)).to_be_visible()
    page.wait_for_load_state("load")
    conversation.get_by_role("button", name="More").click()
    menu = conversation.locator(".dropdown-menu.show")
    expect(menu.get_by_role("heading", name="Move to")).to_be_visible()
    menu.get_by_role("button", name=folder_label, exact=True).click()
    expect(page.get_by_text("The server follows on the next sync.")).to_be_visible()
    _settle(page)


def _settle(page):
    """The change re-draws the list (htmx); leaving before it answers would abort it."""
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("screen", SCREENS)
def test_a_refused_move_shows_retry_and_an_unsynced_folder_is_not_gone(
    page, live_server, shots, console_messages, imap_user, screen
):
    dovecot = imap_user.server
    dovecot.create_folder(imap_user, "Projects")
    dovecot.deliver(imap_user, make_raw("File me under projects"))
    dovecot.deliver(imap_user, make_raw("This is junk"))
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    # Junk is on the server (special-use) but not synced; Projects is synced.
    mailbox = make_mailbox(imap_user, owner=olivia, active_folders=["INBOX", "Projects"])
    _sync(mailbox)
    refused = Message.objects.get(mailbox=mailbox, subject="File me under projects")
    junk = Message.objects.get(mailbox=mailbox, subject="This is junk")

    page.set_viewport_size(SCREENS[screen])
    page.goto(f"{live_server.url}/inbox/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".inbox-thread")).to_have_count(2)

    # Another client deletes Projects on the server; in Relay it is still there to move to.
    dovecot.delete_folder(imap_user, "Projects")
    _move(page, live_server, refused, "Projects")
    _move(page, live_server, junk, "Junk")  # a folder Relay does not sync
    _sync(mailbox)

    # The move to Junk was done: on the server, and not "No longer on the server".
    assert len(dovecot.uids(imap_user, "Junk")) == 1
    page.goto(f"{live_server.url}/inbox/conversations/{junk.pk}/")
    conversation = page.locator("#conversation")
    expect(conversation.get_by_role("heading", name="This is junk")).to_be_visible()
    expect(conversation.get_by_text("No longer on the server")).to_have_count(0)
    expect(conversation.get_by_text("Not done on the mail server")).to_have_count(0)
    shot(page, shots, f"{screen}-moved-to-an-unsynced-folder.png")

    # The refused one says what and why, with Retry.
    page.goto(f"{live_server.url}/inbox/conversations/{refused.pk}/")
    failed = page.locator("#conversation .inbox-failed-writes")
    expect(failed).to_contain_text("Not done on the mail server")
    expect(failed).to_contain_text("Move to Projects")
    expect(failed).to_contain_text("the target folder does not exist")
    expect(page.locator("#conversation").get_by_text("No longer on the server")).to_have_count(0)
    failed.scroll_into_view_if_needed()
    shot(page, shots, f"{screen}-refused-move-with-retry.png")

    # The folder is back on the server: Retry, and the next sync moves it there.
    dovecot.create_folder(imap_user, "Projects")
    failed.get_by_role("button", name="Retry").click()
    expect(page.get_by_text("Trying again. The server follows on the next sync.")).to_be_visible()
    expect(page.locator("#conversation .inbox-failed-writes")).to_have_count(0)
    _settle(page)
    _sync(mailbox)
    assert len(dovecot.uids(imap_user, "Projects")) == 1
    assert dovecot.uids(imap_user, "INBOX") == []
    assert not PendingChange.objects.exclude(error="").exists()
    page.reload()
    expect(
        page.locator("#conversation").get_by_role("heading", name="File me under projects")
    ).to_be_visible()
    expect(page.locator("#conversation .inbox-failed-writes")).to_have_count(0)
    expect(page.locator("#conversation").get_by_text("No longer on the server")).to_have_count(0)
    shot(page, shots, f"{screen}-retried.png")
    errors = [m for m in console_messages if m.startswith(("error", "pageerror"))]
    assert not errors, "\n".join(console_messages)
