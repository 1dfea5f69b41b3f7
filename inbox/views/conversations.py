"""One conversation, and the actions on its messages (read, unread, flag, move, delete)."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from inbox.models import Folder
from inbox.permissions import get_message_or_404, readable_messages
from inbox.selectors.conversations import (
    conversation_messages,
    filing_reason,
    move_targets,
    record_short_label,
)
from inbox.services.messages import message_change_flag, message_delete, message_move
from inbox.views.htmx import CHANGED, _compose_url, _trigger


def _conversation_context(request, message, *, opening: bool) -> dict:
    """`opening`: the person opens the conversation (it then reads itself, docs/product.md
    §7.7). A conversation shown again after an action on it (Mark unread above all) or re-loaded
    because a filing changed does not: it would undo a Mark unread 400 ms after the click."""
    thread = conversation_messages(user=request.user, message=message)
    for item in thread:
        for filing in item.active_filings:
            filing.reason = filing_reason(filing)
            filing.label = record_short_label(filing.record)
    latest = thread[-1] if thread else message
    return {
        "message": message,
        "latest": latest,
        "thread": thread,
        "subject": latest.subject or message.subject,
        "unread": [m for m in thread if not m.seen],
        "autoread": opening,
        "move_targets": move_targets(message=message),
        "compose_url": _compose_url(),
        "reading": _reading_available(),
    }


def _reading_available() -> bool:
    """Whether the safe reading view (sanitised body in a sandboxed frame, docs/product.md §7.3) is
    there: each message's body then loads from it; until then the conversation shows the text body,
    escaped."""
    try:
        reverse("inbox:message_read", args=[1])
    except NoReverseMatch:
        return False
    return True


@require_GET
def conversation(request, pk: int):
    message = get_message_or_404(request.user, pk)
    # ?reload=1: the conversation pane re-loading itself (a filing changed), or the page after
    # an action without htmx; only an opening reads the conversation.
    context = _conversation_context(request, message, opening=not request.GET.get("reload"))
    if request.htmx:
        return render(request, "inbox/_conversation.html", context)
    return render(request, "inbox/conversation_page.html", context)


ACTIONS = {"mark_read", "mark_unread", "flag", "unflag", "move", "delete"}


@require_POST
def message_action(request, pk: int):
    """Mark read/unread, flag, move, delete. The CRM shows the change at once; the server
    copies change on the next sync (inbox/services/messages.py queues them)."""
    message = get_message_or_404(request.user, pk)
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        return HttpResponse("Unknown action.", status=400)
    notice = ""
    try:
        if action == "mark_read":
            # Reading a conversation reads all of it.
            for item in readable_messages(request.user).filter(
                thread=message.thread_id or -1, mailbox=message.mailbox_id, seen=False
            ) or [message]:
                message_change_flag(user=request.user, message=item, action=action)
        elif action in ("mark_unread", "flag", "unflag"):
            message_change_flag(user=request.user, message=message, action=action)
        elif action == "move":
            target = get_object_or_404(
                Folder, pk=request.POST.get("folder") or 0, mailbox=message.mailbox_id
            )
            message_move(user=request.user, message=message, target_folder=target)
            notice = f"Moving to {target.name}."
        else:
            message_delete(user=request.user, message=message)
            notice = "Moved to Trash."
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=422)
    if not request.htmx:
        if notice:
            flash.success(request, notice)
        return redirect(reverse("inbox:conversation", args=[message.pk]) + "?reload=1")
    message = get_message_or_404(request.user, pk)
    context = _conversation_context(request, message, opening=False)
    context["notice"] = notice
    return _trigger(render(request, "inbox/_conversation.html", context), CHANGED)
