"""Composing: new mail, replies, reply-all and forwards become outbox entries (state "queued")
that connector/outbound/ sends; nothing here talks to a server. Every header value and
recipient is checked before the row exists (inbox/addresses.py), and only users who may read a
mailbox may send as it (inbox/permissions.py, docs/reliability.md M-06)."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import secrets

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from crm.selectors import default_from_email

from ..addresses import HEADER_FORBIDDEN, Recipient, check_header_value, parse_recipients
from ..models import AttachmentBlob, Filing, Mailbox, OutboxEntry
from ..permissions import may_send_as
from ..richtext import clean_composed_html, html_from_text, inline_images, text_from_html
from .outbox import outbox_queue

# What the big providers accept per message (Gmail and Microsoft 365: 25 MB and 35 MB before
# encoding; base64 adds a third): more would only bounce later.
MAX_ATTACHMENT_BYTES = 18 * 1024 * 1024
MAX_REFERENCES = 20  # RFC 5322 3.6.4 lets a client trim References; keep the first and the last
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_FORWARD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|wg|tr)\s*:\s*)+", re.I)


class SubjectMissing(ValidationError):
    """Everything else is right, but there is no subject: the person is asked first
    (docs/product.md §5.5)."""


def normalise_subject(value: str) -> str:
    """A subject taken from received mail: any line break or control character (a decoded
    encoded-word may hold CR LF, docs/reliability.md M-02) becomes a space, runs of spaces one
    space."""
    return " ".join(HEADER_FORBIDDEN.sub(" ", value or "").split())


def _sent_from_reference(record, subject: str) -> str:
    """Mail sent from a ticket or an opportunity carries its reference in the subject, so a
    reply that loses its headers still finds its way back (docs/product.md §4.1 rule 2)."""
    reference = getattr(record, "reference", "") if record is not None else ""
    if reference and f"[{reference}]".lower() not in subject.lower():
        subject = f"[{reference}] {subject}".strip()
    return subject


def _html_from_text(text: str) -> str:
    return html_from_text(text)


def _with_signature(text: str, html_body: str, signature: str) -> tuple[str, str]:
    signature = (signature or "").strip("\n")
    if not signature:
        return text, html_body
    # "-- " on a line of its own is the signature separator clients recognise (RFC 3676 4.3).
    text = f"{text.rstrip()}\n\n-- \n{signature}\n"
    if html_body:
        html_body = f'{html_body}\n<div class="signature">-- <br>\n' + (
            html.escape(signature).replace("\n", "<br>\n") + "</div>"
        )
    return text, html_body


def _attachment_rows(attachments) -> list[dict]:
    """New attachments (UploadedFile, or (filename, content_type, bytes)) stored once by
    content hash, as the sync stores received ones; the entry keeps only references."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    rows, total = [], 0
    for item in attachments or ():
        if isinstance(item, dict) and "blob" in item:
            rows.append(item)
            continue
        content_id = ""
        if isinstance(item, tuple | list):
            filename, content_type, data, *rest = item
            content_id = rest[0] if rest else ""
        else:
            filename, content_type = item.name, item.content_type
            data = item.read()
        filename = " ".join(HEADER_FORBIDDEN.sub(" ", filename or "").split())[:200]
        content_type = (content_type or "application/octet-stream").lower()
        if not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", content_type):
            content_type = "application/octet-stream"
        total += len(data)
        if total > MAX_ATTACHMENT_BYTES:
            raise ValidationError(
                f"Attachments may add up to {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB at most."
            )
        digest = hashlib.sha256(data).hexdigest()
        # The same content-addressed layout as connector/ingest/storage.py, so a blob saved here and
        # the same bytes arriving by sync are one file and one row.
        path = f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"
        if not default_storage.exists(path):
            saved = default_storage.save(path, ContentFile(data))
            if saved != path:
                default_storage.delete(saved)
        _blob, created = AttachmentBlob.objects.get_or_create(
            sha256=digest, defaults={"size": len(data), "file": path}
        )
        if not created:
            # Stored again: young again, so the purge of unsent attachments leaves it alone
            # (connector/scheduling/purge.py purge_unsent_attachments).
            AttachmentBlob.objects.filter(pk=_blob.pk).update(created_at=timezone.now())
        row = {"blob": digest, "filename": filename, "content_type": content_type}
        if content_id:
            row["content_id"] = content_id
        rows.append(row)
    return rows


