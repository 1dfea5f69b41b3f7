"""Writing in headless Chromium (docs/product.md §5.1, §5.5), on a laptop (1440x900) and a
phone (390x844): reply inline under the conversation in the rich-text editor with the
signature in it, the draft saved as one types and restored on reopening, a file dropped onto
the composer, Send held for Undo and Undo taking it back to the editor, the held message then
sent through the real SMTP server (aiosmtpd) as HTML and text; forwarding an older message
with one of its attachments removed; "Send without a subject?" in the app's dialog. Every step
saves a screenshot (to RELAY_SCREENSHOTS when it is set); the console must show no error."""

from __future__ import annotations

import base64
import datetime as dt
import re
from email.message import EmailMessage

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from connector.outbound import outbox as sending
from inbox.models import Draft, Mailbox, Message, OutboxEntry
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.outbound.test_sending import parsed, run, support_mailbox
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def acme(db):
    account = f.AccountFactory(name="Acme", domains=["acme.example"])
    return f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=account)


def errors(console_messages: list[str]) -> list[str]:
    return [m for m in console_messages if m.startswith(("error", "pageerror"))]


def a_conversation(imap_user, mailbox) -> tuple[Message, Message]:
    """Ana asks (with two files attached), then writes again in the same thread."""
    Mailbox.objects.filter(pk=mailbox.pk).update(
        create_tickets=False, signature="Acme Support\nhttps://acme.example"
    )
    first = EmailMessage()
    first["From"] = "Ana <ana@acme.example>"
    first["To"] = mailbox.email_address
    first["Subject"] = "Printer on fire"
    first["Message-ID"] = "<first@acme.example>"
    first.set_content("It smokes.\nWhat now?")
    first.add_attachment(b"%PDF-1.4 a", maintype="application", subtype="pdf", filename="a.pdf")
    first.add_attachment(b"%PDF-1.4 b", maintype="application", subtype="pdf", filename="b.pdf")
    imap_user.server.deliver(imap_user, first.as_bytes().replace(b"\n", b"\r\n"))
    second = EmailMessage()
    second["From"] = "Ana <ana@acme.example>"
    second["To"] = mailbox.email_address
    second["Subject"] = "Re: Printer on fire"
    second["Message-ID"] = "<second@acme.example>"
    second["In-Reply-To"] = "<first@acme.example>"
    second["References"] = "<first@acme.example>"
    second.set_content("Now it is out.")
    imap_user.server.deliver(imap_user, second.as_bytes().replace(b"\n", b"\r\n"))
    run(mailbox)
    return (
        Message.objects.get(mailbox=mailbox, message_id="first@acme.example"),
        Message.objects.get(mailbox=mailbox, message_id="second@acme.example"),
    )


def eventually(page, probe, tries: int = 100):
    """What `probe` returns once it is something: the autosave runs in the browser, the
    assertion reads the database (a condition waited on, never a fixed sleep)."""
    for _ in range(tries):
        found = probe()
        if found:
            return found
        page.wait_for_timeout(100)
    raise AssertionError("the condition never came true")


def drop_file(page, target, name: str, content: str) -> None:
    """A file dropped from the desktop: a real drop event carrying a DataTransfer."""
    transfer = page.evaluate_handle(
        """([name, content]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([content], name, {type: "text/plain"}));
            return dt;
        }""",
        [name, content],
    )
    target.dispatch_event("drop", {"dataTransfer": transfer})


