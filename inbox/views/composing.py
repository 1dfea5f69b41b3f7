"""Compose, reply, reply-all and forward: the form, and the outbox entry it becomes."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from crm.models import RECORD_MODELS
from inbox.forms import ComposeForm
from inbox.models import Mailbox
from inbox.permissions import get_mailbox_or_404, get_message_or_404
from inbox.selectors.outbox import reply_since
from inbox.services.composing import (
    message_forward,
    message_reply,
    outbox_compose,
    reply_recipients,
)
from inbox.services.mailboxes import mailboxes_for_user
from inbox.services.presence import PRESENCE_REFRESH, presence_done_writing

COMPOSE_MODES = {"reply": "Reply", "reply_all": "Reply all", "forward": "Forward"}


def _compose_subject(message, mode: str) -> str:
    subject = (message.subject or "").strip()
    prefix = "Fwd: " if mode == "forward" else "Re: "
    if subject.lower().startswith(prefix.lower()):
        return subject
    return f"{prefix}{subject}".strip()


@require_http_methods(["GET", "POST"])
def compose_page(request):
    """Write a new message (optionally from a record: its reference goes into the subject and
    the sent mail is filed there), or reply, reply to all, forward. Sending is queued: the
    outbox keeps it, with its error, until the mailbox's server takes it."""
    data = request.POST if request.method == "POST" else request.GET
    original = None
    mode = data.get("mode", "") if data.get("reply_to", "").isdigit() else ""
    if mode:
        if mode not in COMPOSE_MODES:
            raise Http404("No such way to answer.")
        original = get_message_or_404(request.user, int(data["reply_to"]))
    record = None
    if data.get("record_type") in RECORD_MODELS and data.get("record_id", "").isdigit():
        record = get_object_or_404(RECORD_MODELS[data["record_type"]], pk=int(data["record_id"]))
    mailboxes = mailboxes_for_user(user=request.user)
    if data.get("mailbox", "").isdigit():
        # A mailbox the user may not send from is missing, as everywhere else.
        get_mailbox_or_404(request.user, int(data["mailbox"]))
    if not mailboxes:
        flash.error(request, "Connect a mailbox first: mail goes out through its server.")
        return redirect("inbox:inbox_page")
    initial = {"mailbox": (original.mailbox_id if original else mailboxes[0].pk)}
    if original is not None:
        initial["subject"] = _compose_subject(original, mode)
        if mode != "forward":
            to, cc = reply_recipients(
                message=original, mailbox=original.mailbox, reply_all=mode == "reply_all"
            )
            initial["to"] = ", ".join(str(r) for r in to)
            initial["cc"] = ", ".join(str(r) for r in cc)
    elif getattr(record, "reference", ""):
        initial["subject"] = f"[{record.reference}] "
    if original is None and record is not None:
        initial["to"] = ", ".join(_record_addresses(record))
    if request.method == "POST":
        form = ComposeForm(
            request.POST, request.FILES, mailboxes=mailboxes, forwarding=mode == "forward"
        )
    else:
        form = ComposeForm(
            initial={**initial, **{k: data[k] for k in ("mailbox",) if k in data}},
            mailboxes=mailboxes,
            forwarding=mode == "forward",
        )
    opened = _opened_at(data)
    personal_ids = [m.pk for m in mailboxes if m.kind == Mailbox.Kind.PERSONAL]
    collision = None
    if request.method == "POST" and form.is_valid() and original is not None:
        if mode in ("reply", "reply_all") and not data.get("send_anyway"):
            # Someone else replied since this person opened the conversation: ask first
            # (docs/product.md §5.4).
            collision = reply_since(user=request.user, message=original, since=opened)
    if request.method == "POST" and form.is_valid() and collision is None:
        try:
            _send(request.user, form.cleaned_data, original=original, mode=mode, record=record)
        except (ValidationError, PermissionDenied) as exc:
            messages_ = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
            form.add_error(None, " ".join(messages_))
        else:
            flash.success(request, "Queued: it goes out in a moment, from the outbox.")
            if original is not None:
                presence_done_writing(user=request.user, message=original)
            if record is not None:
                return redirect(f"{record.get_absolute_url()}#email")
            if original is not None:
                return redirect("inbox:conversation", pk=original.pk)
            return redirect("inbox:inbox_page")
    return render(
        request,
        "inbox/compose.html",
        {
            "form": form,
            "original": original,
            "mode": mode,
            "mode_label": COMPOSE_MODES.get(mode, "New message"),
            "record": record,
            "opened": int(opened.timestamp()),
            "collision": collision,
            "shared_conversation": original is not None
            and original.mailbox.kind == Mailbox.Kind.SHARED,
            "personal_ids": personal_ids,
            "personal_warning": original is not None
            and original.mailbox.kind == Mailbox.Kind.SHARED
            and str(form["mailbox"].value()) in {str(pk) for pk in personal_ids},
            "presence_refresh": PRESENCE_REFRESH,
        },
        status=422 if form.is_bound and form.errors else (409 if collision else 200),
    )


def _opened_at(data) -> dt.datetime:
    """When the person opened the conversation they answer (the conversation's Reply link
    carries it; else when the reply form was first shown). Never in the future."""
    now = dt.datetime.now(dt.UTC)
    try:
        opened = dt.datetime.fromtimestamp(int(data.get("opened", "")), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return now
    return min(opened, now)


def _record_addresses(record) -> list[str]:
    """Who a message from a record goes to by default: the person's first address."""
    person = (
        record if record.record_type in ("contact", "lead") else getattr(record, "contact", None)
    )
    if person is None:
        return []
    first = person.emails.order_by("pk").values_list("email", flat=True).first()
    return [first] if first else []


def _send(user, data: dict, *, original, mode: str, record):
    mailbox = get_mailbox_or_404(user, data["mailbox"])
    common = {
        "user": user,
        "mailbox": mailbox,
        "cc": data["cc"],
        "bcc": data["bcc"],
        "text_body": data["body"],
        "attachments": data["attachments"],
    }
    if mode in ("reply", "reply_all"):
        return message_reply(
            message=original,
            reply_all=mode == "reply_all",
            to=data["to"],
            subject=data["subject"] or None,
            **common,
        )
    if mode == "forward":
        return message_forward(message=original, to=data["to"], record=record, **common)
    return outbox_compose(to=data["to"], subject=data["subject"], record=record, **common)
