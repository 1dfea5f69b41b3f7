"""Live updates in a real browser (docs/product.md §7.14): Relay under uvicorn
(tests/servers/asgi.py), real Redis, real Dovecot and a real sync. Mail delivered while the
inbox or a record is open appears without a reload, well before the 15 s poll could have
brought it; a notification rings the bell at once; without Redis the page polls as before.
Laptop and phone. Screenshots go to $RELAY_SCREENSHOTS (default: tmp_path)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from connector.sync.mailbox import sync_mailbox
from inbox import live
from notifications.models import Kind
from notifications.services import notify
from tests import factories as f
from tests.connector.synckit import make_mailbox, make_raw
from tests.web.helpers import csp_violations, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = pytest.mark.parametrize(
    ("screen", "size"), [("laptop", (1440, 900)), ("phone", (390, 844))], ids=["laptop", "phone"]
)
POLL_SECONDS = 15  # inbox/templates/inbox/inbox.html: the list's poll


@pytest.fixture
def shots(tmp_path) -> str:
    directory = Path(os.environ.get("RELAY_SCREENSHOTS") or tmp_path / "shots")
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory)


@pytest.fixture
def eager_tasks():
    """Filing runs in the syncing process once the sync commits, as a worker would run it."""
    from crm.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


@pytest.fixture(autouse=True)
def _fresh_publisher():
    live.reset()
    yield
    live.reset()


@pytest.fixture
def olivia_mailbox(imap_user, eager_tasks):
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    mailbox = make_mailbox(imap_user, owner=olivia, active_folders=["INBOX"])
    imap_user.server.deliver(imap_user, make_raw("Already here", to=imap_user.email))
    sync_mailbox(mailbox.pk)  # the first sync: the inbox is not empty when opened
    return mailbox


def sign_in(page, server, path: str) -> float:
    page.goto(f"{server.url}{path}")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")
    return time.monotonic()


def deliver_and_sync(mailbox, imap_user, subject: str) -> None:
    imap_user.server.deliver(imap_user, make_raw(subject, to=imap_user.email))
    sync_mailbox(mailbox.pk)


def no_errors(console_messages) -> None:
    assert csp_violations(console_messages) == []
    assert not [m for m in console_messages if m.startswith(("error", "pageerror"))]


@SCREENS
def test_new_mail_and_a_notification_appear_without_a_reload(
    page, asgi_server, olivia_mailbox, imap_user, shots, console_messages, screen, size
):
    page.set_viewport_size({"width": size[0], "height": size[1]})
    loaded = sign_in(page, asgi_server, "/inbox/")
    expect(page.get_by_text("Already here").first).to_be_visible()
    body = page.locator("body")
    expect(body).to_have_attribute("data-relay-live", "open")
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/inbox/poll/" in r.url else None)

    deliver_and_sync(olivia_mailbox, imap_user, "Live: the quote you asked for")
    delivered = time.monotonic()
    expect(page.get_by_text("Live: the quote you asked for").first).to_be_visible(timeout=5000)
    shown = time.monotonic()
    # Before the list's first poll could have run, and through the stream: the event arrived
    # and it alone asked for the list.
    assert shown - loaded < POLL_SECONDS
    assert shown - delivered < 5
    assert int(body.get_attribute("data-relay-events-seen")) >= 1
    assert polls, "the event refreshed the list"
    shot(page, shots, f"live-inbox-new-mail-{screen}.png")

    notify(recipient=olivia_mailbox.owner, kind=Kind.ASSIGNED, text="Tom gave you a conversation")
    bell = page.locator(".relay-bell-count")
    expect(bell).to_have_text("1", timeout=3000)  # not the 30 s poll
    assert body.get_attribute("data-relay-last-event") == "notification"
    shot(page, shots, f"live-bell-{screen}.png")
    no_errors(console_messages)


@SCREENS
def test_a_record_email_tab_shows_new_mail_filed_on_it(
    page, asgi_server, olivia_mailbox, imap_user, shots, console_messages, screen, size
):
    contact = f.ContactFactory(first_name="Ana", last_name="Customer")
    f.ContactEmailFactory(contact=contact, email="ana@customer.example")
    page.set_viewport_size({"width": size[0], "height": size[1]})
    sign_in(page, asgi_server, contact.get_absolute_url())
    expect(page.locator("body")).to_have_attribute("data-relay-live", "open")
    page.locator("#email-tab").click()
    pane = page.locator("#email-pane")
    expect(pane).to_be_visible()
    expect(pane.locator("> *").first).to_be_visible()

    deliver_and_sync(olivia_mailbox, imap_user, "Live: filed on Ana")
    expect(pane.get_by_text("Live: filed on Ana").first).to_be_visible(timeout=5000)
    shot(page, shots, f"live-email-tab-{screen}.png")
    page.locator("#details-tab").click()
    expect(page.locator("#timeline").get_by_text("Live: filed on Ana").first).to_be_visible()
    no_errors(console_messages)


def test_without_redis_the_inbox_polls_as_before(
    page, asgi_server, settings, olivia_mailbox, imap_user, shots, console_messages
):
    settings.RELAY_LIVE_URL = ""
    live.reset()
    page.set_viewport_size({"width": 1440, "height": 900})
    loaded = sign_in(page, asgi_server, "/inbox/")
    expect(page.get_by_text("Already here").first).to_be_visible()
    assert page.locator("body").get_attribute("data-relay-events") is None
    assert page.locator("body").get_attribute("data-relay-live") is None  # no EventSource

    deliver_and_sync(olivia_mailbox, imap_user, "Polled: still arrives")
    expect(page.get_by_text("Polled: still arrives").first).to_be_visible(
        timeout=(POLL_SECONDS + 5) * 1000
    )
    assert time.monotonic() - loaded >= POLL_SECONDS - 1  # it was the poll
    shot(page, shots, "live-off-polled-laptop.png")
    no_errors(console_messages)


def test_redis_lost_under_an_open_page_brings_the_polls_back(
    page, asgi_server, settings, olivia_mailbox, imap_user, fault_proxy_factory, console_messages
):
    """docs/reliability.md P-21 in the browser: the stream dies with its Redis, the page is
    refused a new one (204) and its list polls again, so new mail still comes."""
    from urllib.parse import urlsplit

    target = urlsplit(settings.RELAY_LIVE_URL)
    proxy = fault_proxy_factory(target.hostname, target.port or 6379)
    settings.RELAY_LIVE_URL = f"redis://127.0.0.1:{proxy.port}{target.path}"
    live.reset()
    page.set_viewport_size({"width": 1440, "height": 900})
    sign_in(page, asgi_server, "/inbox/")
    body = page.locator("body")
    expect(body).to_have_attribute("data-relay-live", "open")

    proxy.cut_all()
    proxy.stop()
    expect(body).to_have_attribute("data-relay-live", "closed", timeout=10000)
    deliver_and_sync(olivia_mailbox, imap_user, "Polled after Redis went away")
    expect(page.get_by_text("Polled after Redis went away").first).to_be_visible(
        timeout=(POLL_SECONDS + 5) * 1000
    )
    assert body.get_attribute("data-relay-events-seen") is None  # it was the poll
    no_errors(console_messages)
