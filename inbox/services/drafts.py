"""Drafts (docs/product.md §5.5): what a person writes, saved as they type, one per user and
conversation. A draft is its author's alone: every query here filters on the user, and a
draft of another user is as missing as one that does not exist."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum

from ..models import AttachmentBlob, Draft, Mailbox, Message, OutboxEntry
from ..permissions import may_send_as, readable_messages
from ..richtext import clean_composed_html
from .composing import MAX_ATTACHMENT_BYTES, _attachment_rows
from .presence import presence_done_writing

MAX_DRAFT_CHARS = 24 * 1024 * 1024  # pasted images travel inside the HTML as data: URLs
DRAFT_MODES = ("", "reply", "reply_all", "forward")


def _attachments_size(rows) -> int:
    digests = [row["blob"] for row in rows]
    total = AttachmentBlob.objects.filter(sha256__in=digests).aggregate(s=Sum("size"))["s"]
    return total or 0


def draft_get(*, user, pk: int) -> Draft:
    """The user's own draft (Draft.DoesNotExist for anyone else's, like a missing one)."""
    return Draft.objects.get(pk=pk, user=user, sent_entry__isnull=True)


@transaction.atomic
def draft_save(
    *,
    user,
    draft: Draft | None = None,
    message: Message | None = None,
    mode: str = "",
    mailbox: Mailbox | None = None,
    record=None,
    to: str = "",
    cc: str = "",
    bcc: str = "",
    subject: str = "",
    body_html: str = "",
    body_text: str = "",
    keep_attachments=None,
    add_attachments=(),
) -> Draft:
    """Create or update a draft. A reply's draft is the user's draft of that conversation
    (found again whichever message is answered). The HTML is sanitised before it is stored
    (docs/reliability.md X-20); `keep_attachments` (blob hashes) drops the others,
    `add_attachments` (uploads) are stored by hash like any attachment."""
    if mode not in DRAFT_MODES:
        raise ValidationError("No such way to answer.")
    if message is not None and not readable_messages(user).filter(pk=message.pk).exists():
        raise ValidationError("No such message.")
    if mailbox is not None:
        may_send_as(user, mailbox)
    if len(body_html or "") + len(body_text or "") > MAX_DRAFT_CHARS:
        raise ValidationError("The message is too long to be saved.")
    thread_id = message.thread_id if message is not None and mode != "forward" else None
    if draft is None and thread_id is not None:
        draft = (
            Draft.objects.select_for_update()
            .filter(user=user, thread_id=thread_id, sent_entry__isnull=True)
            .first()
        )
    if draft is None:
        draft = Draft(user=user, thread_id=thread_id)
    elif draft.user_id != user.pk or draft.sent_entry_id:
        raise ValidationError("No such draft.")
    rows = list(draft.attachments or [])
    if keep_attachments is not None:
        keep = set(keep_attachments)
        rows = [row for row in rows if row["blob"] in keep]
    new_rows = _attachment_rows(add_attachments)
    rows += new_rows
    if _attachments_size(rows) > MAX_ATTACHMENT_BYTES:
        raise ValidationError(
            f"Attachments may add up to {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB at most."
        )
    draft.reply_to_message = message
    draft.mode = mode
    draft.mailbox = mailbox
    draft.record_type = getattr(record, "record_type", "") if record is not None else ""
    draft.record_id = record.pk if record is not None else None
    draft.to, draft.cc, draft.bcc = (to or "")[:5000], (cc or "")[:5000], (bcc or "")[:5000]
    draft.subject = " ".join((subject or "").split())[:900]
    draft.body_html = clean_composed_html(body_html) if body_html else ""
    draft.body_text = body_text or ""
    draft.attachments = rows
    try:
        with transaction.atomic():
            draft.save()
    except IntegrityError:
        # Two saves of a new conversation draft at once (two tabs): the other one won; save
        # into it.
        draft = Draft.objects.select_for_update().get(
            user=user, thread_id=thread_id, sent_entry__isnull=True
        )
        return draft_save(
            user=user, draft=draft, message=message, mode=mode, mailbox=mailbox,
            record=record, to=to, cc=cc, bcc=bcc, subject=subject, body_html=body_html,
            body_text=body_text, keep_attachments=[r["blob"] for r in rows],
        )  # fmt: skip
    return draft


def draft_discard(*, user, draft: Draft) -> None:
    """Discarding a reply ends its author's "writing" on the conversation at once
    (docs/product.md §5.4)."""
    Draft.objects.filter(pk=draft.pk, user=user, sent_entry__isnull=True).delete()
    if draft.reply_to_message_id is not None:
        presence_done_writing(user=user, message=draft.reply_to_message)


def draft_from_entry(*, user, entry: OutboxEntry) -> Draft:
    """An undone message back in its author's editor: the draft it was sent from if there
    was one (what the editor held, without the quote the service added), else one made from
    the entry."""
    draft = Draft.objects.filter(sent_entry=entry, user=user).first()
    if draft is not None:
        if draft.thread_id is not None:
            # The undone message wins its conversation's slot; a newer draft written there
            # meanwhile stays, listed under Drafts.
            Draft.objects.filter(
                user=user, thread_id=draft.thread_id, sent_entry__isnull=True
            ).update(thread=None)
        return draft
    message = entry.reply_to_message
    return Draft.objects.create(
        user=user,
        mailbox=entry.mailbox,
        reply_to_message=message,
        thread=None,
        mode="reply" if entry.in_reply_to else ("forward" if message else ""),
        record_type=entry.record_type,
        record_id=entry.record_id,
        to=", ".join(entry.to),
        cc=", ".join(entry.cc),
        bcc=", ".join(entry.bcc),
        subject=entry.subject,
        body_text=entry.text_body,
        attachments=list(entry.attachments or []),
    )
