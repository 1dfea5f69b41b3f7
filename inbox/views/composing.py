"""Compose, reply, reply-all and forward: the form (a page, or inline under a conversation),
its drafts saved as the person types, and Undo while a sent message is held
(docs/product.md §5.1, §5.5)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from crm.confirm import confirm_page, done
from crm.models import RECORD_MODELS
from inbox.forms import ComposeForm
from inbox.models import Draft, Mailbox, Message, OutboxEntry
from inbox.permissions import get_mailbox_or_404, get_message_or_404
from inbox.richtext import clean_composed_html, is_blank_html
from inbox.selectors.drafts import draft_for_conversation, drafts_for_user
from inbox.selectors.outbox import reply_since
from inbox.services.composing import (
    SubjectMissing,
    message_forward,
    message_reply,
    outbox_compose,
    quote_html,
    reply_recipients,
)
from inbox.services.drafts import draft_discard, draft_get, draft_save
from inbox.services.mailboxes import mailboxes_for_user
from inbox.services.outbox import outbox_undo
from inbox.services.presence import PRESENCE_REFRESH, composer_token, presence_done_writing

COMPOSE_MODES = {"reply": "Reply", "reply_all": "Reply all", "forward": "Forward"}
UNDO_TAG = "relay-undo"


def _compose_subject(message, mode: str) -> str:
    subject = (message.subject or "").strip()
    prefix = "Fwd: " if mode == "forward" else "Re: "
    if subject.lower().startswith(prefix.lower()):
        return subject
    return f"{prefix}{subject}".strip()


def _signature_text(mailbox: Mailbox | None) -> str:
    signature = ((mailbox.signature if mailbox else "") or "").strip("\n")
    # "-- " on a line of its own: the separator clients recognise (RFC 3676 4.3).
    return f"\n\n-- \n{signature}\n" if signature else ""


def _draft_or_404(user, pk) -> Draft:
    try:
        return draft_get(user=user, pk=int(pk))
    except (Draft.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such draft.") from exc


def _record_of(data):
    if data.get("record_type") in RECORD_MODELS and str(data.get("record_id", "")).isdigit():
        return get_object_or_404(RECORD_MODELS[data["record_type"]], pk=int(data["record_id"]))
    return None


def _record_addresses(record) -> list[str]:
    """Who a message from a record goes to by default: the person's first address."""
    person = (
        record if record.record_type in ("contact", "lead") else getattr(record, "contact", None)
    )
    if person is None:
        return []
    first = person.emails.order_by("pk").values_list("email", flat=True).first()
    return [first] if first else []


