"""An admin connects a shared Microsoft 365 mailbox with her own sign-in, in a real browser at
laptop 1440x900 and phone 390x844 (docs/product.md §2.9): the address first, then Microsoft's
sign-in (played by tests/servers/oauth.py: Microsoft cannot be reached from here), back on the
mailbox's page with its sign-in's expiry warning. Screenshots go to $RELAY_SCREENSHOTS."""

# The fixtures of tests/servers/oauth.py are imported by name: parameters "redefine" them.
# ruff: noqa: F811
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.models import Mailbox
from tests import factories as f
from tests.servers.oauth import oauth_server, oauth_server_session  # noqa: F401
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_admin_connects_a_shared_microsoft_mailbox(
    page, live_server, shots, console_messages, oauth_server, viewport
):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    f.UserFactory(
        username="ada", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )
    oauth_server.sign_in_as = "ada@contoso.example"
    # Microsoft's sign-in of an app whose refresh tokens live 5 days (a tenant policy).
    oauth_server.refresh_token_expires_in = 5 * 24 * 3600

    sign_in(page, live_server, "ada", "/inbox/mailboxes/connect/?kind=shared")
    step = page.locator("#shared-oauth")
    expect(step).to_contain_text("Full access")
    step.get_by_label("Shared mailbox address").fill("support@contoso.example")
    shot(page, shots, f"{viewport}-shared-1-address.png")
    step.get_by_role("button", name="Continue with Microsoft").click()

    expect(page.get_by_text("support@contoso.example is connected.")).to_be_visible()
    mailbox = Mailbox.objects.get()
    assert mailbox.kind == "shared" and mailbox.oauth_account == "ada@contoso.example"
    expect(page.locator("#finish-setup")).to_be_visible()
    warning = page.locator("#grant-expiry")
    expect(warning).to_contain_text("through ada@contoso.example")
    expect(warning.get_by_role("link", name="Reconnect now")).to_be_visible()
    shot(page, shots, f"{viewport}-shared-2-connected.png")

    assert not page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not csp_violations(console_messages)
    errors = [m for m in console_messages if m.startswith(("error", "pageerror"))]
    assert not errors, errors