@pytest.mark.usefixtures("eager_celery")
@pytest.mark.parametrize("size", SIZES)
def test_reply_inline_rich_text_draft_drop_undo_and_send(
    page, live_server, shots, console_messages, imap_user, smtp_server, acme, size, settings
):
    settings.RELAY_UNDO_SEND_SECONDS = 30
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    first, second = a_conversation(imap_user, mailbox)
    page.set_viewport_size(SIZES[size])
    conversation = f"/inbox/conversations/{second.pk}/"
    sign_in(page, live_server, staff.username, conversation)

    # The inline composer under the thread: closed until clicked, then the rich editor with
    # the signature already in it.
    reply = page.locator("#inline-reply")
    expect(reply).to_be_visible()
    reply.locator(".relay-inline-reply-summary").click()
    editor = reply.locator("[data-composer-editor]")
    expect(editor).to_be_visible()
    expect(reply.locator("textarea[name=body]")).to_be_hidden()
    expect(editor).to_contain_text("Acme Support")
    expect(reply.locator("details.relay-composer-quote summary")).to_contain_text("Ana")

    # Write: a bold word and a list, typed at the top, above the signature.
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("We are on it. ")
    reply.get_by_role("button", name="Bold").click()
    page.keyboard.type("Unplug it")
    reply.get_by_role("button", name="Bold").click()
    page.keyboard.press("Enter")
    reply.get_by_role("button", name="Bulleted list").click()
    page.keyboard.type("Step back")
    page.keyboard.press("Enter")
    page.keyboard.type("Call us")
    expect(reply.locator("[data-composer-status]")).to_contain_text("Draft saved")
    draft = eventually(
        page, lambda: Draft.objects.filter(user=staff, body_html__contains="Call us").first()
    )
    assert "<b>Unplug it</b>" in draft.body_html and "<li>Step back</li>" in draft.body_html
    shot(page, shots, f"writing-01-inline-rich-{size}.png")

    # A file dropped on the composer goes into the draft at once.
    drop_file(page, reply.locator("[data-composer-dropzone]"), "notes.txt", "my notes")
    expect(reply.locator(".relay-attachment")).to_contain_text("notes.txt")
    expect(reply.locator("[data-composer-status]")).to_contain_text("Draft saved")

    # Reopening the conversation restores the draft, as it was written.
    page.goto(f"{live_server.url}{conversation}")
    reply = page.locator("#inline-reply")
    expect(reply).to_have_attribute("open", "")
    editor = reply.locator("[data-composer-editor]")
    expect(editor.locator("b")).to_have_text("Unplug it")
    expect(editor.locator("li")).to_have_count(2)
    expect(reply.locator(".relay-attachment")).to_contain_text("notes.txt")
    shot(page, shots, f"writing-02-draft-restored-{size}.png")

    # Send: held, with Undo in the toast; nothing reached the server.
    reply.get_by_role("button", name="Send", exact=True).click()
    toast = page.locator(".toast", has_text="Sending in 30 seconds")
    expect(toast).to_be_visible()
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.state == OutboxEntry.State.SCHEDULED and smtp_server.received == []
    expect(page.locator(".relay-inline-reply-summary")).not_to_contain_text("Your draft")
    shot(page, shots, f"writing-03-undo-toast-{size}.png")

    # Undo: back in the editor, as written, with the file.
    toast.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("heading", name="Reply", exact=True)).to_be_visible()
    editor = page.locator("[data-composer-editor]")
    expect(editor.locator("b")).to_have_text("Unplug it")
    expect(page.locator(".relay-attachment")).to_contain_text("notes.txt")
    assert not OutboxEntry.objects.exists() and smtp_server.received == []
    shot(page, shots, f"writing-04-undone-{size}.png")

    # Send again and let the hold run out: the beat's tick sends it, once.
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".toast", has_text="Sending in 30 seconds")).to_be_visible()
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    later = timezone.now() + dt.timedelta(seconds=31)
    assert entry.pk in sending.dispatch_due(enqueue=sending.process_entry, now=later)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert len(smtp_server.received) == 1
    wire = parsed(smtp_server.received[0].raw)
    assert wire["In-Reply-To"] == "<second@acme.example>"
    html = wire.get_body(("html",)).get_content()
    text = wire.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "<b>Unplug it</b>" in html and "<li>Call us</li>" in html and "<blockquote>" in html
    assert "We are on it. Unplug it" in text and "- Step back" in text
    assert "-- \nAcme Support" in text and "> Now it is out." in text
    files = {p.get_filename(): p.get_content() for p in wire.iter_attachments()}
    assert files == {"notes.txt": "my notes"}
    assert not Draft.objects.exists()
    assert errors(console_messages) == []


