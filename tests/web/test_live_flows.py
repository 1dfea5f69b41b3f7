"""Live updates in a real browser (docs/product.md §7.14): Relay under uvicorn
(tests/servers/asgi.py), real Redis, real Dovecot and a real sync. Mail delivered while the
inbox or a record is open appears without a reload, well before the 15 s poll could have
brought it; a notification rings the bell at once; without Redis the page polls as before.
Laptop and phone. Screenshots go to $RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import re
import time

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


def test_a_note_on_a_record_appears_and_goes_on_a_colleagues_open_page(
    browser, asgi_server, console_messages
):
    """Two people on one contact's page: a note Olivia adds shows on Tom's timeline without a
    reload, and goes from it when she deletes it (docs/product.md §7.14, through the records
    channel of inbox/live.py)."""
    f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    contact = f.ContactFactory(first_name="Ana", last_name="Customer")
    other = f.ContactFactory(first_name="Bea", last_name="Elsewhere")
    contexts = [browser.new_context(viewport={"width": 1440, "height": 900}) for _ in range(3)]
    try:
        olivia, tom, elsewhere = (context.new_page() for context in contexts)
        logs = {}
        for name, page in (("olivia", olivia), ("tom", tom), ("elsewhere", elsewhere)):
            logs[name] = []
            page.on("console", lambda m, log=logs[name]: log.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e, log=logs[name]: log.append(f"pageerror: {e}"))
        for page, who, record in ((olivia, "olivia", contact), (tom, "tom", contact)):
            sign_in_as(page, asgi_server, who, record.get_absolute_url())
        sign_in_as(elsewhere, asgi_server, "tom", other.get_absolute_url())
        for page in (olivia, tom, elsewhere):
            expect(page.locator("body")).to_have_attribute("data-relay-live", "open")
            # Set on the page as loaded: still there afterwards means no reload happened.
            page.evaluate("window.relayNoReload = true")
        timeline = tom.locator("#timeline")
        expect(timeline.get_by_text("Ana wants the quote by Friday")).to_have_count(0)

        panel = olivia.locator(".notes-panel")
        panel.get_by_label(re.compile("Add a note")).fill("Ana wants the quote by Friday")
        panel.get_by_role("button", name="Add note").click()
        expect(
            olivia.locator("#timeline").get_by_text("Ana wants the quote by Friday")
        ).to_be_visible()

        expect(timeline.get_by_text("Ana wants the quote by Friday")).to_be_visible(timeout=5000)
        assert tom.evaluate("window.relayNoReload") is True
        assert tom.locator("body").get_attribute("data-relay-last-event") == "record"
        # Another record's page heard the event and left its timeline alone.
        expect(elsewhere.locator("body")).to_have_attribute("data-relay-last-event", "record")
        expect(elsewhere.locator("#timeline").get_by_text("Ana wants")).to_have_count(0)

        # Olivia's own page heard her note too; its timeline settles before she clicks in it.
        expect(olivia.locator("body")).to_have_attribute("data-relay-last-event", "record")
        expect(olivia.locator("#timeline.htmx-request, #timeline.htmx-swapping")).to_have_count(0)
        note = olivia.locator("#timeline .relay-timeline-entry", has_text="Ana wants the quote")
        note.get_by_role("button", name="Delete").click()
        confirm = olivia.locator("#relay-confirm")  # "Delete this note?" (crm/static/js/relay.js)
        expect(confirm).to_be_visible()
        confirm.get_by_role("button", name="Delete").click()
        expect(olivia.locator("#timeline").get_by_text("Ana wants the quote")).to_have_count(0)
        expect(timeline.get_by_text("Ana wants the quote by Friday")).to_have_count(0, timeout=5000)
        assert tom.evaluate("window.relayNoReload") is True
        for log in logs.values():
            no_errors(log)
    finally:
        for context in contexts:
            context.close()


def sign_in_as(page, server, username: str, path: str) -> None:
    page.goto(f"{server.url}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")


def open_history_conversation(page, server):
    """The conversation of the first sync's mail, open on a laptop with its stream live: (its
    message, its thread, the status shown, "Done": that mail is history)."""
    from inbox.models import Message, Thread

    message = Message.objects.get(subject="Already here")
    thread = Thread.objects.get(pk=message.thread_id)
    page.set_viewport_size({"width": 1440, "height": 900})
    sign_in(page, server, f"/inbox/conversations/{message.pk}/")
    expect(page.locator("body")).to_have_attribute("data-relay-live", "open")
    status = page.locator("#conversation [data-conversation-status]")
    expect(status).to_have_text("Done")
    return message, thread, status


def test_a_live_refresh_leaves_an_unfolded_reply_open(
    page, asgi_server, olivia_mailbox, console_messages
):
    """A reply unfolded under the thread and not yet typed in is work in progress: a change
    made by someone else meanwhile does not fold it away (the conversation refreshes once it is
    folded again). Seen as a flake of the writing flows: the reply closed under the click."""
    from inbox.models import Thread
    from inbox.services.conversations import conversation_set_status

    message, thread, status = open_history_conversation(page, asgi_server)

    reply = page.locator("#inline-reply")
    reply.locator("summary.relay-inline-reply-summary").click()
    expect(reply.locator("[data-composer-editor]")).to_be_visible()
    page.locator("#conversation h2").first.click()  # nothing typed, nothing focused in it
    seen = int(page.locator("body").get_attribute("data-relay-events-seen") or 0)
    conversation_set_status(actor=None, thread=thread, status=Thread.Status.WAITING)
    expect(page.locator("body")).not_to_have_attribute("data-relay-events-seen", str(seen))
    page.wait_for_timeout(500)  # what a refresh would take to land
    expect(reply).to_have_attribute("open", "")
    expect(status).to_have_text("Done")

    reply.locator("summary.relay-inline-reply-summary").click()
    expect(reply).not_to_have_attribute("open", "")
    conversation_set_status(actor=None, thread=thread, status=Thread.Status.OPEN)
    expect(status).to_have_text("Open", timeout=5000)
    no_errors(console_messages)


def test_a_refresh_answered_after_the_reply_was_unfolded_leaves_it_open(
    page, asgi_server, olivia_mailbox, console_messages
):
    """The busy test when a refresh is asked for is not enough: its answer can land after the
    person unfolded the reply (the writing flow's flake on a phone: the reply folded under the
    click, the refresh having been asked for by the conversation's own read-on-open a moment
    before). That answer is dropped, and the refresh is owed: once the reply is folded again,
    the change shows without another event."""
    from inbox.models import Thread
    from inbox.services.conversations import conversation_set_status

    message, thread, status = open_history_conversation(page, asgi_server)
    reply = page.locator("#inline-reply")

    held = []
    refreshes = re.compile(rf"/inbox/conversations/{message.pk}/\?reload=1")

    def hold(route):
        held.append(route)

    page.route(refreshes, hold)
    conversation_set_status(actor=None, thread=thread, status=Thread.Status.WAITING)
    for _ in range(150):  # the event arrives, the page asks for the conversation again
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the change never asked for a refresh"

    reply.locator("summary.relay-inline-reply-summary").click()  # meanwhile, the person
    expect(reply.locator("[data-composer-editor]")).to_be_visible()
    while held:
        held.pop().continue_()
    page.unroute(refreshes, hold)
    expect(page.locator("#conversation.htmx-request")).to_have_count(0)  # the answer is in
    page.wait_for_timeout(300)
    expect(reply).to_have_attribute("open", "")
    expect(status).to_have_text("Done")

    reply.locator("summary.relay-inline-reply-summary").click()  # folded: the change comes
    expect(reply).not_to_have_attribute("open", "")
    expect(status).to_have_text("Waiting", timeout=5000)
    no_errors(console_messages)
