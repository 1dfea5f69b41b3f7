"""The screenshots in docs/screenshots/: the inbox, a conversation open and a contact's record
page, on a laptop (1440x900) and a phone (390x844), taken from a running `make run` (demo data,
signed in as demo / demo). Run by hand, never in CI; docs/screenshots/README.md says how they
were made.

    PORT=8041 make run                                   # in another terminal
    .venv/bin/python bench/screenshots.py --url http://127.0.0.1:8041 --name after

writes docs/screenshots/after-inbox-laptop.jpg, after-inbox-phone.jpg, after-conversation-...,
after-contact-... (JPEG, what the screen shows, not the whole page). The conversation is the
demo's "[TKT-1055]" thread and the contact its sender, Carlos Ruiz, so that two runs of
different commits show the same mail. Every page must load without a console error, a failed
request or a page wider than the screen; the script says which did and exits 1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}
CONVERSATION = "TKT-1055"  # a demo thread of five messages, filed on a contact and a ticket
CONTACT = "Carlos Ruiz"  # who wrote it


def _sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def _settle(page) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(400)  # Bootstrap's fades and the conversation's scroll to the newest


def _open_conversation(page, url: str) -> None:
    page.goto(f"{url}/inbox/")
    _settle(page)
    row = page.locator("a[href*='/inbox/conversations/']", has_text=CONVERSATION).first
    row.click()
    # Open when the pane has its header ("5 messages · Relay Support", in both commits) and no
    # htmx request is on its way.
    expect(page.get_by_text(re.compile(r"^\d+ messages"))).to_be_visible(timeout=20_000)
    expect(page.locator(".htmx-request")).to_have_count(0, timeout=20_000)
    _settle(page)
    # The newest message's body is a lazy, sandboxed frame: wait for its text, or the shot shows
    # an empty box (the "before" commit had no frames).
    frames = page.locator("iframe")
    if frames.count():
        body = page.frame_locator("iframe").last.locator("body")
        expect(body).to_contain_text(re.compile(r"\w"), timeout=20_000)
        page.wait_for_timeout(500)


def _open_contact(page, url: str) -> None:
    page.goto(f"{url}/contacts/?q={CONTACT.replace(' ', '+')}")
    _settle(page)
    page.locator("#results").get_by_role("link", name=CONTACT, exact=True).first.click()
    _settle(page)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="a running make run")
    parser.add_argument("--name", required=True, help="file name prefix: before, after...")
    parser.add_argument("--out", default="docs/screenshots", help="folder for the JPEGs")
    parser.add_argument("--user", default="demo")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--quality", type=int, default=70, help="JPEG quality")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    url = args.url.rstrip("/")
    # Debian's Chromium where there is one (as the browser tests use), else Playwright's own.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for viewport, (width, height) in VIEWPORTS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            where = {"shot": "sign-in"}

            def note(text: str, where=where, viewport=viewport) -> None:
                problems.append(f"{viewport} {where['shot']}: {text}")

            page.on("console", lambda m, note=note: m.type == "error" and note(m.text))
            page.on("pageerror", lambda e, note=note: note(f"pageerror: {e}"))
            # A poll cut short by the next navigation is aborted, not failed.
            page.on(
                "requestfailed",
                lambda r, note=note: (
                    r.failure != "net::ERR_ABORTED" and note(f"failed: {r.url} {r.failure}")
                ),
            )
            page.on(
                "response", lambda r, note=note: r.status >= 400 and note(f"{r.status} {r.url}")
            )
            _sign_in(page, url, args.user, args.password)
            for shot, go in (
                ("inbox", lambda page=page: (page.goto(f"{url}/inbox/"), _settle(page))),
                ("conversation", lambda page=page: _open_conversation(page, url)),
                ("contact", lambda page=page: _open_contact(page, url)),
            ):
                where["shot"] = shot
                go()
                scroll, inner = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
                if scroll > inner:
                    note(f"the page is {scroll}px wide on a {inner}px screen")
                path = out / f"{args.name}-{shot}-{viewport}.jpg"
                page.screenshot(path=path, type="jpeg", quality=args.quality)
                print(f"{path}  {path.stat().st_size // 1024} KB  {page.url}")
            context.close()
        browser.close()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