def _opened_at(data) -> dt.datetime:
    """When the person opened the conversation they answer (the conversation's Reply link
    carries it; else when the reply form was first shown). Never in the future."""
    now = dt.datetime.now(dt.UTC)
    try:
        opened = dt.datetime.fromtimestamp(int(data.get("opened", "")), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return now
    return min(opened, now)


def compose_context(
    request: HttpRequest,
    *,
    original,
    mode: str,
    record,
    draft=None,
    data=None,
    follow_draft: bool = False,
):
    """Everything the composer needs, for the compose page and the inline composer under a
    conversation (inbox/templates/inbox/_composer.html)."""
    data = data if data is not None else {}
    mailboxes = mailboxes_for_user(user=request.user)
    if not mailboxes:
        return None
    if draft is None and original is not None and mode in ("reply", "reply_all"):
        draft = draft_for_conversation(user=request.user, message=original)
        if (
            follow_draft
            and draft is not None
            and draft.reply_to_message_id not in (None, original.pk)
        ):
            # The draft answers another message of this conversation: it is restored as it
            # was written, answering that message.
            original = draft.reply_to_message
            mode = draft.mode or mode
    mailbox_id = original.mailbox_id if original else mailboxes[0].pk
    if str(data.get("mailbox", "")).isdigit():
        mailbox_id = int(data["mailbox"])
    if draft is not None and draft.mailbox_id:
        mailbox_id = draft.mailbox_id
    mailbox = next((m for m in mailboxes if m.pk == mailbox_id), mailboxes[0])
    initial = {"mailbox": mailbox.pk, "body": _signature_text(mailbox)}
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
    if draft is not None:
        initial.update(
            to=draft.to,
            cc=draft.cc,
            bcc=draft.bcc,
            subject=draft.subject,
            body=draft.body_text,
            body_html=draft.body_html,
            draft=draft.pk,
        )
    forward_attachments = []
    if original is not None and mode == "forward":
        forward_attachments = list(original.attachments.select_related("blob").order_by("position"))
    return {
        "initial": initial,
        "mailboxes": mailboxes,
        "original": original,
        "mode": mode,
        "mode_label": COMPOSE_MODES.get(mode, "New message"),
        "record": record,
        "draft": draft,
        "draft_attachments": list(draft.attachments or []) if draft is not None else [],
        "forward_attachments": forward_attachments,
        "quote_html": quote_html(original) if original is not None else "",
        "signatures": {m.pk: _signature_text(m) for m in mailboxes},
        "opened": int(_opened_at(data).timestamp()),
        "personal_ids": [m.pk for m in mailboxes if m.kind == Mailbox.Kind.PERSONAL],
        "shared_conversation": original is not None
        and original.mailbox.kind == Mailbox.Kind.SHARED,
        "presence_refresh": PRESENCE_REFRESH,
        # Names this composer for presence (docs/product.md §5.4): new on every render, so a
        # form that comes back (an error, a question) is a composer that is writing again.
        "composer_token": composer_token(),
        "undo_seconds": settings.RELAY_UNDO_SEND_SECONDS,
    }


@require_http_methods(["GET", "POST"])
def compose_page(request):
    """Write a new message (optionally from a record: its reference goes into the subject and
    the sent mail is filed there), or reply, reply to all, forward any message of a
    conversation. Sending is held for Undo, then queued: the outbox keeps it, with its error,
    until the mailbox's server takes it."""
    data = request.POST if request.method == "POST" else request.GET
    draft = _draft_or_404(request.user, data["draft"]) if data.get("draft") else None
    original = None
    mode = data.get("mode", "") if data.get("reply_to", "").isdigit() else ""
    if draft is not None and not data.get("reply_to"):
        mode, original = draft.mode, draft.reply_to_message
        if original is not None:
            original = get_message_or_404(request.user, original.pk)
    if mode and original is None:
        if mode not in COMPOSE_MODES:
            raise Http404("No such way to answer.")
        original = get_message_or_404(request.user, int(data["reply_to"]))
    elif mode and mode not in COMPOSE_MODES:
        raise Http404("No such way to answer.")
    record = _record_of(data)
    if record is None and draft is not None and draft.record_type in RECORD_MODELS:
        record = RECORD_MODELS[draft.record_type].objects.filter(pk=draft.record_id).first()
    if str(data.get("mailbox", "")).isdigit():
        # A mailbox the user may not send from is missing, as everywhere else.
        get_mailbox_or_404(request.user, int(data["mailbox"]))
    context = compose_context(
        request, original=original, mode=mode, record=record, draft=draft, data=data
    )
    if context is None:
        flash.error(request, "Connect a mailbox first: mail goes out through its server.")
        return redirect("inbox:inbox_page")
    original, mode, draft = context["original"], context["mode"], context["draft"]
    if request.method == "GET" and data.get("inline") and original is not None:
        # A message's Reply/Reply all/Forward under the conversation, through htmx.
        return HttpResponse(inline_composer_html(request, original, mode=mode, open_=True))
    if request.method == "POST":
        form = ComposeForm(
            request.POST,
            request.FILES,
            mailboxes=context["mailboxes"],
            forwarding=mode == "forward",
        )
    else:
        form = ComposeForm(
            initial=context["initial"],
            mailboxes=context["mailboxes"],
            forwarding=mode == "forward",
        )
    collision = no_subject = None
    status = 200
    if request.method == "POST" and data.get("action") == "save_draft" and not form.is_valid():
        if request.headers.get("X-Relay-Autosave"):
            errors = " ".join(m for field in form.errors.values() for m in field)
            return JsonResponse({"error": errors}, status=422)
    if request.method == "POST" and form.is_valid():
        if data.get("action") == "save_draft":
            response = _save_draft(request, form, original=original, mode=mode, record=record)
            if response is not None:
                return response
        if original is not None and mode in ("reply", "reply_all") and not data.get("send_anyway"):
            # Someone else replied since this person opened the conversation: ask first
            # (docs/product.md §5.4).
            collision = reply_since(user=request.user, message=original, since=_opened_at(data))
        if collision is None and data.get("action") != "save_draft":
            try:
                entry = _send(request, form, original=original, mode=mode, record=record)
            except SubjectMissing:
                no_subject = True
            except (ValidationError, PermissionDenied) as exc:
                messages_ = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
                form.add_error(None, " ".join(messages_))
            else:
                return _after_send(request, entry, original=original, record=record)
        status = 409 if collision else (422 if no_subject or form.errors else 200)
    elif request.method == "POST":
        status = 422
    context.update(
        form=form,
        # What the editor starts with: sanitised even when it is the browser's own post
        # coming back with an error (docs/reliability.md X-20).
        body_html_value=clean_composed_html(form["body_html"].value() or ""),
        collision=collision,
        no_subject=no_subject,
        personal_warning=context["shared_conversation"]
        and str(form["mailbox"].value()) in {str(pk) for pk in context["personal_ids"]},
        kept_forward=(
            {int(v) for v in request.POST.getlist("forward_attachment") if v.isdigit()}
            if request.method == "POST"
            else {a.pk for a in context["forward_attachments"]}
        ),
    )
    return render(request, "inbox/compose.html", context, status=status)


def _form_draft(request, form, *, original, mode, record, files=()) -> Draft:
    cleaned = form.cleaned_data
    draft = None
    if cleaned.get("draft"):
        draft = _draft_or_404(request.user, cleaned["draft"])
    mailbox = get_mailbox_or_404(request.user, cleaned["mailbox"])
    keep = request.POST.getlist("keep_attachment") if draft is not None else None
    return draft_save(
        user=request.user,
        draft=draft,
        message=original,
        mode=mode,
        mailbox=mailbox,
        record=record,
        to=cleaned["to"],
        cc=cleaned["cc"],
        bcc=cleaned["bcc"],
        subject=cleaned["subject"],
        body_html=cleaned["body_html"],
        body_text=cleaned["body"],
        keep_attachments=keep,
        add_attachments=files,
    )


def _save_draft(request, form, *, original, mode, record) -> HttpResponse | None:
    """The autosave (fetch, answered with JSON) and the plain "Save draft" button (None: the
    form is shown again with what was wrong)."""
    try:
        draft = _form_draft(
            request,
            form,
            original=original,
            mode=mode,
            record=record,
            files=form.cleaned_data["attachments"],
        )
    except ValidationError as exc:
        if request.headers.get("X-Relay-Autosave"):
            return JsonResponse({"error": " ".join(exc.messages)}, status=422)
        form.add_error(None, " ".join(exc.messages))
        return None
    if request.headers.get("X-Relay-Autosave"):
        return JsonResponse(
            {
                "draft": draft.pk,
                "saved_at": draft.updated_at.isoformat(),
                "attachments": [
                    {"blob": row["blob"], "filename": row["filename"]} for row in draft.attachments
                ],
            }
        )
    flash.success(request, "Draft saved.")
    return redirect(f"{reverse('inbox:compose')}?draft={draft.pk}")


@transaction.atomic
def _send(request, form, *, original, mode: str, record) -> OutboxEntry:
    """The form becomes the person's draft first (so Undo gives back exactly what the editor
    held), then an outbox entry held for Undo (docs/product.md §5.5). Refused input rolls
    both back; the form comes back with what was written."""
    cleaned = form.cleaned_data
    draft = _form_draft(
        request, form, original=original, mode=mode, record=record, files=cleaned["attachments"]
    )
    mailbox = get_mailbox_or_404(request.user, cleaned["mailbox"])
    html_body = clean_composed_html(cleaned["body_html"]) if cleaned["body_html"] else ""
    text_body = cleaned["body"] if not html_body or is_blank_html(html_body) else ""
    if html_body and is_blank_html(html_body):
        html_body = ""
    common = {
        "user": request.user,
        "mailbox": mailbox,
        "cc": cleaned["cc"],
        "bcc": cleaned["bcc"],
        "text_body": text_body,
        "html_body": html_body,
        "attachments": list(draft.attachments or []),
        # The signature is in the editor already, where the person saw it.
        "include_signature": False,
        "hold": True,
        "draft": draft,
    }
    if mode in ("reply", "reply_all"):
        return message_reply(
            message=original,
            reply_all=mode == "reply_all",
            to=cleaned["to"],
            subject=cleaned["subject"] or None,
            **common,
        )
    if mode == "forward":
        keep = [v for v in request.POST.getlist("forward_attachment") if v.isdigit()]
        return message_forward(
            message=original,
            to=cleaned["to"],
            subject=cleaned["subject"],
            record=record,
            keep_attachments=keep,
            allow_empty_subject=cleaned["confirm_no_subject"],
            **common,
        )
    return outbox_compose(
        to=cleaned["to"],
        subject=cleaned["subject"],
        record=record,
        allow_empty_subject=cleaned["confirm_no_subject"],
        **common,
    )


def _after_send(request, entry: OutboxEntry, *, original, record) -> HttpResponse:
    if original is not None:
        presence_done_writing(
            user=request.user, message=original, composer=request.POST.get("composer", "")[:40]
        )
    if entry.state == OutboxEntry.State.SCHEDULED:
        # The toast (crm/templates/base.html) offers Undo for as long as the entry is held.
        flash.success(request, f"Sending in {settings.RELAY_UNDO_SEND_SECONDS} seconds.", UNDO_TAG)
        request.session["relay_undo"] = entry.pk
        request.session["relay_undo_ms"] = settings.RELAY_UNDO_SEND_SECONDS * 1000
    else:
        flash.success(request, "Queued: it goes out in a moment, from the outbox.")
    if record is not None:
        return redirect(f"{record.get_absolute_url()}#email")
    if original is not None:
        return redirect("inbox:conversation", pk=original.pk)
    return redirect("inbox:inbox_page")


@require_POST
def outbox_undo_send(request, pk: int):
    """Undo: the held message goes back to the editor, as the author's draft."""
    entry = OutboxEntry.objects.filter(pk=pk, created_by=request.user).first()
    if entry is None:
        raise Http404("No such message.")
    try:
        draft = outbox_undo(user=request.user, entry=entry)
    except (ValidationError, PermissionDenied) as exc:
        flash.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
        return redirect("inbox:outbox")
    flash.info(request, "Not sent: it is back in the editor.")
    return redirect(f"{reverse('inbox:compose')}?draft={draft.pk}")


@require_http_methods(["GET"])
def drafts_page(request):
    """The user's drafts (docs/product.md §5.5): theirs only, newest first."""
    return render(request, "inbox/drafts.html", {"drafts": drafts_for_user(user=request.user)})


@require_http_methods(["GET", "POST"])
def draft_delete(request, pk: int):
    """Discard from the drafts page: asked first, with JavaScript or without (crm/confirm.py)."""
    draft = _draft_or_404(request.user, pk)
    if request.method == "GET":
        named = f"“{draft.subject or '(no subject)'}”" + (f" to {draft.to}" if draft.to else "")
        return confirm_page(
            request,
            question="Discard this draft?",
            detail=f"{named}. It cannot be brought back.",
            confirm_label="Discard",
            fields={},
            cancel_url=reverse("inbox:drafts"),
        )
    draft_discard(user=request.user, draft=draft)
    flash.success(request, "Draft discarded.")
    return done(request, reverse("inbox:drafts"))


def inline_composer(
    request, message: Message, *, mode: str = "reply", follow_draft: bool = True
) -> dict | None:
    """The composer under a conversation (docs/product.md §5.1): the context the include
    inbox/templates/inbox/_composer.html needs, or None when the user cannot send. Opening
    the conversation restores the person's draft there, whichever message it answers."""
    context = compose_context(
        request, original=message, mode=mode, record=None, follow_draft=follow_draft
    )
    if context is None:
        return None
    context["form"] = ComposeForm(
        initial=context["initial"], mailboxes=context["mailboxes"], forwarding=False
    )
    context["inline"] = True
    context["body_html_value"] = context["initial"].get("body_html", "")
    context["kept_forward"] = {a.pk for a in context["forward_attachments"]}
    return context


def inline_composer_html(request, message: Message, *, mode: str = "reply", open_=False) -> str:
    """The inline composer as HTML for the conversation partial ("" when the user has no
    mailbox to send from)."""
    context = inline_composer(request, message, mode=mode, follow_draft=not open_)
    if context is None:
        return ""
    context["open"] = open_
    return render_to_string("inbox/_inline_reply.html", context, request=request)