def _sending_domain(mailbox: Mailbox) -> str:
    """The domain mail from `mailbox` is made under (its Message-IDs, its inline images'
    Content-IDs): the mailbox's own, else the system sender's."""
    return (mailbox.email_address or default_from_email()).rpartition("@")[2]


def _new_message_id(mailbox: Mailbox) -> str:
    """128 random bits: nobody can guess it to thread a forged reply onto our mail
    (docs/reliability.md M-07). Mail sent from a record gets the record's signed token instead when
    it is first sent (connector/outbound/compose.py; the key lives there)."""
    return f"relay-{secrets.token_hex(16)}@{_sending_domain(mailbox) or 'relay.invalid'}"


@transaction.atomic
def outbox_compose(
    *,
    user,
    mailbox: Mailbox,
    to,
    cc=(),
    bcc=(),
    subject: str,
    text_body: str = "",
    html_body: str = "",
    attachments=(),
    record=None,
    reply_to_message=None,
    in_reply_to: str = "",
    references: str = "",
    purpose: str = "compose",
    include_signature: bool = True,
    hold: bool = False,
    draft=None,
    allow_empty_subject: bool = True,
):
    """Queue a message from `mailbox`. `record` (a CRM record) is the record it is sent
    from: its reference goes into the subject, its token into the Message-ID, and the sent
    message is filed there. Raises PermissionDenied or ValidationError before any row exists.

    `html_body` is sanitised here whoever wrote it (docs/reliability.md X-20); images pasted
    into it as `data:` URLs leave as inline `cid:` parts. `hold` (a person pressing Send) keeps
    the entry "scheduled" for RELAY_UNDO_SEND_SECONDS so Undo can take it back
    (docs/product.md §5.5); `draft`, the person's draft it came from, is deleted with it."""

    may_send_as(user, mailbox)
    to_list, cc_list, bcc_list = (parse_recipients(v) for v in (to, cc, bcc))
    if not (to_list or cc_list or bcc_list):
        raise ValidationError("Add at least one recipient.")
    subject = check_header_value("Subject", subject).strip()
    if not subject and not allow_empty_subject:
        raise SubjectMissing("Send without a subject?")
    check_header_value("The mailbox's display name", mailbox.display_name)
    subject = _sent_from_reference(record, subject)[:900]
    if len(subject) > 900:
        raise ValidationError("The subject is too long.")
    html_body = clean_composed_html(html_body) if html_body else ""
    html_body, images = inline_images(html_body, domain=_sending_domain(mailbox))
    if not text_body and html_body:
        text_body = text_from_html(html_body)
    if include_signature:
        text_body, html_body = _with_signature(text_body, html_body, mailbox.signature)
    if not html_body:
        html_body = _html_from_text(text_body)
    undo_seconds = settings.RELAY_UNDO_SEND_SECONDS if hold else 0
    for label, value in (("In-Reply-To", in_reply_to), ("References", references)):
        check_header_value(label, value)
    entry = OutboxEntry.objects.create(
        mailbox=mailbox,
        created_by=user,
        state=OutboxEntry.State.SCHEDULED if undo_seconds > 0 else OutboxEntry.State.QUEUED,
        next_attempt_at=(
            timezone.now() + dt.timedelta(seconds=undo_seconds) if undo_seconds > 0 else None
        ),
        message_id=_new_message_id(mailbox),
        from_address=mailbox.email_address or default_from_email(),
        to=[str(r) for r in to_list],
        cc=[str(r) for r in cc_list],
        bcc=[str(r) for r in bcc_list],
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        in_reply_to=in_reply_to.strip("<> "),
        references=references.strip(),
        reply_to_message=reply_to_message,
        record_type=getattr(record, "record_type", "") if record is not None else "",
        record_id=record.pk if record is not None else None,
        purpose=purpose,
        attachments=_attachment_rows([*attachments, *images]),
    )
    if draft is not None:
        drafts = type(draft).objects.filter(pk=draft.pk, user=user)
        if entry.state == OutboxEntry.State.SCHEDULED:
            drafts.update(sent_entry=entry)  # hidden until released (deleted) or undone
        else:
            drafts.delete()
    outbox_queue(entry)
    return entry


