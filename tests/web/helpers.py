"""Helpers shared by the browser tests."""

from __future__ import annotations

import os

from playwright.sync_api import expect

from tests import factories as f

# Bootstrap fades a tab pane in after marking it active; until "show" is added it is
# transparent, and a screenshot (or a person) would see an empty page. (A locator, not
# page.wait_for_function: its polling evaluates a string, which our CSP rightly refuses.)
_UNSETTLED = ".tab-pane.active:not(.show), .collapsing"


def shot(page, output_path: str, name: str) -> None:
    """Wait for the page to settle (no transition half-way), then, when RELAY_SCREENSHOTS is
    set, save a full-page screenshot there to look at. Unset (CI), nobody looks at them: each
    cost Chromium about 0.2 s of CPU to paint and encode, 172 of them per run."""
    expect(page.locator(_UNSETTLED)).to_have_count(0)
    if not os.environ.get("RELAY_SCREENSHOTS"):
        return
    page.screenshot(path=f"{output_path}/{name}", full_page=True, animations="disabled")


def csp_violations(console_messages: list[str]) -> list[str]:
    return [m for m in console_messages if "Content Security Policy" in m]


def sign_in(page, live_server, username: str, path: str = "/accounts/login/") -> None:
    """Open `path` (a page that wants a signed-in user shows the sign-in form and comes back
    to it) and sign in as `username` with the factories' password, through the form as a
    person does, and wait for the page it leads to to load. What to wait for afterwards is the
    caller's: what that page should show."""
    page.goto(f"{live_server.url}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # The page signed in to, with its deferred scripts run (the load event): a step taken
    # before them (a From changed before compose.js listens) does what no person could.
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.wait_for_load_state("load")
