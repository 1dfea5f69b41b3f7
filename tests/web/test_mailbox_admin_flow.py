"""A shared mailbox administered in a real browser (docs/product.md §2.7), at laptop 1440x900
and phone 390x844: an admin grants support@ to a teammate, tries an exclusion pattern on the
last 100 messages and saves it, adds an Email API sender and gives it a secret shown once.
Screenshots go to $RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inbox.models import EmailApiSender, ExclusionPattern
from tests import factories as f
from tests.connector import filingkit
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_admin_grants_excludes_and_adds_a_sender(
    page, live_server, shots, console_messages, viewport
):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    f.UserFactory(
        username="ada", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    support = f.SharedMailboxFactory(email_address="support@relay.test")
    now = timezone.now()
    for i, sender in enumerate(
        [
            "alerts@noreply.example",
            "ana@globex.example",
            "digest@noreply.example",
            "bo@acme.example",
        ]
    ):
        filingkit.mail(
            support, sender=sender, subject=f"Mail {i + 1}", date=now - dt.timedelta(hours=i)
        )

    sign_in(page, live_server, "ada", f"/inbox/mailboxes/{support.pk}/")
    access = page.locator("#access")
    expect(access.get_by_text("Nobody reads this mailbox yet.")).to_be_visible()

    # Grant Tom.
    access.get_by_label("Person").select_option(label="Tom Teammate (tom)")
    access.get_by_role("button", name="Give access").click()
    expect(page.get_by_text("Tom Teammate can now read support@relay.test.")).to_be_visible()
    expect(page.locator("#grants")).to_contain_text("Tom Teammate")
    assert list(support.granted_users.all()) == [tom]
    page.locator("#access").scroll_into_view_if_needed()
    shot(page, shots, f"{viewport}-1-granted.png")

    # An exclusion pattern: its dry run first (htmx swaps the section), then Save.
    exclusions = page.locator("#exclusions")
    exclusions.get_by_label("Pattern").fill("*@noreply.example")
    exclusions.get_by_role("button", name="Try on the last 100 messages").click()
    dry_run = page.locator("#dry-run")
    expect(dry_run).to_contain_text("would exclude 2 of the last 100 messages")
    expect(dry_run).to_contain_text("alerts@noreply.example")
    expect(dry_run).not_to_contain_text("ana@globex.example")
    assert not ExclusionPattern.objects.exists()
    dry_run.scroll_into_view_if_needed()
    shot(page, shots, f"{viewport}-2-dry-run.png")
    page.locator("#dry-run").get_by_role("button", name="Save pattern").click()
    expect(page.locator("#exclusions")).to_contain_text(
        "*@noreply.example is excluded from now on, in every mailbox."
    )
    expect(page.locator("#exclusion-list")).to_contain_text("*@noreply.example")
    assert list(ExclusionPattern.objects.values_list("pattern", flat=True)) == ["*@noreply.example"]

    # An Email API sender, then its secret, shown once.
    api = page.locator("#api")
    api.get_by_label("Sender address").fill("forms@web.example")
    api.get_by_role("button", name="Add sender").click()
    expect(page.get_by_text("forms@web.example may now send Email API documents.")).to_be_visible()
    expect(page.locator("#api-senders")).to_contain_text("Secret: none")
    page.locator("#api-senders").get_by_role("button", name="Set a secret").click()
    secret = page.locator("#new-secret-value").input_value()
    assert len(secret) >= 32
    assert EmailApiSender.objects.get().secret_matches(secret)
    page.locator("#new-secret").scroll_into_view_if_needed()
    shot(page, shots, f"{viewport}-3-sender-secret.png")
    page.goto(f"{live_server.url}/inbox/mailboxes/{support.pk}/")  # back later: not shown again
    expect(page.locator("#api-senders")).to_contain_text("Secret: set")
    expect(page.locator("#new-secret")).to_have_count(0)

    # Nothing overflows sideways on a phone.
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow
    assert not csp_violations(console_messages)
