"""The health page says how new mail reaches a mailbox (docs/product.md §3.11): Live while a push
gateway watches it, Polling once that gateway died, at a laptop's and a phone's size.
Screenshots go to $RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from connector.sync import watches
from inbox.models import PushGateway, WatchState
from tests import factories as f
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("screen", "size"), [("laptop", (1440, 900)), ("phone", (390, 844))], ids=["laptop", "phone"]
)
def test_health_shows_live_then_polling_when_the_gateway_dies(
    page, live_server, shots, console_messages, screen, size
):
    owner = f.UserFactory(username="olivia")
    mailbox = f.MailboxFactory(owner=owner, email_address="olivia@relay.test", first_sync_done=True)
    f.FolderFactory(mailbox=mailbox, name="INBOX", special_use="inbox", is_active=True)
    gateway = watches.register("gw-1")
    watches.claim(gateway.pk, 1)
    watches.set_state(gateway.pk, mailbox.pk, WatchState.LIVE, "watching with notify")

    page.set_viewport_size({"width": size[0], "height": size[1]})
    sign_in(page, live_server, "olivia", f"/inbox/mailboxes/{mailbox.pk}/health/")
    card = page.locator("#watch-state")
    expect(card).to_contain_text("Live")
    expect(card).to_contain_text("New mail arrives within seconds")
    expect(card).to_contain_text("gateway seen")
    expect(page.get_by_text("Pushed as it arrives; checked hourly as well")).to_be_visible()
    shot(page, shots, f"push-health-live-{screen}.png")

    # The gateway stops renewing (killed): the page says Polling even before anyone reaps it.
    PushGateway.objects.filter(pk=gateway.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    page.reload()
    expect(card).to_contain_text("Polling")
    expect(card).to_contain_text("Checked every interval")
    expect(card).not_to_contain_text("gateway seen")  # a dead gateway is not "seen"
    shot(page, shots, f"push-health-polling-{screen}.png")
    assert csp_violations(console_messages) == []
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))]