def _message_addresses(message, role: str) -> list[Recipient]:
    return [
        Recipient(" ".join(HEADER_FORBIDDEN.sub(" ", name).split()), address)
        for name, address in message.addresses.filter(role=role)
        .order_by("position")
        .values_list("name", "address")
    ]


def reply_recipients(*, message, mailbox: Mailbox, reply_all: bool = False):
    """(to, cc) of a reply: to Reply-To, else From; to the original recipients when we sent
    the original ourselves; reply-all adds the other To and Cc, never our own address."""
    own = {(mailbox.email_address or "").lower()}
    sender = _message_addresses(message, "from")
    if sender and sender[0].address in own:
        to = _message_addresses(message, "to")
    else:
        to = _message_addresses(message, "reply_to") or sender
    cc: list[Recipient] = []
    if reply_all:
        taken = own | {r.address for r in to}
        for recipient in _message_addresses(message, "to") + _message_addresses(message, "cc"):
            if recipient.address not in taken:
                cc.append(recipient)
                taken.add(recipient.address)
    return [r for r in to if r.address not in own] or to, cc


def _default_record(message):
    """The ticket (else opportunity) a message is filed on: where a reply is sent from."""

    for record_type in ("ticket", "opportunity"):
        filing = (
            Filing.objects.filter(
                message=message, record_type=record_type, unlinked_at__isnull=True
            )
            .select_related(record_type)
            .order_by("created_at", "pk")
            .first()
        )
        if filing is not None:
            return filing.record
    return None


def _attribution(message) -> str:
    when = message.date.strftime("%a, %d %b %Y %H:%M") if message.date else "an earlier date"
    who = normalise_subject(message.from_name or message.from_address or "someone")
    if message.from_name and message.from_address:
        who = f"{who} <{message.from_address}>"
    return f"On {when}, {who} wrote:"


def _original_text(message) -> str:
    return (message.text_body or "")[:20000]


def _quote_text(message) -> str:
    original = _original_text(message)
    quoted = "\n".join(f"> {line}" if line else ">" for line in original.splitlines())
    return f"{_attribution(message)}\n{quoted}\n"


def quote_html(message) -> str:
    """The quoted original in HTML: the attribution line, then the original's text in a
    blockquote, escaped (its HTML is never copied: docs/reliability.md X-15)."""
    return (
        f"<div>{html.escape(_attribution(message))}</div>\n"
        f'<blockquote type="cite">{_html_from_text(_original_text(message))}</blockquote>'
    )


def _references_for(message) -> str:
    ids = [i for i in (message.references or "").split() if i] + [message.message_id]
    ids = [i.strip("<>") for i in ids if i.strip("<>")]
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1) :]
    return " ".join(f"<{i}>" for i in ids)


