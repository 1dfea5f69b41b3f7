"""Helpers shared by the browser tests."""

from __future__ import annotations

from playwright.sync_api import expect

# Bootstrap fades a tab pane in after marking it active; until "show" is added it is
# transparent, and a screenshot (or a person) would see an empty page. (A locator, not
# page.wait_for_function: its polling evaluates a string, which our CSP rightly refuses.)
_UNSETTLED = ".tab-pane.active:not(.show), .collapsing"


def shot(page, output_path: str, name: str) -> None:
    """A full-page screenshot of the settled page (no transition half-way)."""
    expect(page.locator(_UNSETTLED)).to_have_count(0)
    page.screenshot(path=f"{output_path}/{name}", full_page=True, animations="disabled")


def csp_violations(console_messages: list[str]) -> list[str]:
    return [m for m in console_messages if "Content Security Policy" in m]
