"""The inbox on a phone (390x844) and a laptop (1440x900): a Compose button on the phone, Qualify
and Reply up front in a conversation with the rest under More, and the pager below the list
reachable, not hidden under Compose (docs/product.md §7.1). Screenshots go to
$RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from inbox.models import UserPreferences
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


def _overlap(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_compose_reply_qualify_up_front_and_the_pager_reachable(
    page, live_server, shots, console_messages, viewport
):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    owner = f.UserFactory(username="olivia", first_name="Olivia")
    mailbox = f.MailboxFactory(owner=owner, email_address="olivia@relay.test")
    folders = mailkit.folders(mailbox)
    mailkit.many_conversations(folders["inbox"], 12)
    mailkit.conversation(folders["inbox"], subject="Quote for 40 widgets", day=400)
    UserPreferences.objects.update_or_create(user=owner, defaults={"emails_per_page": 10})

    sign_in(page, live_server, "olivia", "/")
    expect(page).to_have_url(re.compile(r"/inbox/$"))

    compose = page.get_by_role("link", name="Compose", exact=True)
    expect(compose).to_be_visible()
    # The pager under the last conversation: scrolled to, visible, not under Compose.
    older = page.locator(".inbox-pages").get_by_role("link", name="Older")
    older.scroll_into_view_if_needed()
    expect(older).to_be_visible()
    if viewport == "phone":
        page.mouse.wheel(0, 4000)
        assert not _overlap(older.bounding_box(), compose.bounding_box())
    shot(page, shots, f"{viewport}-inbox-pager.png")
    older.click()
    expect(page.locator(".inbox-pages")).to_contain_text("11–13 of 13")
    page.get_by_role("link", name="Newer").click()

    page.locator(".inbox-thread", has_text="Quote for 40 widgets").locator(
        ".inbox-thread-link"
    ).click()
    toolbar = page.locator("#conversation .inbox-toolbar")
    expect(toolbar.get_by_role("button", name="Qualify")).to_be_visible()
    expect(toolbar.get_by_role("link", name="Reply", exact=True)).to_be_visible()
    reply_all = toolbar.get_by_role("link", name="Reply all")
    more = toolbar.get_by_role("button", name="More")
    if viewport == "phone":
        expect(reply_all).to_be_hidden()
        expect(toolbar.get_by_role("button", name="Mark unread")).to_be_hidden()
        more.click()
        menu = page.locator(".dropdown-menu.show")
        for name in ("Reply all", "Forward"):
            expect(menu.get_by_role("link", name=name)).to_be_visible()
        for name in ("Flag", "Mark unread", "Delete"):
            expect(menu.get_by_role("button", name=name)).to_be_visible()
        shot(page, shots, f"{viewport}-conversation-more.png")
        menu.get_by_role("button", name="Flag").click()
        expect(page.locator("#conversation").get_by_role("button", name="More")).to_be_visible()
    else:
        expect(reply_all).to_be_visible()
        expect(compose).to_be_visible()
        shot(page, shots, f"{viewport}-conversation.png")
    assert csp_violations(console_messages) == []
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))]
