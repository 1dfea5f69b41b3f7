"""Mailbox settings in a real browser against the test Dovecot: connect a mailbox through the
wizard, see mail arrive, break the password on the server, see the banner, walk Reconnect,
and find nothing imported twice. Screenshots go to $RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from inbox.models import LedgerEntry, Mailbox, Message
from tests import factories as f
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def eager_tasks():
    """Sync now and the first sync run in the request, as a worker would run them."""
    from crm.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


def _mail(n: int) -> bytes:
    return (
        f"From: Ana Lopez <ana@globex.example>\r\nTo: olivia@relay.test\r\n"
        f"Subject: Quote request {n}\r\nMessage-ID: <quote-{n}@globex.example>\r\n"
        f"Date: Mon, 23 Nov 2026 09:{n:02d}:00 +0000\r\n\r\nHello number {n}.\r\n"
    ).encode()


def _sign_in(page, live_server, username="olivia"):
    f.UserFactory(username=username, first_name="Olivia", last_name="Owner")
    sign_in(page, live_server, username, "/inbox/mailboxes/")
    expect(page.get_by_role("heading", name="Mailboxes")).to_be_visible()
    # Visible is not ready: the deferred scripts (keyboard shortcuts, htmx handlers) run
    # just before the load event, which a loaded machine can delay past the next key.
    page.wait_for_load_state("load")


def test_connect_sync_break_and_reconnect(
    page, live_server, imap_user, eager_tasks, shots, console_messages
):
    server = imap_user.server
    for n in (1, 2, 3):
        server.deliver(imap_user, _mail(n))
    server.create_folder(imap_user, "Projects")
    page.set_viewport_size({"width": 1280, "height": 860})
    _sign_in(page, live_server)
    expect(page.get_by_text("No mailboxes yet")).to_be_visible()
    expect(page.get_by_role("link", name="Settings", exact=True)).to_have_class(
        re.compile("active")
    )
    shot(page, shots, "01-mailboxes-empty.png")

    # The wizard: the address fills in a guess, which we then correct for the test server.
    page.get_by_role("link", name="Connect a mailbox").first.click()
    expect(page.get_by_role("heading", name="Connect a mailbox")).to_be_visible()
    page.get_by_label("Email address").fill(imap_user.email)
    page.get_by_label("Display name").fill("Olivia Owner")
    page.get_by_label("Email address").blur()
    expect(page.get_by_label("IMAP server")).to_have_value("imap.relay.test")
    expect(page.locator("#guess-hint")).to_contain_text("Guessed the settings for relay.test")
    page.get_by_label("Login name").fill(imap_user.login)
    page.locator("#id_password").fill(imap_user.password)
    page.get_by_label("IMAP server").fill(server.host)
    page.locator("#id_imap_security").select_option("none")
    page.locator("#id_imap_port").fill(str(server.port))
    page.get_by_label("SMTP server").fill("")
    page.get_by_label("Allow a certificate not signed by a trusted authority").check()
    expect(page.locator("#insecure-warning")).to_be_visible()
    page.get_by_label("Allow a certificate not signed by a trusted authority").uncheck()
    expect(page.locator("#insecure-warning")).to_be_hidden()
    shot(page, shots, "02-wizard-settings.png")

    # A wrong password first: a clear message, nothing saved.
    page.locator("#id_password").fill("not-the-password")
    page.get_by_role("button", name="Test connection / Retrieve folders").click()
    expect(page.get_by_text("Wrong login name or password")).to_be_visible()
    shot(page, shots, "03-wizard-wrong-password.png")
    assert not Mailbox.objects.exists()

    page.locator("#id_password").fill(imap_user.password)
    page.get_by_role("button", name="Test connection / Retrieve folders").click()
    expect(page.locator("#test-ok")).to_contain_text("Signed in.")
    inbox_box = page.locator('input[name="active_folders"][value="INBOX"]')
    expect(inbox_box).to_be_checked()
    expect(page.locator('input[name="active_folders"][value="Projects"]')).not_to_be_checked()
    expect(page.locator("[data-preview-total]")).to_have_text("3")
    page.locator('input[name="active_folders"][value="Projects"]').check()
    page.get_by_label("Create contacts for unknown senders").check()
    page.get_by_label("Signature").fill("Olivia Owner\nRelay")
    shot(page, shots, "04-wizard-folders.png")
    page.get_by_role("button", name="Connect", exact=True).click()

    # The health page: the first sync ran (eager), three messages stored.
    expect(page.get_by_text("is connected. The first sync has started.")).to_be_visible()
    mailbox = Mailbox.objects.get()
    assert mailbox.password.reveal() == imap_user.password
    assert imap_user.password not in mailbox.password_encrypted
    assert sorted(mailbox.active_folders) == ["INBOX", "Projects", "Sent"]
    expect(page.locator("#folder-counts")).to_contain_text("INBOX")
    inbox_row = page.locator("#folder-counts tr", has_text="INBOX")
    expect(inbox_row.locator("td").nth(1)).to_have_text("3")
    expect(page.locator("#ledger-counts .relay-ledger-stored .relay-ledger-count")).to_have_text(
        "3"
    )
    shot(page, shots, "05-health-after-first-sync.png")

    # New mail arrives; Sync now brings it.
    server.deliver(imap_user, _mail(4))
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_text("Checking")).to_be_visible()
    expect(inbox_row.locator("td").nth(1)).to_have_text("4")
    assert Message.objects.filter(mailbox=mailbox).count() == 4

    # The list: state, primary, actions.
    page.get_by_role("link", name="Mailboxes").first.click()
    card = page.locator(f"#mailbox-{mailbox.pk}")
    expect(card).to_contain_text("Active")
    expect(card).to_contain_text("Primary")
    shot(page, shots, "06-mailboxes-list.png")

    # The password changes on the server: the next sync is refused, the banner appears.
    server.set_password(imap_user, "changed-on-the-server")
    card.get_by_role("button", name="Sync now").click()
    banner = page.locator("#reconnect-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(imap_user.email)
    expect(card).to_contain_text("Needs reconnect")
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    shot(page, shots, "07-banner-needs-reconnect.png")
    page.goto(f"{live_server.url}/contacts/")  # on every page
    expect(page.locator("#reconnect-banner")).to_be_visible()

    # Reconnect: the reason, the new password, the folders again, Reconnect.
    page.locator("#reconnect-banner").get_by_role("link", name="Reconnect").click()
    expect(page.get_by_role("heading", name=f"Reconnect {imap_user.email}")).to_be_visible()
    expect(page.locator("#reconnect-why")).to_contain_text("refused the sign-in")
    page.locator("#id_password").fill(imap_user.password)  # the old one: refused
    page.get_by_role("button", name="Test connection / Retrieve folders").click()
    expect(page.get_by_text("Wrong login name or password")).to_be_visible()
    page.locator("#id_password").fill("changed-on-the-server")
    page.get_by_role("button", name="Test connection / Retrieve folders").click()
    expect(page.locator("#test-ok")).to_be_visible()
    expect(page.locator('input[name="active_folders"][value="Projects"]')).to_be_checked()
    shot(page, shots, "08-reconnect-folders.png")
    page.get_by_role("button", name="Reconnect", exact=True).click()

    expect(page.get_by_text("Syncing goes on where it stopped")).to_be_visible()
    expect(page.locator("#reconnect-banner")).to_have_count(0)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE
    assert mailbox.password.reveal() == "changed-on-the-server"
    # Nothing imported twice: four messages, four "stored" UIDs, no duplicates.
    assert Message.objects.filter(mailbox=mailbox).count() == 4
    assert LedgerEntry.objects.filter(mailbox=mailbox, outcome="stored").count() == 4
    assert not LedgerEntry.objects.filter(mailbox=mailbox, outcome="duplicate").exists()
    expect(inbox_row.locator("td").nth(1)).to_have_text("4")
    shot(page, shots, "09-health-after-reconnect.png")
    page.get_by_role("link", name="Settings", exact=True).last.click()
    expect(page.get_by_role("heading", name="Options")).to_be_visible()
    page.get_by_label("Signature").fill("Olivia Owner\nSales, Relay")
    page.locator("form", has=page.get_by_label("Signature")).get_by_role(
        "button", name="Save", exact=True
    ).click()
    expect(page.get_by_text("Mailbox settings saved.")).to_be_visible()
    shot(page, shots, "09b-settings.png")

    # On a phone: the list and the health page still read well.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/inbox/mailboxes/")
    shot(page, shots, "10-phone-mailboxes.png")
    page.goto(f"{live_server.url}/inbox/mailboxes/{mailbox.pk}/health/")
    shot(page, shots, "11-phone-health.png")
    page.goto(f"{live_server.url}/inbox/mailboxes/connect/")
    shot(page, shots, "12-phone-wizard.png")

    assert csp_violations(console_messages) == []
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))]


def test_health_progress_updates_live(page, live_server, shots, console_messages):
    """The first sync's progress bar polls every 2 s while the sync runs, and stops after."""
    from django.contrib.auth import get_user_model

    _sign_in(page, live_server)
    user = get_user_model().objects.get(username="olivia")
    mailbox = f.MailboxFactory(
        owner=user,
        email_address="olivia@relay.test",
        state=Mailbox.State.SYNCING,
        progress_total=400,
        progress_done=100,
    )
    folder = f.FolderFactory(mailbox=mailbox, name="INBOX", special_use="inbox")
    f.LedgerEntryFactory(
        folder=folder,
        outcome="held",
        reason="failed repeatedly",
        error="ParseError: MIME nesting deeper than 50 parts",
        attempts=3,
    )
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(f"{live_server.url}/inbox/mailboxes/{mailbox.pk}/health/")
    expect(page.locator("#progress-text")).to_have_text("100 of 400 messages")
    shot(page, shots, "20-health-first-sync.png")
    Mailbox.objects.filter(pk=mailbox.pk).update(progress_done=300)
    expect(page.locator("#progress-text")).to_have_text("300 of 400 messages", timeout=6000)
    Mailbox.objects.filter(pk=mailbox.pk).update(
        state=Mailbox.State.ACTIVE, progress_done=400, first_sync_done=True
    )
    expect(page.locator("#first-sync")).to_have_count(0, timeout=6000)
    expect(page.locator("#health-live")).to_have_attribute("data-live", "off")

    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".toast-body")).to_contain_text("will be fetched again on the next sync")
    expect(page.locator("#no-held")).to_be_visible()
    shot(page, shots, "21-health-after-retry.png")
    assert csp_violations(console_messages) == []
