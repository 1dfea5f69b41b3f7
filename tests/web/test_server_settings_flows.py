"""Server settings and Site settings in a real browser, at laptop 1440x900 and phone 390x844
(docs/product.md §2.8, §8.1): the owner moves sending to a separate SMTP login, tested against
the real aiosmtpd before it is saved, and is asked for the password when the IMAP server
changes; an administrator overrides the environment on the Site settings page and sees where
each value comes from. Screenshots go to $RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from crm import selectors
from inbox.models import Mailbox, SmtpAuth
from tests import factories as f
from tests.connector.synckit import make_mailbox
from tests.servers.smtp import SMTP_PASSWORD, SMTP_USER
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


def errors(console_messages) -> list[str]:
    """Console errors, but for the browser's note of the 400 a form with errors answers with
    (the product's convention, so scripts and tests see the refusal)."""
    return [
        m
        for m in console_messages
        if m.startswith(("error", "pageerror")) and "responded with a status of 400" not in m
    ]


def olivias_mailbox(page, viewport, imap_user, smtp_server, **smtp) -> Mailbox:
    """Olivia's mailbox on the test Dovecot, sending through the aiosmtpd server as `smtp`
    says, with the page at the viewport's size and no connection test counted yet."""
    cache.clear()  # the connection tests' rate limits
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    return make_mailbox(
        imap_user,
        owner=olivia,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        **smtp,
    )


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_owner_changes_the_servers_tested_before_saved(
    page, live_server, shots, console_messages, viewport, imap_user, smtp_server
):
    mailbox = olivias_mailbox(page, viewport, imap_user, smtp_server, smtp_auth="none")
    sign_in(page, live_server, "olivia", f"/inbox/mailboxes/{mailbox.pk}/")
    servers = page.locator("#servers")
    servers.scroll_into_view_if_needed()
    expect(servers.get_by_label("IMAP server")).to_have_value(mailbox.imap_host)
    shot(page, shots, f"servers-{viewport}-1-form.png")

    # A separate SMTP login, with a wrong password first: nothing saved, the reason shown.
    servers.get_by_label("A separate login and password").check()
    servers.get_by_label("SMTP login name").fill(SMTP_USER)
    servers.get_by_label("SMTP password").fill("wrong")
    servers.get_by_role("button", name="Test and save").click()
    error = page.locator("#servers-error")
    expect(error).to_contain_text("The outgoing server (SMTP)")
    expect(error).to_contain_text("The server refused the login.")
    expect(error).to_contain_text("Nothing was saved.")
    assert Mailbox.objects.get(pk=mailbox.pk).smtp_auth == SmtpAuth.NONE
    error.scroll_into_view_if_needed()
    shot(page, shots, f"servers-{viewport}-2-refused.png")

    # The form kept the choices, never the password: type it again, right this time.
    servers = page.locator("#servers")
    expect(servers.get_by_label("SMTP login name")).to_have_value(SMTP_USER)
    expect(servers.get_by_label("SMTP password")).to_have_value("")
    servers.get_by_label("SMTP password").fill(SMTP_PASSWORD)
    servers.get_by_role("button", name="Test and save").click()
    expect(page.get_by_text("Server settings tested and saved")).to_be_visible()
    expect(page.get_by_text(f"Separate login: {SMTP_USER}")).to_be_visible()
    assert smtp_server.logins == [SMTP_USER]
    row = Mailbox.objects.get(pk=mailbox.pk)
    assert row.smtp_auth == SmtpAuth.SEPARATE and row.smtp_password.reveal() == SMTP_PASSWORD
    shot(page, shots, f"servers-{viewport}-3-saved.png")

    # Another IMAP port needs the password again, before anything is tried.
    servers = page.locator("#servers")
    servers.get_by_label("Port").first.fill(str(imap_user.server.tls_port))
    servers.get_by_role("button", name="Test and save").click()
    expect(page.locator("#servers")).to_contain_text("Enter the mailbox's password again")
    assert Mailbox.objects.get(pk=mailbox.pk).imap_port == imap_user.server.port
    page.locator("#servers").scroll_into_view_if_needed()
    shot(page, shots, f"servers-{viewport}-4-password-again.png")

    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow
    assert not csp_violations(console_messages) and not errors(console_messages)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_refused_smtp_login_is_reconnected_with_its_own_password(
    page, live_server, shots, console_messages, viewport, imap_user, smtp_server
):
    """docs/product.md §2.5, docs/reliability.md C-37: the real aiosmtpd refuses the separate
    SMTP login; Reconnect names that server and login, asks for the SMTP password only, refuses
    a wrong one and resumes the mailbox with the right one."""
    mailbox = olivias_mailbox(
        page, viewport, imap_user, smtp_server, smtp_auth="separate", smtp_login=SMTP_USER
    )
    mailbox.set_smtp_password("changed-at-the-provider-since")
    mailbox.state, mailbox.refused_by = Mailbox.State.NEEDS_RECONNECT, "smtp"
    mailbox.last_error = "(535, b'5.7.8 Authentication credentials invalid')"
    mailbox.save()
    sign_in(page, live_server, "olivia", f"/inbox/mailboxes/{mailbox.pk}/")
    page.locator("#reconnect-reason").get_by_role("link", name="Reconnect").click()
    why = page.locator("#reconnect-why")
    expect(why).to_contain_text(
        f"the outgoing server {smtp_server.host}:{smtp_server.port} refused the separate SMTP "
        f"login {SMTP_USER}"
    )
    expect(page.get_by_label("Password", exact=True)).to_have_count(0)
    shot(page, shots, f"smtp-reconnect-{viewport}-1-asked.png")

    page.get_by_label("SMTP password").fill("still-wrong")
    page.get_by_role("button", name="Test and reconnect").click()
    expect(page.locator("#reconnect-error")).to_contain_text(
        f"{smtp_server.host} did not accept it"
    )
    assert Mailbox.objects.get(pk=mailbox.pk).state == Mailbox.State.NEEDS_RECONNECT
    shot(page, shots, f"smtp-reconnect-{viewport}-2-refused.png")

    page.get_by_label("SMTP password").fill(SMTP_PASSWORD)
    page.get_by_role("button", name="Test and reconnect").click()
    expect(page.get_by_text("accepts the new SMTP password")).to_be_visible()
    row = Mailbox.objects.get(pk=mailbox.pk)
    assert row.state == Mailbox.State.ACTIVE and row.refused_by == ""
    assert row.smtp_password.reveal() == SMTP_PASSWORD and SMTP_USER in smtp_server.logins
    shot(page, shots, f"smtp-reconnect-{viewport}-3-resumed.png")
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow
    assert not csp_violations(console_messages) and not errors(console_messages)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_admin_overrides_the_environment_on_the_site_settings_page(
    page, live_server, shots, console_messages, viewport, settings
):
    settings.RELAY_PURGE_AFTER_DAYS = 30
    settings.RELAY_DEFAULT_FROM_EMAIL = "relay@env.example"
    settings.RELAY_MAIL_ENABLED = True
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    f.UserFactory(
        username="ada", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )
    sign_in(page, live_server, "ada", "/inbox/mailboxes/")
    page.locator("#site-settings-link").click()
    table = page.locator("#in-force")
    expect(page.get_by_role("heading", name="Site settings")).to_be_visible()
    expect(table.locator('[data-setting="purge_after_days"]')).to_contain_text("30")
    expect(table.locator('[data-setting="purge_after_days"]')).to_contain_text(
        "RELAY_PURGE_AFTER_DAYS"
    )
    expect(table.locator('[data-setting="default_from_email"]')).to_contain_text(
        "relay@env.example"
    )
    shot(page, shots, f"site-{viewport}-1-environment.png")

    page.get_by_label("Purge completed job records after (days)").fill("-3")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Nothing was saved")).to_be_visible()
    shot(page, shots, f"site-{viewport}-2-error.png")

    page.get_by_label("Purge completed job records after (days)").fill("90")
    page.get_by_label("Default From address of system mail").fill("crm@example.com")
    page.get_by_label("Ticket acknowledgements").select_option(label="Off")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Site settings saved.")).to_be_visible()
    purge_row = page.locator('#in-force [data-setting="purge_after_days"]')
    expect(purge_row).to_contain_text("90")
    expect(purge_row).to_contain_text("Saved here by Ada Admin")
    expect(purge_row).to_contain_text("Environment: RELAY_PURGE_AFTER_DAYS = 30")
    ack_row = page.locator('#in-force [data-setting="send_acknowledgements"]')
    expect(ack_row).to_contain_text("Off")
    in_force = selectors.site_settings()
    assert in_force.purge_after_days.value == 90 and in_force.send_acknowledgements.value is False
    shot(page, shots, f"site-{viewport}-3-saved.png")

    # The mail switch: off, every page says so, and its banner leads back here.
    page.get_by_label("Mail (syncing and sending)").select_option(label="Off")
    page.get_by_role("button", name="Save").click()
    banner = page.locator("#mail-off-banner")
    expect(banner).to_contain_text("Mail is switched off for the whole site")
    page.goto(f"{live_server.url}/inbox/")
    expect(banner).to_contain_text("Switched off on the Site settings page.")
    shot(page, shots, f"site-{viewport}-4-mail-off.png")
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow
    banner.get_by_role("link", name="Site settings").click()
    page.get_by_label("Mail (syncing and sending)").select_option(label="As the environment says")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Site settings saved.")).to_be_visible()
    expect(banner).to_have_count(0)
    assert selectors.mail_on()

    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow
    assert not csp_violations(console_messages) and not errors(console_messages)
