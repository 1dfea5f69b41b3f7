"""The small things of issue #16 in headless Chromium, at a laptop (1440x900) and a phone
(390x844): the Admin link only for staff the admin site has something for, a revoked grant
clearing that user's primary choice, a 3,000-character search saying it was shortened (a
record list and the inbox), a demo mailbox refusing to resume with the reason, and a Google
or Microsoft sign-in about to die shown on the health page (docs/product.md §7.1, §2.7
item 2, §2.5, §2.9 item 5).

Screenshots go to $RELAY_SCREENSHOTS (when set); the console must stay clean."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import expect

from inbox.models import Mailbox, PrimaryMailbox
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def _sign_in(page, live_server, username, path="/inbox/"):
    sign_in(page, live_server, username, path)
    page.wait_for_load_state("load")


def _open_menu(page, screen):
    """On a phone the top bar's links are behind the toggler."""
    if screen == "phone":
        page.get_by_role("button", name="Toggle navigation").click()
        expect(page.locator("#main-nav.show")).to_be_visible()


def _clean(console_messages):
    errors = [m for m in console_messages if m.startswith(("error", "pageerror"))]
    assert not errors, "\n".join(console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_admin_link_only_for_staff_the_admin_site_serves(
    page, live_server, shots, console_messages, screen
):
    """Staff with no permission would meet an empty admin site: no link for them; one
    permission (or a superuser) and the link is there and opens it."""
    page.set_viewport_size(SCREENS[screen])
    staff = f.UserFactory(username="sam", is_staff=True)
    _sign_in(page, live_server, "sam", path="/contacts/")
    _open_menu(page, screen)
    nav = page.locator("#main-nav")
    expect(nav.get_by_role("link", name="Contacts")).to_be_visible()
    expect(nav.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    shot(page, shots, f"{screen}-admin-link-hidden.png")

    staff.user_permissions.add(Permission.objects.get(codename="view_contact"))
    page.reload()
    _open_menu(page, screen)
    link = page.locator("#main-nav").get_by_role("link", name="Admin", exact=True)
    expect(link).to_be_visible()
    shot(page, shots, f"{screen}-admin-link-shown.png")
    link.click()
    expect(page.get_by_role("link", name="Contacts").first).to_be_visible()
    assert "/admin/" in page.url
    _clean(console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_revoked_grant_clears_that_users_primary(
    browser, live_server, shots, screen, django_user_model
):
    """Tom made support@ his primary; an admin removes his access on the settings page: his
    settings no longer list it, and his primary choice is gone with it (docs/product.md §2.7
    item 2), while Uma, who reads it through a group, keeps hers."""
    f.UserFactory(username="ada", first_name="Ada", last_name="Admin", is_staff=True)
    django_user_model.objects.filter(username="ada").update(is_superuser=True)
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    uma = f.UserFactory(username="uma", first_name="Uma", last_name="User")
    f.MailboxFactory(owner=tom, email_address="tom@relay.test")
    support = f.SharedMailboxFactory(email_address="support@relay.test")
    team = f.GroupFactory(name="Support team")
    uma.groups.add(team)
    support.granted_users.add(tom, uma)
    support.granted_groups.add(team)
    PrimaryMailbox.objects.create(user=tom, mailbox=support)
    PrimaryMailbox.objects.create(user=uma, mailbox=support)

    tom_page = browser.new_context(viewport=SCREENS[screen]).new_page()
    _sign_in(tom_page, live_server, "tom", path="/inbox/mailboxes/")
    row = tom_page.get_by_role("listitem").filter(
        has=tom_page.get_by_role("link", name="support@relay.test")
    )
    expect(row.locator(".relay-primary-badge")).to_have_text("Primary")
    shot(tom_page, shots, f"{screen}-primary-before.png")

    ada_page = browser.new_context(viewport=SCREENS[screen]).new_page()
    _sign_in(ada_page, live_server, "ada", path=f"/inbox/mailboxes/{support.pk}/")
    grants = ada_page.locator("#grants")
    expect(grants).to_contain_text("Tom Teammate")
    ada_page.wait_for_load_state("load")  # relay.js (deferred) answers htmx:confirm
    grants.get_by_role("button", name="Remove Tom Teammate").click()
    ada_page.locator("#relay-confirm").get_by_role("button", name="Remove", exact=True).click()
    expect(ada_page.get_by_text("Tom Teammate no longer reads support@relay.test.")).to_be_visible()
    expect(ada_page.locator("#grants")).not_to_contain_text("Tom Teammate")
    shot(ada_page, shots, f"{screen}-grant-removed.png")

    tom_page.reload()
    expect(tom_page.get_by_role("link", name="tom@relay.test")).to_be_visible()
    expect(tom_page.get_by_role("link", name="support@relay.test")).to_have_count(0)
    expect(tom_page.locator(".relay-primary-badge")).to_have_count(0)
    shot(tom_page, shots, f"{screen}-primary-after.png")
    assert not PrimaryMailbox.objects.filter(user=tom).exists()
    assert PrimaryMailbox.objects.get(user=uma).mailbox == support
    for context in (tom_page.context, ada_page.context):
        context.close()


@pytest.mark.parametrize("screen", SCREENS)
def test_a_3000_character_search_says_it_was_shortened(
    page, live_server, shots, console_messages, screen
):
    page.set_viewport_size(SCREENS[screen])
    olivia = f.UserFactory(username="olivia")
    f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@globex.example"])
    folders = mailkit.folders(f.MailboxFactory(owner=olivia, email_address="olivia@relay.test"))
    mailkit.conversation(
        folders["inbox"], subject="Order", sender="ana@globex.example", name="Ana Lopez", day=1
    )
    mailkit.conversation(
        folders["inbox"], subject="Lunch", sender="bo@initech.example", name="Bo Berg", day=2
    )
    _sign_in(page, live_server, "olivia", path="/contacts/")
    expect(page.get_by_text("Ana Lopez")).to_be_visible()
    page.goto(f"{live_server.url}/contacts/?q={'ana ' * 750}")
    status = page.get_by_role("status").filter(has_text="shortened")
    expect(status).to_contain_text("Your search was shortened to its first 200 characters.")
    shot(page, shots, f"{screen}-search-shortened.png")
    assert not page.evaluate("document.documentElement.scrollWidth > window.innerWidth")

    # The inbox's search too: cut to 200 characters (which still find the mail), and it says so.
    page.goto(f"{live_server.url}/inbox/?q={'ana ' * 750}")
    expect(page.locator(".inbox-thread")).to_have_count(1)
    expect(page.locator(".inbox-thread")).to_contain_text("Ana Lopez")
    expect(
        page.locator("#thread-list").get_by_role("status").filter(has_text="shortened")
    ).to_have_text("Your search was shortened to its first 200 characters.")
    shot(page, shots, f"{screen}-inbox-search-shortened.png")
    page.goto(f"{live_server.url}/inbox/?q=ana")
    expect(page.locator(".inbox-thread")).to_have_count(1)
    expect(page.get_by_text("Your search was shortened")).to_have_count(0)
    assert not page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    _clean(console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_resuming_a_demo_mailbox_says_it_has_no_server(
    page, live_server, shots, console_messages, screen
):
    """A demo mailbox points at a reserved .invalid host: Resume says why it cannot, and the
    mailbox stays paused rather than "Syncing" for ever (docs/product.md §2.5)."""
    page.set_viewport_size(SCREENS[screen])
    demo = f.UserFactory(username="demo")
    mailbox = f.MailboxFactory(
        owner=demo,
        email_address="demo@relay.example",
        imap_host="imap.example.invalid",
        state=Mailbox.State.PAUSED,
    )
    _sign_in(page, live_server, "demo", path=f"/inbox/mailboxes/{mailbox.pk}/health/")
    page.get_by_role("button", name="Resume").click()
    alert = page.get_by_text("demo@relay.example has no mail server behind it")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("Connect a real mailbox under Settings")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_text("Syncing", exact=True)).to_have_count(0)
    shot(page, shots, f"{screen}-demo-resume-refused.png")
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.PAUSED
    _clean(console_messages)


@pytest.mark.parametrize("screen", SCREENS)
def test_health_page_warns_before_a_sign_in_dies(
    page, live_server, shots, console_messages, screen
):
    """A Microsoft sign-in that dies in five days: the mailbox's health page says when, through
    whom, with Reconnect now; one that lives months only says until when (docs/product.md §2.9
    item 5)."""
    page.set_viewport_size(SCREENS[screen])
    ada = f.UserFactory(username="ada", first_name="Ada", last_name="Admin")
    soon = timezone.now() + dt.timedelta(days=5)
    mailbox = f.MailboxFactory(
        owner=ada,
        email_address="ada@contoso.example",
        connection_type=Mailbox.ConnectionType.MICROSOFT,
        oauth_account="ada@contoso.example",
        oauth_grant_expires_at=soon,
    )
    _sign_in(page, live_server, "ada", path=f"/inbox/mailboxes/{mailbox.pk}/health/")
    warning = page.locator("#grant-expiry")
    expect(warning).to_have_attribute("role", "status")
    expect(warning).to_contain_text("through ada@contoso.example")
    expect(warning).to_contain_text(f"expires on {soon.day} ")
    expect(warning.get_by_role("link", name="Reconnect now")).to_be_visible()
    shot(page, shots, f"{screen}-health-grant-expiring.png")

    Mailbox.objects.filter(pk=mailbox.pk).update(
        oauth_grant_expires_at=timezone.now() + dt.timedelta(days=80)
    )
    page.reload()
    expect(page.locator("#grant-expiry")).to_contain_text("lasts until")
    expect(page.get_by_role("link", name="Reconnect now")).to_have_count(0)
    _clean(console_messages)