@pytest.mark.usefixtures("eager_celery")
@pytest.mark.parametrize("size", SIZES)
def test_forward_an_older_message_without_one_attachment_and_the_no_subject_prompt(
    page, live_server, shots, console_messages, imap_user, smtp_server, acme, size, settings
):
    settings.RELAY_UNDO_SEND_SECONDS = 30
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    first, second = a_conversation(imap_user, mailbox)
    page.set_viewport_size(SIZES[size])
    sign_in(page, live_server, staff.username, f"/inbox/conversations/{second.pk}/")

    # The toolbar's Reply opens the composer under the thread, on this page, ready to write.
    page.get_by_role("toolbar", name="Conversation actions").get_by_role(
        "link", name="Reply", exact=True
    ).click()
    reply = page.locator("#inline-reply")
    expect(reply).to_have_attribute("open", "")
    expect(reply.locator("[data-composer-editor]")).to_be_focused()
    expect(reply.get_by_label("To", exact=True)).to_have_value(re.compile("ana@acme.example"))
    assert page.url.endswith(f"/inbox/conversations/{second.pk}/")

    # Forward the first message (not the newest) from its own actions: the inline composer
    # shows the original and its attachments, each removable.
    # An older message is one line until it is opened (docs/product.md §7.12).
    page.locator(f"#msg-{first.pk} > summary").click()
    page.locator(f"#msg-{first.pk}").get_by_role("link", name="Forward").click()
    reply = page.locator("#inline-reply")
    expect(reply.locator(".relay-composer-forwarded")).to_contain_text("It smokes.")
    expect(reply.locator(".relay-attachment")).to_have_count(2)
    reply.get_by_label("a.pdf").uncheck()
    reply.get_by_label("To", exact=True).fill("Bo <bo@books.example>")
    reply.locator("[data-composer-editor]").click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("See below.")
    # No subject: the app's own dialog asks (never the browser's confirm()).
    reply.get_by_role("textbox", name="Subject").fill("")
    reply.get_by_role("button", name="Send", exact=True).click()
    dialog = page.get_by_role("dialog", name="Send without a subject?")
    expect(dialog).to_be_visible()
    shot(page, shots, f"writing-05-no-subject-{size}.png")
    dialog.get_by_role("button", name="Add a subject").click()
    expect(dialog).to_be_hidden()
    expect(reply.get_by_role("textbox", name="Subject")).to_be_focused()
    assert not OutboxEntry.objects.exists()
    reply.get_by_role("button", name="Send", exact=True).click()
    dialog.get_by_role("button", name="Send without a subject").click()  # mid fade-in
    expect(page.locator(".toast", has_text="Sending in 30 seconds")).to_be_visible()
    expect(dialog).to_be_hidden()
    shot(page, shots, f"writing-06-forward-sent-{size}.png")

    entry = OutboxEntry.objects.get(mailbox=mailbox)
    assert entry.subject == "" and entry.to == ["Bo <bo@books.example>"]
    later = timezone.now() + dt.timedelta(seconds=31)
    sending.dispatch_due(enqueue=sending.process_entry, now=later)
    wire = parsed(smtp_server.received[0].raw)
    files = {p.get_filename(): p.get_content() for p in wire.iter_attachments()}
    assert files == {"b.pdf": b"%PDF-1.4 b"}
    assert "See below." in wire.get_body(("plain",)).get_content()
    assert "It smokes." in wire.get_body(("plain",)).get_content()
    assert errors(console_messages) == []


