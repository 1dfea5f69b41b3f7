"""Writing (docs/product.md §5.1, §5.5) against the real servers: a rich-text reply to an older
message of a conversation, a forward that leaves one of the original's attachments out, and
Undo send, all received by aiosmtpd and read back as a mail client would. Nothing is mocked."""

from __future__ import annotations

import base64
import datetime as dt
import struct
import threading
import zlib

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from connector.outbound import outbox as sending
from inbox.models import Draft, Mailbox, Message, OutboxEntry
from inbox.services.composing import SubjectMissing, message_forward, message_reply, outbox_compose
from inbox.services.drafts import draft_save
from inbox.services.outbox import outbox_undo
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.outbound.test_sending import (
    acme,  # noqa: F401
    parsed,
    run,
    support_mailbox,
)
from tests.connector.synckit import make_raw

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("eager_celery", "acme"),
]


def tiny_png() -> bytes:
    """A real 1x1 PNG (what a pasted screenshot is, only smaller)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def a_conversation(imap_user, mailbox) -> tuple[Message, Message]:
    """Ana writes, then writes again in the same thread: two messages of one conversation
    (no ticket, so no acknowledgement goes out: the only mail sent is the test's)."""
    Mailbox.objects.filter(pk=mailbox.pk).update(create_tickets=False)
    first_raw = make_raw(
        "Printer on fire",
        sender="Ana <ana@acme.example>",
        to=mailbox.email_address,
        body="It smokes.\nWhat now?",
        message_id="<first@acme.example>",
    )
    imap_user.server.deliver(imap_user, first_raw)
    imap_user.server.deliver(
        imap_user,
        make_raw(
            "Re: Printer on fire",
            sender="Ana <ana@acme.example>",
            to=mailbox.email_address,
            body="Now it is out.",
            message_id="<second@acme.example>",
            in_reply_to="<first@acme.example>",
        ),
    )
    run(mailbox)
    first = Message.objects.get(mailbox=mailbox, message_id="first@acme.example")
    second = Message.objects.get(mailbox=mailbox, message_id="second@acme.example")
    assert first.thread_id == second.thread_id
    return first, second


def test_a_rich_reply_to_an_older_message_leaves_as_html_and_text_with_quote_and_cid_image(
    imap_user, smtp_server
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    first, _second = a_conversation(imap_user, mailbox)
    png = tiny_png()
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    # What a browser (or someone posting by hand) might send: formatting, a link, a pasted
    # image, and hostile markup the server must drop (docs/reliability.md X-20).
    editor_html = (
        "<div><b>Unplug it</b> and <i>step back</i>.</div>"
        "<ul><li>one</li><li>two</li></ul>"
        '<div><a href="https://acme.example/help" onclick="steal()">help</a> '
        '<a href="javascript:alert(1)">bad</a></div>'
        f'<div><img src="{data_url}" onerror="steal()"></div>'
        "<script>steal()</script><iframe src='https://evil.example'></iframe>"
        '<img src="https://tracker.example/pixel.gif">'
        "<div>-- <br>Acme Support</div>"
    )

    entry = message_reply(user=staff, message=first, html_body=editor_html, include_signature=False)

    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert len(smtp_server.received) == 1
    wire = parsed(smtp_server.received[0].raw)
    # It answers the message it was written to, not the newest one.
    assert wire["In-Reply-To"] == "<first@acme.example>"
    assert wire["References"].split()[-1] == "<first@acme.example>"
    assert "<second@acme.example>" not in wire["References"]
    # multipart/alternative: a plain-text part and an HTML part with its image related.
    text = wire.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = wire.get_body(("html",)).get_content()
    assert "Unplug it and step back." in text
    assert "On " in text and "Ana <ana@acme.example> wrote:\n> It smokes.\n> What now?" in text
    assert text.index("Acme Support") < text.index("wrote:")  # signature above the quote
    assert "<b>Unplug it</b>" in html and "<li>one</li>" in html
    assert 'href="https://acme.example/help"' in html
    assert "Ana &lt;ana@acme.example&gt; wrote:" in html and "<blockquote>" in html
    assert "It smokes.<br>" in html
    for hostile in ("onclick", "onerror", "javascript:", "<script", "<iframe", "tracker.example"):
        assert hostile not in html, hostile
    related = next(p for p in wire.walk() if p.get_content_type() == "multipart/related")
    image = next(p for p in related.iter_parts() if p.get_content_type() == "image/png")
    assert image.get_content() == png
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html
    assert "data:image" not in html


def test_forward_shows_what_is_kept_and_leaves_out_a_removed_attachment(imap_user, smtp_server):
    from email.message import EmailMessage

    mailbox, staff = support_mailbox(imap_user, smtp_server)
    original = EmailMessage()
    original["From"] = "Ana <ana@acme.example>"
    original["To"] = mailbox.email_address
    original["Subject"] = "Two files"
    original["Message-ID"] = "<two@acme.example>"
    original.set_content("Both attached.")
    original.add_attachment(b"%PDF-1.4 a", maintype="application", subtype="pdf", filename="a.pdf")
    original.add_attachment(b"%PDF-1.4 b", maintype="application", subtype="pdf", filename="b.pdf")
    imap_user.server.deliver(imap_user, original.as_bytes().replace(b"\n", b"\r\n"))
    run(mailbox)
    message = Message.objects.get(mailbox=mailbox, subject="Two files")
    keep = message.attachments.get(filename="b.pdf")

    message_forward(
        user=staff,
        message=message,
        to="bo@books.example",
        html_body="<p>Only <b>the second</b> one matters.</p>",
        keep_attachments=[keep.pk],
    )

    wire = parsed(smtp_server.received[0].raw)
    files = {part.get_filename(): part.get_content() for part in wire.iter_attachments()}
    assert files == {"b.pdf": b"%PDF-1.4 b"}
    text = wire.get_body(("plain",)).get_content()
    assert "Only the second one matters." in text and "Forwarded message" in text
    html = wire.get_body(("html",)).get_content()
    assert "<b>the second</b>" in html and "Forwarded message" in html


def test_no_subject_is_asked_after_everything_else_is_right(imap_user, smtp_server):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    with pytest.raises(ValidationError, match="Add at least one recipient"):
        outbox_compose(user=staff, mailbox=mailbox, to="", subject="", allow_empty_subject=False)
    with pytest.raises(SubjectMissing):
        outbox_compose(
            user=staff,
            mailbox=mailbox,
            to="ana@acme.example",
            subject="",
            allow_empty_subject=False,
        )
    assert not OutboxEntry.objects.exists() and smtp_server.received == []
    outbox_compose(user=staff, mailbox=mailbox, to="ana@acme.example", subject="", text_body="x")
    assert len(smtp_server.received) == 1


def test_undo_send_holds_the_message_and_no_worker_sends_it_early(imap_user, smtp_server, settings):
    settings.RELAY_UNDO_SEND_SECONDS = 30
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    run(mailbox)
    first, _second = a_conversation(imap_user, mailbox)
    draft = draft_save(
        user=staff,
        message=first,
        mode="reply",
        mailbox=mailbox,
        body_html="<div>Hold <b>this</b></div>",
    )

    entry = message_reply(
        user=staff,
        message=first,
        html_body=draft.body_html,
        include_signature=False,
        hold=True,
        draft=draft,
    )

    # Eager tasks ran the send at once (a countdown that fires early does the same): held.
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SCHEDULED
    assert sending.process_entry(entry.pk).state == OutboxEntry.State.SCHEDULED
    assert entry.pk not in sending.dispatch_due(enqueue=sending.process_entry)
    assert smtp_server.received == []
    # The draft is hidden while the message is held.
    assert not Draft.objects.filter(user=staff, sent_entry__isnull=True).exists()

    restored = outbox_undo(user=staff, entry=entry)

    assert restored.pk == draft.pk and restored.sent_entry_id is None
    assert restored.body_html == "<div>Hold <b>this</b></div>"  # what the editor held, no quote
    assert restored.reply_to_message_id == first.pk
    assert not OutboxEntry.objects.filter(pk=entry.pk).exists()
    sending.dispatch_due(enqueue=sending.process_entry, now=timezone.now() + dt.timedelta(hours=1))
    assert smtp_server.received == []

    # Sent again and left alone: once the hold is over the beat's tick sends it, once.
    again = message_reply(
        user=staff, message=first, text_body="Hold this", hold=True, draft=restored
    )
    later = timezone.now() + dt.timedelta(seconds=31)
    assert again.pk in sending.dispatch_due(enqueue=sending.process_entry, now=later)
    again.refresh_from_db()
    assert again.state == OutboxEntry.State.SENT, again.last_error
    assert len(smtp_server.received) == 1
    assert not Draft.objects.filter(pk=restored.pk).exists()  # done with, once released
    with pytest.raises(ValidationError, match="Too late to undo"):
        outbox_undo(user=staff, entry=again)


def test_undo_racing_the_release_either_undoes_or_sends_never_both(
    imap_user, smtp_server, settings
):
    """Undo and the worker's release run at the same moment from two connections, several
    times: exactly one wins; an undone message never reaches the server (docs/reliability.md
    M-12)."""
    settings.RELAY_UNDO_SEND_SECONDS = 30
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    outcomes = []
    for round_ in range(6):
        entry = outbox_compose(
            user=staff,
            mailbox=mailbox,
            to="ana@acme.example",
            subject=f"Race {round_}",
            text_body="x",
            hold=True,
        )
        OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now())
        start = threading.Barrier(2)
        undone = []

        def undo(entry=entry, start=start, undone=undone):
            start.wait()
            try:
                outbox_undo(user=staff, entry=entry)
                undone.append(True)
            except ValidationError:
                undone.append(False)
            finally:
                connection.close()

        def work(entry=entry, start=start):
            start.wait()
            try:
                sending.process_entry(entry.pk)
            finally:
                connection.close()

        threads = [threading.Thread(target=undo), threading.Thread(target=work)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        delivered = [m for m in smtp_server.received if f"Race {round_}".encode() in m.raw]
        if undone == [True]:
            assert not OutboxEntry.objects.filter(pk=entry.pk).exists() and delivered == []
            assert Draft.objects.filter(user=staff, subject=f"Race {round_}").exists()
        else:
            entry.refresh_from_db()
            if entry.state == OutboxEntry.State.QUEUED:
                # The worker's claim skipped the row Undo's losing UPDATE held for a moment:
                # released, so the beat's next tick sends it.
                assert entry.pk in sending.dispatch_due(enqueue=sending.process_entry)
                entry.refresh_from_db()
                delivered = [m for m in smtp_server.received if f"Race {round_}".encode() in m.raw]
            assert entry.state == OutboxEntry.State.SENT and len(delivered) == 1
        outcomes.append(undone[0])
    assert smtp_server.attempts == outcomes.count(False)