def message_reply(
    *,
    user,
    message,
    text_body: str = "",
    html_body: str = "",
    reply_all: bool = False,
    to=None,
    cc=None,
    bcc=(),
    subject: str | None = None,
    attachments=(),
    record=None,
    mailbox: Mailbox | None = None,
    quote: bool = True,
    include_signature: bool = True,
    hold: bool = False,
    draft=None,
):
    """Reply (or reply-all) to `message` from its mailbox (or `mailbox`). Recipients default
    to reply_recipients(); In-Reply-To and References thread it (RFC 5322 3.6.4)."""
    from ..permissions import readable_messages

    if not readable_messages(user).filter(pk=message.pk).exists():
        raise PermissionDenied("You may not reply to this message.")
    mailbox = mailbox or message.mailbox
    default_to, default_cc = reply_recipients(message=message, mailbox=mailbox, reply_all=reply_all)
    if subject is None:
        base = _REPLY_PREFIX.sub("", normalise_subject(message.subject))
        subject = f"Re: {base}" if base else "Re:"
    if record is None:
        record = _default_record(message)
    # The signature goes above the quoted original, where people look for it (and the
    # editor shows it there already when include_signature is False).
    if include_signature:
        text_body, html_body = _with_signature(text_body, html_body, mailbox.signature)
    if quote and message.text_body:
        if html_body:
            html_body = clean_composed_html(html_body)
            text_body = text_body or text_from_html(html_body)
        else:
            html_body = _html_from_text(text_body.rstrip())
        text_body = f"{text_body.rstrip()}\n\n{_quote_text(message)}"
        html_body += "\n<br>\n" + quote_html(message)
    return outbox_compose(
        user=user,
        mailbox=mailbox,
        to=default_to if to is None else to,
        cc=default_cc if cc is None else cc,
        bcc=bcc,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        attachments=attachments,
        record=record,
        reply_to_message=message,
        in_reply_to=message.message_id,
        references=_references_for(message),
        include_signature=False,
        hold=hold,
        draft=draft,
    )


def message_forward(
    *,
    user,
    message,
    to,
    cc=(),
    bcc=(),
    text_body: str = "",
    html_body: str = "",
    attachments=(),
    include_attachments: bool = True,
    keep_attachments=None,
    subject: str | None = None,
    record=None,
    mailbox: Mailbox | None = None,
    include_signature: bool = True,
    hold: bool = False,
    draft=None,
    allow_empty_subject: bool = True,
):
    """Forward `message` with its attachments (stored blobs: nothing is downloaded again);
    `keep_attachments`, ids of the original's attachments, keeps only those (the person
    removed the others in the form)."""
    from ..permissions import readable_messages

    if not readable_messages(user).filter(pk=message.pk).exists():
        raise PermissionDenied("You may not forward this message.")
    base = _FORWARD_PREFIX.sub("", normalise_subject(message.subject))
    recipients = ", ".join(
        str(r) for r in _message_addresses(message, "to") + _message_addresses(message, "cc")
    )
    header = "---------- Forwarded message ----------\n"
    header += f"From: {message.from_name} <{message.from_address}>\n"
    if message.date:
        header += f"Date: {message.date:%a, %d %b %Y %H:%M %z}\n"
    header += f"Subject: {normalise_subject(message.subject)}\nTo: {recipients}\n\n"
    forwarded = header + (message.text_body or "")
    mailbox = mailbox or message.mailbox
    if include_signature:
        text_body, html_body = _with_signature(text_body, html_body, mailbox.signature)
    if html_body:
        html_body = clean_composed_html(html_body)
        text_body = text_body or text_from_html(html_body)
    else:
        html_body = _html_from_text(text_body.rstrip()) if text_body.strip() else ""
    text_body = f"{text_body.rstrip()}\n\n{forwarded}".lstrip("\n")
    html_body += '\n<blockquote type="cite">' + _html_from_text(forwarded) + "</blockquote>"
    rows = list(_attachment_rows(attachments))
    if include_attachments:
        originals = message.attachments.select_related("blob").order_by("position")
        if keep_attachments is not None:
            originals = originals.filter(pk__in=[int(pk) for pk in keep_attachments])
        for attachment in originals:
            rows.append(
                {
                    "blob": attachment.blob.sha256,
                    "filename": attachment.filename,
                    "content_type": attachment.content_type,
                    "content_id": attachment.content_id if attachment.is_inline else "",
                }
            )
    return outbox_compose(
        user=user,
        mailbox=mailbox,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=(f"Fwd: {base}" if base else "Fwd:") if subject is None else subject,
        text_body=text_body,
        html_body=html_body,
        attachments=rows,
        record=record,
        reply_to_message=message,
        include_signature=False,
        hold=hold,
        draft=draft,
        allow_empty_subject=allow_empty_subject,
    )