@pytest.mark.parametrize("size", SIZES)
def test_the_signature_follows_the_from_unless_edited(
    page, live_server, shots, console_messages, size
):
    """docs/product.md §5.5: changing the From swaps the previous address's signature for the
    new one's; a signature edited by hand stays as it is. What is saved is what is shown."""
    olivia = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    support = f.SharedMailboxFactory(
        email_address="support@relay.test",
        display_name="Support",
        signature="Acme Support\nhttps://acme.example",
    )
    support.granted_users.add(olivia)
    f.MailboxFactory(owner=olivia, email_address="olivia@relay.test", signature="Olivia Owner")
    f.SharedMailboxFactory(email_address="quiet@relay.test", signature="").granted_users.add(olivia)
    page.set_viewport_size(SIZES[size])
    sign_in(page, live_server, "olivia", f"/inbox/compose/?mailbox={support.pk}")
    editor = page.get_by_role("textbox", name="Message")
    expect(editor).to_contain_text("Acme Support")
    page.get_by_label("From").select_option(label="olivia@relay.test (personal)")
    expect(editor).to_contain_text("Olivia Owner")
    expect(editor).not_to_contain_text("Acme Support")
    shot(page, shots, f"signature-01-swapped-{size}.png")
    # An address without a signature: none; back to one with a signature: it returns.
    page.get_by_label("From").select_option(label="quiet@relay.test")
    expect(editor).not_to_contain_text("Olivia Owner")
    page.get_by_label("From").select_option(label="Support <support@relay.test>")
    expect(editor).to_contain_text("Acme Support")
    # Written above the signature, then the signature edited: it is the person's now.
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Hello Ana,")
    page.locator("[data-composer-signature]").click()
    page.keyboard.press("End")
    page.keyboard.type(" (Berlin office)")
    page.get_by_label("From").select_option(label="olivia@relay.test (personal)")
    expect(editor).to_contain_text("Acme Support")
    expect(editor).to_contain_text("(Berlin office)")
    expect(editor).not_to_contain_text("Olivia Owner")
    expect(editor).to_contain_text("Hello Ana,")
    shot(page, shots, f"signature-02-edited-kept-{size}.png")
    # The draft saved as typed holds what the editor shows.
    page.get_by_role("button", name="Save draft").click()
    draft = Draft.objects.get(user=olivia)
    assert "Hello Ana," in draft.body_text and "(Berlin office)" in draft.body_text
    assert "Olivia Owner" not in draft.body_text
    assert errors(console_messages) == []


PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5Er"
    "kJggg=="
)


def paste_image(page, target) -> None:
    """An image pasted from the clipboard: a real paste event carrying a PNG file."""
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "image.png", {type: "image/png"}));
            return dt;
        }""",
        PNG_1X1,
    )
    target.evaluate(
        "(el, dt) => el.dispatchEvent(new ClipboardEvent('paste', "
        "{clipboardData: dt, bubbles: true, cancelable: true}))",
        transfer,
    )


@pytest.mark.usefixtures("eager_celery")
@pytest.mark.parametrize("size", SIZES)
def test_a_pasted_image_leaves_inline_as_cid_with_a_text_alternative(
    page, live_server, shots, console_messages, imap_user, smtp_server, size, settings
):
    """docs/product.md §5.5: an image pasted into the editor is sent inline, a cid: part of
    multipart/related, never a link, with a plain-text alternative; the mail is received by a
    real SMTP server (aiosmtpd)."""
    settings.RELAY_UNDO_SEND_SECONDS = 30
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    page.set_viewport_size(SIZES[size])
    sign_in(page, live_server, staff.username, f"/inbox/compose/?mailbox={mailbox.pk}")
    page.get_by_label("To", exact=True).fill("ana@acme.example")
    page.get_by_role("textbox", name="Subject").fill("The wiring")
    editor = page.locator("[data-composer-editor]")
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("See the picture: ")
    paste_image(page, editor)
    expect(editor.locator("img")).to_have_count(1)
    assert editor.locator("img").get_attribute("src").startswith("data:image/png;base64,")
    shot(page, shots, f"writing-paste-01-image-{size}.png")

    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".toast", has_text="Sending in 30 seconds")).to_be_visible()
    entry = OutboxEntry.objects.get(mailbox=mailbox)
    later = timezone.now() + dt.timedelta(seconds=31)
    assert entry.pk in sending.dispatch_due(enqueue=sending.process_entry, now=later)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert len(smtp_server.received) == 1
    wire = parsed(smtp_server.received[0].raw)
    related = next(p for p in wire.walk() if p.get_content_type() == "multipart/related")
    html = related.get_body(("html",)).get_content()
    (image,) = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html and "data:" not in html
    assert image.get_content() == base64.b64decode(PNG_1X1)
    text = wire.get_body(("plain",)).get_content()
    assert "See the picture:" in text and "cid:" not in text and "base64" not in text
    assert errors(console_messages) == []
