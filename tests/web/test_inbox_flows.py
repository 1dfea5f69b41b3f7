"""The inbox in headless Chromium, as a person uses it: open the inbox, open a conversation,
qualify it onto a contact, see it on the contact's Email tab, mark it unread, drive it from the
keyboard, see new mail arrive without a reload, triage; on a laptop and on a phone. Every step
saves a screenshot (to RELAY_SCREENSHOTS when it is set) and the console must show no CSP
violation."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from inbox.models import Filing, Message
from tests import factories as f
from tests.inbox import mailkit
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def inbox_world():
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    mailbox = f.MailboxFactory(owner=olivia, email_address="olivia@relay.test")
    folders = mailkit.folders(mailbox)
    account = f.AccountFactory(name="Globex", domains=["globex.example"])
    ana = f.ContactFactory(
        first_name="Ana", last_name="Lopez", account=account, emails=["ana@globex.example"]
    )
    for day, (subject, sender, name) in enumerate(
        [
            ("Team lunch on Friday", "bob@initech.example", "Bob Porter"),
            ("Your invoice INV-2291", "billing@hooli.example", "Hooli Billing"),
            ("Renewal of the support plan", "maria@umbrella.example", "Maria Santos"),
        ]
    ):
        mailkit.conversation(folders["inbox"], subject=subject, sender=sender, name=name, day=day)
    ticket = f.TicketFactory(subject="Printer jams", contact=ana, account=account)
    (filed,) = mailkit.conversation(
        folders["inbox"],
        subject=f"[{ticket.reference}] Printer still jams",
        sender="ana@globex.example",
        name="Ana Lopez",
        day=5,
    )
    f.FilingFactory(message=filed, ticket=ticket, rule=Filing.Rule.SUBJECT_REFERENCE)
    quote = mailkit.conversation(
        folders["inbox"],
        size=2,
        subject="Quote for 40 widgets",
        sender="ana@globex.example",
        name="Ana Lopez",
        day=9,
        seen=False,
    )
    f.TriageEntryFactory(message=quote[-1], reason="unfiled")
    return {"user": olivia, "mailbox": mailbox, "folders": folders, "ana": ana, "quote": quote}


def _sign_in(page, live_server, username="olivia"):
    sign_in(page, live_server, username, "/inbox/")
    expect(page.locator("#thread-list")).to_be_visible()
    # Visible is not ready: the deferred scripts (keyboard shortcuts, htmx handlers) run
    # just before the load event, which a loaded machine can delay past the next key.
    page.wait_for_load_state("load")


def _row(page, subject):
    return page.locator(".inbox-thread", has_text=subject)


def test_open_qualify_see_on_contact_mark_unread(
    page, live_server, shots, console_messages, inbox_world
):
    page.set_viewport_size({"width": 1366, "height": 860})
    _sign_in(page, live_server)
    quote_row = _row(page, "Quote for 40 widgets")
    expect(quote_row).to_have_class(re.compile(r"\bis-unread\b"))
    expect(quote_row.locator(".inbox-unfiled-tag")).to_have_text("Unfiled")
    expect(page.locator(".inbox-folder.active")).to_contain_text("Inbox")
    expect(page.locator(".inbox-folder.active .inbox-unread-count")).to_have_text("2")
    shot(page, shots, "01-inbox.png")

    # Open the conversation: both messages, the newest one's body loaded; it becomes read.
    quote_row.locator(".inbox-thread-link").click()
    conversation = page.locator("#conversation")
    expect(conversation.get_by_role("heading", name="Quote for 40 widgets")).to_be_visible()
    expect(conversation.locator(".inbox-msg")).to_have_count(2)
    expect(conversation.locator("[data-filed-panel] .inbox-filed-none")).to_be_visible()
    expect(_row(page, "Quote for 40 widgets")).not_to_have_class(re.compile(r"\bis-unread\b"))
    assert not Message.objects.filter(pk__in=[m.pk for m in inbox_world["quote"]], seen=False)
    shot(page, shots, "02-conversation.png")

    # Qualify: the sender's contact is offered first, before "create"; link it.
    conversation.get_by_role("button", name="Qualify").click()
    dialog = page.locator("#qualify-modal")
    expect(dialog.get_by_role("heading", name="Qualify")).to_be_visible()
    suggestion = dialog.locator(".inbox-candidate", has_text="Ana Lopez")
    expect(suggestion).to_contain_text("Already has ana@globex.example")
    shot(page, shots, "03-qualify.png")
    suggestion.get_by_role("button", name="File on Ana Lopez").click()
    expect(dialog.get_by_text("Filed on Ana Lopez.")).to_be_visible()
    expect(dialog.locator(".inbox-chip", has_text="Ana Lopez")).to_contain_text("Filed by Olivia")
    shot(page, shots, "04-qualified.png")
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_be_hidden()
    # The conversation shows the new filing with why, and the list shows it filed.
    # Once for the conversation, in its Filed on panel (docs/product.md §7.12).
    panel = conversation.locator("[data-filed-panel]")
    expect(panel.locator(".inbox-filed-item", has_text="Ana Lopez")).to_contain_text(
        "Filed by Olivia"
    )
    # The row is no longer Unfiled; it names no record, as the one it is filed on is its
    # sender's own contact, which the row shows already.
    expect(_row(page, "Quote for 40 widgets").locator(".inbox-unfiled-tag")).to_have_count(0)
    expect(_row(page, "Quote for 40 widgets").locator(".inbox-record-tag")).to_have_count(0)

    # Mark unread: the row turns bold again and the change is queued for the server. The
    # conversation re-drawn by the answer does not read itself again (docs/product.md §7.7):
    # it carries no auto-read trigger, so nothing marks it read 400 ms later.
    page.locator("#conversation").get_by_role("button", name="Mark unread").click()
    expect(_row(page, "Quote for 40 widgets")).to_have_class(re.compile(r"\bis-unread\b"))
    expect(conversation.locator("[data-inbox-autoread]")).to_have_count(0)
    expect(conversation.get_by_role("button", name="Mark unread")).to_be_visible()
    assert Message.objects.get(pk=inbox_world["quote"][-1].pk).seen is False
    shot(page, shots, "05-marked-unread.png")

    # The contact's Email tab lists it, with why it is there.
    page.goto(f"{live_server.url}{inbox_world['ana'].get_absolute_url()}#email")
    pane = page.locator("#email-pane")
    expect(pane.get_by_text("Re: Quote for 40 widgets")).to_be_visible()
    # The whole conversation went there (the dialog's default).
    expect(pane.get_by_text("2 messages filed here")).to_be_visible()
    expect(pane.get_by_text("Filed by hand")).to_have_count(2)
    shot(page, shots, "06-contact-email-tab.png")

    assert csp_violations(console_messages) == []


def test_keyboard_shortcuts(page, live_server, shots, console_messages, inbox_world):
    page.set_viewport_size({"width": 1366, "height": 860})
    _sign_in(page, live_server)
    page.locator("body").click(position={"x": 5, "y": 400})

    page.keyboard.press("j")
    expect(page.locator(".inbox-thread.is-selected")).to_contain_text("Quote for 40 widgets")
    page.keyboard.press("j")
    expect(page.locator(".inbox-thread.is-selected")).to_contain_text("Printer still jams")
    page.keyboard.press("k")
    page.keyboard.press("j")
    page.keyboard.press("o")
    expect(
        page.locator("#conversation").get_by_role("heading", name=re.compile("Printer still jams"))
    ).to_be_visible()
    expect(page.locator("#conversation .inbox-filed-item").first).to_contain_text(
        "Ticket reference in subject"
    )

    page.keyboard.press("?")
    shortcuts = page.locator("#shortcuts-modal")
    expect(shortcuts).to_be_visible()
    # Focused once shown (Bootstrap ignores Esc while a dialog is still fading in).
    expect(shortcuts).to_be_focused()
    shot(page, shots, "07-shortcuts.png")
    page.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()
    # That Esc closed the dialog only, not the conversation behind it as well (it did, once
    # the dialog had gone: "q" then found no conversation to qualify).
    page.wait_for_timeout(300)
    expect(
        page.locator("#conversation").get_by_role("heading", name=re.compile("Printer still jams"))
    ).to_be_visible()

    page.keyboard.press("q")
    expect(page.locator("#qualify-modal").get_by_role("heading", name="Qualify")).to_be_visible()
    # Focused once the dialog has faded in (Bootstrap ignores Esc until then).
    expect(page.locator("#qualify-q")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#qualify-modal")).to_be_hidden()

    page.keyboard.press("/")
    expect(page.locator("#inbox-search")).to_be_focused()
    page.keyboard.type("invoice")
    expect(page.locator(".inbox-thread")).to_have_count(1)
    expect(page.locator(".inbox-thread")).to_contain_text("Your invoice INV-2291")
    shot(page, shots, "08-search.png")
    assert csp_violations(console_messages) == []


def test_a_key_pressed_while_a_dialog_fades_out_is_the_inboxs(
    page, live_server, console_messages, inbox_world
):
    """Esc closes Qualify and "/" follows at once, while the dialog is still fading out and
    its search box still has the focus: "/" is the inbox's (it focuses the inbox's search once
    the dialog is gone), not a character typed into the closing dialog. A one-second fade-out,
    set by the test, makes the moment the same every run."""
    page.set_viewport_size({"width": 1366, "height": 860})
    _sign_in(page, live_server)
    page.locator("body").click(position={"x": 5, "y": 400})
    page.keyboard.press("j")
    page.keyboard.press("o")
    expect(
        page.locator("#conversation").get_by_role("heading", name=re.compile("Quote for 40"))
    ).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.keyboard.press("q")
    expect(page.locator("#qualify-modal").get_by_role("heading", name="Qualify")).to_be_visible()
    expect(page.locator("#qualify-q")).to_be_focused()
    # Its fade-out takes a second (through the CSSOM: the page's CSP refuses a style element).
    page.evaluate("document.getElementById('qualify-modal').style.transition = 'opacity 1s linear'")
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    expect(page.locator("#qualify-modal")).to_be_hidden()
    expect(page.locator("#inbox-search")).to_be_focused()
    page.keyboard.type("invoice")
    expect(page.locator(".inbox-thread")).to_have_count(1)
    expect(page.locator(".inbox-thread")).to_contain_text("Your invoice INV-2291")
    assert csp_violations(console_messages) == []


def _full_list_polls(page):
    """The list's refreshes answer with the whole list even when nothing changed (the poll
    asks without its fingerprint), so every refresh replaces the list, as one does when new
    mail lands: the moments the races below need, made every time."""

    def strip_fingerprint(route):
        url = re.sub(r"([?&])since=[^&]*&?", r"\1", route.request.url).rstrip("?&")
        route.continue_(url=url)

    page.route(re.compile(r"/inbox/poll/"), strip_fingerprint)


def test_a_search_typed_while_the_list_refreshes_still_lands(
    page, live_server, console_messages, inbox_world
):
    """A refresh (an action, a live event) and a search both answer with the list: a search
    answered after a refresh replaced the list was dropped by htmx (its target had left the
    page), and the search looked ignored."""
    page.set_viewport_size({"width": 1366, "height": 860})
    _sign_in(page, live_server)
    _full_list_polls(page)
    held = []

    def hold_searches(route):
        held.append(route)

    page.route(re.compile(r"/inbox/\?.*q=invoice"), hold_searches)
    with page.expect_request(re.compile(r"q=invoice")):
        page.locator("#inbox-search").fill("invoice")
    # The search is out; the mail changes meanwhile.
    page.evaluate("htmx.trigger(document.body, 'inbox:changed')")
    page.wait_for_timeout(300)  # a refresh that would run now has time to land first
    assert len(held) == 1
    with page.expect_request(re.compile(r"/inbox/poll/.*q=invoice")):
        held.pop().continue_()  # the refresh asked meanwhile follows, with the search
    expect(page.locator(".inbox-thread")).to_have_count(1)
    expect(page.locator(".inbox-thread")).to_contain_text("Your invoice INV-2291")
    assert csp_violations(console_messages) == []


def test_a_refresh_asked_as_a_new_list_lands_is_made(
    page, live_server, console_messages, inbox_world
):
    """The moment between a new list landing and htmx wiring it up (20 ms): a refresh asked
    then (an assignment answered just as the list came back) must not go to no one, or a
    view count stays behind until the next change."""
    page.set_viewport_size({"width": 1366, "height": 860})
    _sign_in(page, live_server)
    _full_list_polls(page)
    page.evaluate(
        """() => {
            document.body.addEventListener("htmx:afterSwap", function again(event) {
                if (event.detail.target.id === "thread-list") {
                    document.body.removeEventListener("htmx:afterSwap", again);
                    htmx.trigger(document.body, "inbox:changed");
                }
            });
        }"""
    )
    with page.expect_request(re.compile(r"/inbox/poll/")):
        page.evaluate("htmx.trigger(document.body, 'inbox:changed')")
    # The second refresh, asked while the first list was still unwired. The list polls on its
    # own only every 15 s, so a request within 5 s is the one asked for.
    with page.expect_request(re.compile(r"/inbox/poll/"), timeout=5_000):
        pass
    expect(page.locator(".inbox-thread")).to_have_count(5)
    assert csp_violations(console_messages) == []


def test_new_mail_appears_without_a_reload(page, live_server, console_messages, inbox_world):
    page.set_viewport_size({"width": 1280, "height": 800})
    _sign_in(page, live_server)
    expect(page.locator(".inbox-thread")).to_have_count(5)
    mailkit.conversation(
        inbox_world["folders"]["inbox"], subject="Brand new arrival", day=20, seen=False
    )
    expect(_row(page, "Brand new arrival")).to_be_visible(timeout=20_000)
    expect(page.locator(".inbox-thread").first).to_contain_text("Brand new arrival")
    assert csp_violations(console_messages) == []


def test_phone_inbox_conversation_and_triage(
    page, live_server, shots, console_messages, inbox_world
):
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, live_server)
    expect(page.locator("#conversation-pane")).to_be_hidden()
    shot(page, shots, "09-phone-inbox.png")
    _row(page, "Quote for 40 widgets").locator(".inbox-thread-link").click()
    expect(
        page.locator("#conversation").get_by_role("heading", name="Quote for 40 widgets")
    ).to_be_visible()
    expect(page.locator("#thread-list")).to_be_hidden()
    # The newest message's body, in the sandboxed frame of the reading view (docs/product.md §7.3).
    frame = page.locator("#conversation .inbox-msg").last.locator("iframe")
    expect(frame).to_be_visible()
    expect(frame.content_frame.get_by_text("Body of message 1")).to_be_visible()
    shot(page, shots, "10-phone-conversation.png")
    page.get_by_role("link", name="Back to the list").click()
    expect(page.locator("#thread-list")).to_be_visible()

    page.goto(f"{live_server.url}/inbox/triage/")
    expect(page.get_by_role("heading", name="Triage")).to_be_visible()
    expect(page.get_by_text("No rule placed it")).to_be_visible()
    shot(page, shots, "11-phone-triage.png")
    assert csp_violations(console_messages) == []


def test_triage_bulk_qualify(page, live_server, shots, console_messages, inbox_world):
    page.set_viewport_size({"width": 1280, "height": 800})
    _sign_in(page, live_server)
    page.goto(f"{live_server.url}/inbox/triage/")
    page.locator(".inbox-triage-item input[name=message]").first.check()
    expect(page.locator("[data-checked-count]")).to_have_text("1")
    page.get_by_placeholder(re.compile("File selected on")).fill("globex")
    page.get_by_label(re.compile("Globex")).check()
    shot(page, shots, "12-triage.png")
    page.get_by_role("button", name="File selected").click()
    expect(page.get_by_text("Filed 1 message on Globex.")).to_be_visible()
    expect(page.get_by_text("Nothing to triage")).to_be_visible()
    assert Filing.objects.filter(account__name="Globex", rule="manual").count() == 1
    assert csp_violations(console_messages) == []


def test_reply_from_a_conversation(page, live_server, shots, console_messages, inbox_world):
    from inbox.models import OutboxEntry

    page.set_viewport_size({"width": 1280, "height": 860})
    _sign_in(page, live_server)
    _row(page, "Quote for 40 widgets").locator(".inbox-thread-link").click()
    expect(page.locator("#conversation .inbox-msg")).to_have_count(2)
    page.locator("body").click(position={"x": 5, "y": 500})
    page.keyboard.press("r")  # the Reply shortcut: the composer under the thread, focused
    reply = page.locator("#inline-reply")
    expect(reply).to_have_attribute("open", "")
    expect(reply.get_by_label("To", exact=True)).to_have_value("ana@globex.example")
    expect(reply.get_by_label("Subject", exact=True)).to_have_value("Re: Quote for 40 widgets")
    editor = reply.locator("[data-composer-editor]")
    expect(editor).to_be_focused()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Forty widgets, delivered Monday.")
    shot(page, shots, "13-reply.png")
    reply.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_text("Sending in 10 seconds")).to_be_visible()
    expect(page.locator("#conversation")).to_be_visible()
    assert page.url.endswith(f"/inbox/conversations/{inbox_world['quote'][-1].pk}/")
    entry = OutboxEntry.objects.get()
    assert entry.to == ["ana@globex.example"]
    assert entry.in_reply_to
    assert csp_violations(console_messages) == []


def test_email_tab_privacy_and_compose(page, live_server, shots, console_messages, inbox_world):
    """Tom sees Olivia's personal mail on Ana's Email tab at the level Olivia chose (subject
    and people), without a way in; the tab's Compose opens a message from the record."""
    from inbox.models import Mailbox

    Mailbox.objects.filter(pk=inbox_world["mailbox"].pk).update(privacy="subject")
    ana = inbox_world["ana"]
    for message in inbox_world["quote"]:
        f.FilingFactory(message=message, contact=ana)
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    f.MailboxFactory(owner=tom, email_address="tom@relay.test")
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server, "tom")
    page.goto(f"{live_server.url}{ana.get_absolute_url()}#email")
    pane = page.locator("#email-pane")
    expect(pane.get_by_text("Re: Quote for 40 widgets")).to_be_visible()
    expect(pane.get_by_text("Olivia Owner's mail").first).to_be_visible()
    expect(pane.get_by_text("Body of message 1")).to_have_count(0)  # no text at this level
    expect(pane.get_by_role("link", name="Re: Quote for 40 widgets")).to_have_count(0)
    shot(page, shots, "14-phone-email-tab-privacy.png")
    pane.get_by_role("link", name="Compose").click()
    expect(page.get_by_role("heading", name="New message")).to_be_visible()
    expect(page.get_by_label("To", exact=True)).to_have_value("ana@globex.example")
    assert csp_violations(console_messages) == []
