"""Browser tests: Debian's headless Chromium driven by pytest-playwright against pytest-django's
live_server."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a
# thread with a running loop unless told that this (test-only) use is fine.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

# An expectation waits up to 15 s (Playwright's default is 5): four test workers on two cores,
# with Chromium, Dovecot and Celery beside them, can take longer than 5 s to show what is
# right; a passing expectation returns as soon as it holds, so only a failure waits longer.
expect.set_options(timeout=15_000)


# Debian's chromium-headless-shell (bin/test installs it), the build Playwright itself runs
# headless pages in: tests/web in 387 CPU-seconds against 609 with the full browser, same tests
# passing. RELAY_TEST_CHROMIUM names another binary (/usr/bin/chromium, also installed); without
# the shell, the full browser is used. The shell once made the phone writing flow fail (its
# faster pages let a tap land before the newest message's body, then loaded apart, pushed the
# reply down: a product fault, fixed in inbox/views/conversations.py and tested in
# tests/web/test_reading_flows.py).
CHROMIUM = os.environ.get("RELAY_TEST_CHROMIUM") or next(
    (p for p in ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium") if Path(p).exists()),
    "/usr/bin/chromium",
)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # One renderer per page rather than one per site and per sandboxed frame (every
            # message body is one): less CPU for the same pages. Process isolation is defence
            # against side channels; what the tests check (no script runs, nothing loads from
            # outside) is the frame's sandbox and CSP, the same in either process model.
            "--disable-site-isolation-trials",
            "--disable-features=IsolateSandboxedIframes,SitePerProcess,IsolateOrigins",
        ],
    }


@pytest.fixture
def console_messages(page):
    """Everything the page logs (CSP violations are reported on the console)."""
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    return messages


@pytest.fixture
def shots(tmp_path) -> str:
    """Where a browser test writes its screenshots (tests/web/helpers.py shot): $RELAY_SCREENSHOTS,
    to look at them after a run; unset, none are taken."""
    directory = Path(os.environ.get("RELAY_SCREENSHOTS") or tmp_path / "shots")
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory)


@pytest.fixture(autouse=True)
def _pages_end_with_their_test(request):
    """Every browser page a test opened is closed when it ends, and the live server has
    answered what they had asked, before the database is emptied for the next test.

    The live server lives as long as the worker. A page left open (a second person's
    `browser.new_context()`) went on polling it during the next tests, and a request still
    running when pytest-django empties the tables holds locks the TRUNCATE waits for, while
    waiting itself for one the TRUNCATE took: PostgreSQL then ends one of them ("deadlock
    detected", a red teardown). Runs after the test's own page and context are closed
    (pytest-playwright's fixtures end first) and before the flush (pytest-django's ends last)."""
    browser = request.getfixturevalue("browser") if "browser" in request.fixturenames else None
    yield
    if browser is None:
        return
    for context in list(browser.contexts):
        context.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        thread.name.endswith("(process_request_thread)") for thread in threading.enumerate()
    ):
        time.sleep(0.02)


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """Pages as a person who asked for reduced motion sees them: Bootstrap's fades and Relay's
    pulses stop (crm/static/css, inbox/static/css), so a step never catches a dialog half-way
    in and Chromium paints no animation frames."""
    return {**browser_context_args, "reduced_motion": "reduce"}
