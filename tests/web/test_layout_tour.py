"""Every page as a user sees it, on a laptop (1440x900) and a phone (390x844): nothing wider
than the screen (no sideways scrolling on a phone), no table cut at its card's edge, no script
error, CSP violation or failed request in the console; and the inbox list legible on both
(docs/product.md §7.2): the sender's name whole, each tag whole or not shown at all, the list's
name and its buttons on one line, an older message's sender whole in a conversation, and the
outbox banner counting in plain English. Screenshots go to $RELAY_SCREENSHOTS (when
set)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from inbox.models import OutboxEntry, Thread
from notifications.models import Kind
from notifications.services import notify
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def shots(tmp_path) -> str:
    directory = Path(os.environ.get("RELAY_SCREENSHOTS") or tmp_path / "shots") / "layout"
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory)


def _world():
    """A shared inbox with a conversation that carries every kind of tag, the records it is
    filed on, and two replies that did not go out."""
    maya = f.UserFactory(
        username="maya", first_name="Maya", last_name="Chen", is_staff=True, is_superuser=True
    )
    sofia = f.UserFactory(username="sofia", first_name="Sofia", last_name="Álvarez")
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test", display_name="Support")
    mailbox.granted_users.add(maya, sofia)
    folders = mailkit.folders(mailbox)
    mailkit.many_conversations(folders["inbox"], 6)
    account = f.AccountFactory(name="Soluciones Andinas S.A.", domains=["andinas.example"])
    carlos = f.ContactFactory(
        first_name="Carlos",
        last_name="Ruiz",
        account=account,
        emails=["carlos@andinas.example", "facturacion.internacional@soluciones-andinas.example"],
    )
    ticket = f.TicketFactory(subject="Urgente: envío retenido en aduana", contact=carlos)
    opportunity = f.OpportunityFactory(name="Andinas renewal", account=account, contact=carlos)
    lead = f.LeadFactory(first_name="Lee", last_name="Ng", company_name="Hooli")
    messages = mailkit.conversation(
        folders["inbox"],
        size=3,
        subject="RE: [TKT-1055] Urgente: envío ORD-45267 retenido en aduana",
        sender="carlos@andinas.example",
        name="Carlos Ruiz",
        day=300,
        seen=False,
        flagged=True,
        has_attachments=True,
    )
    for message in messages:
        f.FilingFactory(message=message, contact=carlos)
        f.FilingFactory(message=message, ticket=ticket, rule="subject_reference")
    Thread.objects.filter(pk=messages[0].thread_id).update(
        status=Thread.Status.WAITING, assignee=sofia
    )
    for n in range(2):
        f.OutboxEntryFactory(
            mailbox=mailbox,
            created_by=maya,
            state=OutboxEntry.State.FAILED,
            subject=f"Reply {n}",
            reply_to_message=messages[-1],
        )
    # The notifications page with news and a problem to act on, the kinds told apart.
    notify(
        recipient=maya,
        kind=Kind.SEND_FAILED,
        text="“Reply 0” to customer@customer.example did not go out",
        key="tour:1",
    )
    notify(
        recipient=maya,
        kind=Kind.MENTIONED,
        actor=sofia,
        text="Sofia Álvarez mentioned you on Carlos Ruiz",
        key="tour:2",
    )
    return {
        "mailbox": mailbox,
        "message": messages[-1],
        "contacts": carlos,
        "accounts": account,
        "tickets": ticket,
        "opportunities": opportunity,
        "leads": lead,
    }


def _sign_in(page, live_server):
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("maya")
    page.get_by_label("Password").fill(f.DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox/"))


def _pages(world) -> dict[str, str]:
    box = world["mailbox"].pk
    message = world["message"].pk
    pages = {
        "inbox": "/inbox/",
        "inbox-mine": f"/inbox/?mailbox={box}&view=mine",
        "inbox-unassigned": f"/inbox/?mailbox={box}&view=unassigned",
        "inbox-all-mailboxes": "/inbox/?mailbox=all",
        "inbox-search": f"/inbox/?mailbox={box}&q=aduana",
        "inbox-search-nothing": f"/inbox/?mailbox={box}&q=nothing-matches-this",
        "conversation": f"/inbox/conversations/{message}/",
        "compose": f"/inbox/compose/?mailbox={box}",
        "reply": f"/inbox/compose/?reply_to={message}&mode=reply",
        "forward": f"/inbox/compose/?reply_to={message}&mode=forward",
        "qualify": f"/inbox/conversations/{message}/qualify/",
        "drafts": "/inbox/drafts/",
        "outbox": "/inbox/outbox/",
        "triage": "/inbox/triage/",
        "reports": "/inbox/reports/",
        "notifications": "/notifications/",
        "notification-settings": "/notifications/settings/",
        "mentions": "/notes/mentions/",
        "mailboxes": "/inbox/mailboxes/",
        "mailbox-settings": f"/inbox/mailboxes/{box}/",
        "mailbox-health": f"/inbox/mailboxes/{box}/health/",
        "mailbox-import": f"/inbox/mailboxes/{box}/import/",
        "mailbox-connect": "/inbox/mailboxes/connect/",
        "site-settings": "/site-settings/",
        "my-addresses": "/me/addresses/",
        "preferences": "/inbox/preferences/",
    }
    for kind in ("contacts", "accounts", "leads", "tickets", "opportunities"):
        pages[f"{kind}-list"] = f"/{kind}/"
        pages[f"{kind}-detail"] = world[kind].get_absolute_url()
        pages[f"{kind}-new"] = f"/{kind}/new/"
    return pages


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_no_page_is_wider_than_the_screen_or_logs_an_error(page, live_server, shots, viewport):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    world = _world()
    problems: list[str] = []
    current = {"name": "sign-in"}

    def note(text: str) -> None:
        problems.append(f"{current['name']}: {text}")

    page.on(
        "console",
        lambda m: (
            (m.type == "error" or "Content Security Policy" in m.text)
            and note(f"{m.type}: {m.text}")
        ),
    )
    page.on("pageerror", lambda error: note(f"pageerror: {error}"))
    # A request the browser cancels (net::ERR_ABORTED: the bell's poll or focus refresh still
    # in flight when the test moves to the next page) is not a failure anyone sees; a server
    # error still is, as a response >= 400 below.
    page.on(
        "requestfailed",
        lambda r: "ERR_ABORTED" not in (r.failure or "") and note(f"failed: {r.url} {r.failure}"),
    )
    page.on("response", lambda r: r.status >= 400 and note(f"HTTP {r.status}: {r.url}"))

    page.goto(f"{live_server.url}/accounts/login/")
    sizes = {"sign-in": page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")}
    cut: dict[str, list[str]] = {}
    _sign_in(page, live_server)
    for name, path in _pages(world).items():
        current["name"] = name
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.ok, (name, response and response.status)
        page.wait_for_load_state("load")
        # htmx parts (the notes panel, the timeline, the bell) in place before measuring.
        expect(page.locator(".htmx-request")).to_have_count(0)
        sizes[name] = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
        # A table cut at the card's edge hides its last column without a sign; the reports'
        # day-by-day figures are the one table meant to be scrolled sideways.
        if name != "reports":
            cut[name] = page.evaluate(
                """[...document.querySelectorAll('.table-responsive')]
                .filter(e => e.scrollWidth > e.clientWidth + 1)
                .map(e => e.scrollWidth + '>' + e.clientWidth)"""
            )
        shot(page, shots, f"{viewport}-{name}.png")
    wider = {name: size for name, size in sizes.items() if size[0] > size[1]}
    assert wider == {}, f"wider than the {viewport} screen (scrollWidth, innerWidth): {wider}"
    assert {name: tables for name, tables in cut.items() if tables} == {}
    assert problems == []


def _clipped_tags(row) -> list[str]:
    """The tags of a row's first line that a user sees cut: shortened with an ellipsis, or half
    inside the line (a tag wholly below it is hidden on purpose)."""
    return row.locator(".inbox-thread-meta").evaluate(
        """meta => { const box = meta.getBoundingClientRect(); const bad = [];
        for (const tag of meta.children) {
          const r = tag.getBoundingClientRect();
          if (r.top >= box.bottom - 1) continue;  // wrapped out of sight, whole
          if (tag.scrollWidth > tag.clientWidth + 1 || r.right > box.right + 1
              || r.left < box.left - 1 || r.bottom > box.bottom + 1) bad.push(tag.textContent);
        }
        return bad; }"""
    )


def _shown_tags(row) -> list[str]:
    """The tags a user sees on a row's first line, left to right."""
    return row.locator(".inbox-thread-meta").evaluate(
        """meta => { const box = meta.getBoundingClientRect();
        return [...meta.children].filter(t => t.getBoundingClientRect().top < box.bottom - 1)
          .sort((a, b) => a.getBoundingClientRect().left - b.getBoundingClientRect().left)
          .map(t => t.textContent.trim() || t.getAttribute('aria-label')); }"""
    )


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_inbox_list_is_legible(page, live_server, shots, viewport):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    _world()
    _sign_in(page, live_server)

    # Two replies failed: the banner on every page counts them in plain English.
    expect(page.locator("#outbox-banner")).to_contain_text("2 messages you sent did not go out")

    row = page.locator(".inbox-thread", has_text="Urgente: envío ORD-45267")
    sender = row.locator(".inbox-thread-from")
    expect(sender).to_contain_text("Carlos Ruiz")
    # The name is whole, not "Carlos R…".
    assert sender.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert _clipped_tags(row) == []
    shown = _shown_tags(row)
    # What says most comes first: flagged, attachment, the state and the owner; the records
    # as room allows.
    wanted = ["★", "Has attachments", "Waiting", "Sofia", "Carlos Ruiz"]
    assert shown == wanted[: len(shown)], shown
    assert len(shown) >= (4 if viewport == "laptop" else 3), shown
    # The paperclip is drawn, so that it shows without an emoji font (this Chromium has none).
    clip = row.locator(".inbox-clip svg")
    expect(clip).to_be_visible()
    assert clip.evaluate("e => e.getBoundingClientRect().width") >= 10

    # The list's head: its name whole, each button one line high.
    head = page.locator(".inbox-list-head")
    assert head.locator(".inbox-list-title").evaluate("e => e.scrollWidth <= e.clientWidth")
    for name in ("Sync now", "Compact"):
        button = head.get_by_role("button", name=name)
        assert button.evaluate("e => e.getClientRects().length === 1 && e.offsetHeight < 30")
    shot(page, shots, f"{viewport}-inbox-list.png")

    # The conversation: each older message a line whose sender is whole, the phone's too.
    row.locator(".inbox-thread-link").click()
    older = page.locator("details.inbox-msg:not([open]) .inbox-msg-from")
    expect(older).to_have_count(2)
    for n in range(2):
        expect(older.nth(n)).to_contain_text("Carlos Ruiz")
        assert older.nth(n).evaluate("e => e.scrollWidth <= e.clientWidth")
        # ...and the start of its text still shows.
        text = page.locator("details.inbox-msg:not([open]) .inbox-msg-line").nth(n)
        expect(text).to_contain_text("Body of message")
        assert text.evaluate("e => e.getBoundingClientRect().height") > 10
    shot(page, shots, f"{viewport}-conversation-older.png")
