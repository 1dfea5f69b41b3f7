"""The Outbox in headless Chromium (docs/product.md §5.4), on a laptop (1440x900) and a phone
(390x844): a reply refused by the real SMTP server (aiosmtpd) shows failed in plain words in
the conversation and on the Outbox page, is sent again, edited and resent; one whose outcome is
unknown is marked as sent; a queued one is cancelled. Two users on one conversation see each
other, and the one who answers second is asked first. Every step saves a screenshot
(to RELAY_SCREENSHOTS when it is set); the console must show no CSP violation."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inbox.models import Mailbox, OutboxEntry
from inbox.services.composing import message_reply
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.outbound.test_sending import a_request, run, support_mailbox
from tests.inbox import mailkit
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
UNKNOWN_USER = "550 5.1.1 <ana@acme.example>: Recipient address rejected: User unknown"
PLAIN_UNKNOWN = "The address ana@acme.example does not exist"


@pytest.fixture
def acme(db):
    account = f.AccountFactory(name="Acme", domains=["acme.example"])
    return f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=account)


@pytest.mark.usefixtures("eager_celery")
@pytest.mark.parametrize("size", SIZES)
def test_failed_unknown_and_queued_replies_from_the_conversation_and_the_outbox(
    page, live_server, shots, console_messages, imap_user, smtp_server, acme, size
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    message, _ticket = a_request(imap_user, mailbox)
    smtp_server.refuse = {"ana@acme.example": UNKNOWN_USER}
    failed = message_reply(user=staff, message=message, text_body="We are on it.")
    page.set_viewport_size(SIZES[size])
    conversation = f"/inbox/conversations/{message.pk}/"
    sign_in(page, live_server, staff.username, conversation)

    # In the conversation: failed, in plain words, with the raw answer on demand.
    card = page.locator(f"#outbox-{failed.pk}")
    expect(card).to_contain_text(PLAIN_UNKNOWN)
    expect(card.locator(".relay-outbox-state")).to_have_text("Failed")
    expect(page.locator("#outbox-banner")).to_contain_text("1 message you sent did not go out")
    card.get_by_text("The server's answer").click()
    expect(card.locator("pre")).to_contain_text("5.1.1")
    shot(page, shots, f"outbox-01-conversation-failed-{size}.png")

    page.goto(f"{live_server.url}/inbox/outbox/")
    expect(page.get_by_role("heading", name="Outbox")).to_be_visible()
    expect(page.locator(f"#outbox-{failed.pk}")).to_contain_text("Check the spelling")
    expect(page.locator("#outbox-banner")).to_have_count(0)  # the page itself says it
    shot(page, shots, f"outbox-02-page-failed-{size}.png")

    # Send again: the address works now.
    smtp_server.refuse = {}
    page.locator(f"#outbox-{failed.pk}").get_by_role("button", name="Send again").click()
    expect(page.get_by_text("Queued again: it goes out in a moment.")).to_be_visible()
    expect(page.locator(f"#outbox-{failed.pk} .relay-outbox-state")).to_have_text("Sent")
    assert len(smtp_server.received) == 1
    shot(page, shots, f"outbox-03-sent-again-{size}.png")

    # Edit and resend: a typo the server refuses, corrected.
    smtp_server.refuse = {"ana@acme.example": UNKNOWN_USER}
    typo = message_reply(user=staff, message=message, text_body="The part ships today.")
    page.goto(f"{live_server.url}/inbox/outbox/?show=problems")
    page.locator(f"#outbox-{typo.pk}").get_by_role("link", name="Edit and resend").click()
    expect(page.get_by_role("heading", name="Edit and resend")).to_be_visible()
    page.get_by_label("To", exact=True).fill("ana.lopez@acme.example")
    shot(page, shots, f"outbox-04-edit-{size}.png")
    page.get_by_role("button", name="Send corrected message").click()
    expect(page.get_by_text("The corrected message is queued")).to_be_visible()
    page.goto(f"{live_server.url}/inbox/outbox/")
    expect(page.locator(f"#outbox-{typo.pk} .relay-outbox-state")).to_have_text("Replaced")
    typo.refresh_from_db()
    expect(page.locator(f"#outbox-{typo.replaced_by_id} .relay-outbox-state")).to_have_text("Sent")
    assert smtp_server.received[-1].rcpt_tos == ("ana.lopez@acme.example",)
    shot(page, shots, f"outbox-05-replaced-{size}.png")

    # Outcome unknown: the server took the data and the connection died.
    smtp_server.refuse, smtp_server.mode = {}, "drop"
    unknown = message_reply(user=staff, message=message, text_body="Invoice attached.")
    smtp_server.mode = "accept"
    page.goto(f"{live_server.url}{conversation}")
    card = page.locator(f"#outbox-{unknown.pk}")
    expect(card.locator(".relay-outbox-state")).to_have_text("Outcome unknown")
    expect(card).to_contain_text("Mark as sent or Send again")
    shot(page, shots, f"outbox-06-conversation-unknown-{size}.png")
    card.get_by_role("button", name="Mark as sent").click()
    expect(page.get_by_text("Marked as sent.")).to_be_visible()
    expect(page.locator(f"#outbox-{unknown.pk}")).to_have_count(0)
    unknown.refresh_from_db()
    assert unknown.state == OutboxEntry.State.SENT

    # Cancel one still waiting (its mailbox's login was refused).
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    waiting = message_reply(user=staff, message=message, text_body="Wrong customer!")
    page.goto(f"{live_server.url}/inbox/outbox/?show=waiting")
    expect(page.locator(f"#outbox-{waiting.pk}")).to_contain_text("Reconnect the mailbox")
    shot(page, shots, f"outbox-07-waiting-{size}.png")
    page.locator(f"#outbox-{waiting.pk}").get_by_role("button", name="Cancel sending").click()
    expect(page.get_by_text("Cancelled: it will not be sent.")).to_be_visible()
    waiting.refresh_from_db()
    assert waiting.state == OutboxEntry.State.CANCELLED
    assert csp_violations(console_messages) == []


@pytest.fixture
def two_on_support():
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    lukas = f.UserFactory(username="lukas", first_name="Lukas", last_name="Berg")
    support = f.SharedMailboxFactory(email_address="support@relay.test", display_name="Support")
    support.granted_users.add(tom, lukas)
    folders = mailkit.folders(support)
    (message,) = mailkit.conversation(
        folders["inbox"], subject="Printer on fire", sender="ana@acme.example", name="Ana"
    )
    return {"tom": tom, "lukas": lukas, "message": message}


def compose_page(page, live_server) -> None:
    """Follow the toolbar's Reply to the compose page, as a browser without JavaScript does
    (the link's own address, which carries when the conversation was opened)."""
    toolbar = page.get_by_role("toolbar", name="Conversation actions")
    page.goto(
        live_server.url
        + toolbar.get_by_role("link", name="Reply", exact=True).get_attribute("href")
    )


def test_folding_the_reply_says_so_even_while_the_presence_refresh_runs(
    page, live_server, two_on_support
):
    """Folding the inline reply tells the server at once, also when the page's own presence
    refresh is under way: htmx queued the update on the poller that refresh replaced, and
    dropped it, so colleagues saw "writing a reply" until the next refresh 10 s later."""
    import re

    held = []
    writing = []

    def presence(route):
        body = route.request.post_data or ""
        writing.append("composing=1" in body)
        if not held and "composing=1" in body:
            held.append(route)  # the refresh under way when the reply is folded
        else:
            route.continue_()

    page.set_viewport_size(SIZES["laptop"])
    sign_in(page, live_server, "lukas", f"/inbox/conversations/{two_on_support['message'].pk}/")
    expect(page.locator("#conversation")).to_be_visible()
    page.route(re.compile(r"/presence/"), presence)
    inline = page.locator("#inline-reply")
    inline.locator("summary.relay-inline-reply-summary").click()
    expect(inline.locator("form")).to_be_visible()
    _wait_for(page, lambda: held, what=writing)  # unfolding told the server; its answer is held
    inline.locator("summary.relay-inline-reply-summary").click()
    expect(inline).not_to_have_attribute("open", "")
    folded_at = len(writing)
    held.pop().continue_()
    # Before the refresh 10 s after that answer: a request saying "not writing" goes out.
    _wait_for(page, lambda: False in writing[folded_at:], seconds=8, what=writing)


def _wait_for(page, condition, seconds: float = 10, what=None) -> None:
    for _ in range(int(seconds * 10)):
        if condition():
            return
        page.wait_for_timeout(100)  # lets Playwright run the route handlers meanwhile
    raise AssertionError(f"not within {seconds} s: {what}")


@pytest.mark.parametrize("size", SIZES)
def test_two_users_see_each_other_and_the_second_reply_asks_first(
    browser, live_server, shots, two_on_support, size
):
    conversation = f"/inbox/conversations/{two_on_support['message'].pk}/"
    pages, problems = {}, []
    for name in ("tom", "lukas"):
        context = browser.new_context(viewport=SIZES[size])
        pages[name] = context.new_page()
        pages[name].on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )
        sign_in(pages[name], live_server, name, conversation)
        expect(pages[name].locator("#conversation")).to_be_visible()
    tom, lukas = pages["tom"], pages["lukas"]

    # Each sees the other within a refresh.
    expect(tom.locator("#presence")).to_contain_text("Lukas Berg is viewing", timeout=15000)
    expect(lukas.locator("#presence")).to_contain_text("Tom Teammate is viewing", timeout=15000)
    shot(tom, shots, f"presence-01-viewing-{size}.png")

    # Lukas unfolds the inline reply under the thread: Tom sees him writing; folded, he is
    # viewing again within Tom's close watch (a few seconds, not the 10 s refresh).
    inline = lukas.locator("#inline-reply")
    inline.locator("summary.relay-inline-reply-summary").click()
    expect(inline.locator("form")).to_be_visible()
    expect(tom.locator("#presence")).to_contain_text("Lukas Berg is writing a reply", timeout=15000)
    inline.locator("summary.relay-inline-reply-summary").click()
    expect(tom.locator("#presence")).to_contain_text("Lukas Berg is viewing", timeout=6000)

    # Lukas starts a reply on the compose page (where the toolbar's Reply leads without
    # JavaScript; with it, the inline composer opens): Tom sees him writing.
    compose_page(lukas, live_server)
    expect(lukas.get_by_role("heading", name="Reply")).to_be_visible()
    expect(tom.locator("#presence")).to_contain_text("Lukas Berg is writing a reply", timeout=15000)
    shot(tom, shots, f"presence-02-writing-{size}.png")
    lukas.get_by_placeholder("Write your message").fill("New printer on its way.")
    lukas.get_by_role("button", name="Send").click()
    expect(lukas.get_by_text("Sending in 10 seconds")).to_be_visible()
    # Sent: Lukas is back on the conversation, no longer writing, and Tom sees it at once
    # (the send ends the composer; Tom's page watches closely while Lukas writes). Before,
    # the mark lingered up to 30 s (docs/reliability.md X-21).
    expect(tom.locator("#presence")).to_contain_text("Lukas Berg is viewing", timeout=6000)
    shot(tom, shots, f"presence-02b-sent-{size}.png")

    # Tom, who opened the conversation before Lukas answered, replies too: asked first.
    compose_page(tom, live_server)
    tom.get_by_placeholder("Write your message").fill("Have you tried turning it off?")
    tom.get_by_role("button", name="Send").click()
    warning = tom.locator("#reply-collision")
    expect(warning).to_contain_text("Lukas Berg replied just now")
    # What was written stays in the editor.
    expect(tom.get_by_placeholder("Write your message")).to_have_text(
        "Have you tried turning it off?"
    )
    shot(tom, shots, f"presence-03-collision-{size}.png")
    warning.get_by_role("button", name="Send anyway").click()
    expect(tom.get_by_text("Sending in 10 seconds")).to_be_visible()
    assert OutboxEntry.objects.filter(created_by=two_on_support["tom"]).count() == 1
    assert problems == []
