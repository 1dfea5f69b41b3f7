"""One conversation, and the actions on its messages (read, unread, flag, move, delete)."""

from __future__ import annotations

import time

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from crm.confirm import confirm_page
from crm.snapshot import read_snapshot
from inbox.models import Folder, Message, Thread
from inbox.permissions import get_message_or_404
from inbox.selectors.conversations import (
    assignable_users,
    conversation_filings,
    conversation_messages,
    effective_status,
    event_text,
    failed_server_writes,
    get_pending_change_or_404,
    move_targets,
    timeline_events,
    unread_messages,
)
from inbox.selectors.outbox import conversation_outbox
from inbox.services.conversations import conversation_mark_read, conversation_mark_unread
from inbox.services.messages import (
    message_change_flag,
    message_delete,
    message_move,
    pending_change_retry,
)
from inbox.services.presence import PRESENCE_REFRESH
from inbox.views.composing import inline_composer_html
from inbox.views.conversation_state import snooze_choices
from inbox.views.htmx import CHANGED, _compose_url, _trigger
from inbox.views.inbox import inbox_state, list_context, list_url
from inbox.views.outbox import annotate
from inbox.views.reading import message_context


def _conversation_context(request, message, *, opening: bool) -> dict:
    """`opening`: the person opens the conversation (it then reads itself, docs/product.md
    §7.7). A conversation shown again after an action on it (Mark unread above all) or re-loaded
    because a filing changed does not: it would undo a Mark unread 400 ms after the click."""
    thread = conversation_messages(user=request.user, message=message)
    latest = thread[-1] if thread else message
    mailbox = message.mailbox
    unread_ids = set(
        unread_messages(
            Message.objects.filter(pk__in=[m.pk for m in thread]),
            user=request.user,
            mailbox=mailbox,
        ).values_list("pk", flat=True)
    )
    for item in thread:
        item.unread = item.pk in unread_ids
    conversation = (
        Thread.objects.select_related("assignee").filter(pk=message.thread_id).first()
        if message.thread_id
        else None
    )
    events = timeline_events(thread_id=message.thread_id)
    for event in events:
        event.text = event_text(event)

    # Replies that have not gone out (waiting, failed, outcome unknown), shown in place with
    # the Outbox's actions (docs/product.md §5.4).
    pending = annotate(
        request.user,
        conversation_outbox(request.user, thread_message_ids=[m.pk for m in thread]),
    )
    reading = _reading_available()
    return {
        "list_url": list_url(request),
        "pending_replies": pending,
        "back_to": reverse("inbox:conversation", args=[message.pk]),
        "opened": int(time.time()),
        "presence_refresh": PRESENCE_REFRESH,
        "message": message,
        "latest": latest,
        "thread": thread,
        "timeline": _timeline(thread, events),
        "filed_records": conversation_filings(thread),
        "failed_writes": failed_server_writes(message_ids=[m.pk for m in thread]),
        "conversation": conversation,
        "status": effective_status(conversation) if conversation else "",
        "assignable": list(assignable_users(mailbox=mailbox)) if conversation else [],
        "snooze_choices": snooze_choices(),
        "subject": latest.subject or message.subject,
        "unread": [m for m in thread if m.unread],
        "autoread": opening,
        "move_targets": move_targets(message=message),
        "compose_url": _compose_url(),
        "reading": reading,
        # The newest message's body comes with the conversation, not a request after it: its
        # frame arriving later pushed everything below it down under the reader's finger
        # (a tap meant for the reply landed on the message; docs/product.md §7.12).
        "latest_body": (
            render_to_string(
                "inbox/_message.html",
                message_context(request, latest, images=False, in_thread=True),
                request=request,
            )
            if reading
            else ""
        ),
        "composer_html": inline_composer_html(request, latest),
    }


def _timeline(messages, events) -> list[tuple[str, object]]:
    """Messages and the team's events in time order: ("message", m) and ("event", e)."""
    items = [("message", m, m.date or m.created_at) for m in messages]
    items += [("event", e, e.created_at) for e in events]
    items.sort(key=lambda item: (item[2] is None, item[2] or 0, item[0] == "event"))
    return [(kind, obj) for kind, obj, _when in items]


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
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, "inbox/_conversation.html", context)
    # Opened by its address (a reload, a shared link, Back or Forward, no JavaScript): the
    # inbox itself, with the list the URL names and this conversation open beside it
    # (docs/product.md §7.12).
    with read_snapshot():  # the list with its fingerprint (crm/snapshot.py)
        state = inbox_state(request, mailbox_hint=message.mailbox)
        page = list_context(request, state)
        return render(request, "inbox/inbox.html", {**page, **context, "open_conversation": True})


ACTIONS = {"mark_read", "mark_unread", "flag", "unflag", "move", "delete"}


@require_http_methods(["GET", "POST"])
def message_action(request, pk: int):
    """Mark read/unread, flag, move, delete. The CRM shows the change at once; the server
    copies change on the next sync (inbox/services/messages.py queues them). Delete asked by
    a GET (no JavaScript) asks first (crm/confirm.py)."""
    message = get_message_or_404(request.user, pk)
    if request.method == "GET":
        if request.GET.get("action") != "delete":
            return HttpResponse("Unknown action.", status=400)
        return confirm_page(
            request,
            question="Move this message to Trash?",
            detail=(
                f"“{message.subject or '(no subject)'}” from {message.from_address}. It stays "
                "filed on its records."
            ),
            confirm_label="Move to Trash",
            fields={"action": "delete"},
            cancel_url=reverse("inbox:conversation", args=[message.pk]) + "?reload=1",
        )
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        return HttpResponse("Unknown action.", status=400)
    notice = ""
    try:
        if action == "mark_read":
            # Reading a conversation reads all of it; on a shared mailbox for this reader
            # alone (docs/product.md §7.8).
            if message.thread_id:
                conversation_mark_read(user=request.user, thread=message.thread)
            else:
                message_change_flag(
                    user=request.user,
                    message=message,
                    action=action,
                    write=message.mailbox.writes_seen,
                )
        elif action == "mark_unread":
            conversation_mark_unread(user=request.user, message=message)
        elif action in ("flag", "unflag"):
            message_change_flag(user=request.user, message=message, action=action)
        elif action == "move":
            folder = request.POST.get("folder", "")
            if not folder.isdigit():  # was a 500 (ValueError from the query)
                return HttpResponse("Choose a folder to move to.", status=400)
            target = get_object_or_404(Folder, pk=int(folder), mailbox=message.mailbox_id)
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
    if request.POST.get("respond") == "none":
        # Reading on opening (inbox/_conversation.html): the page already shows the
        # conversation; only the list needs to hear that it was read. Rendering it again here
        # was half the server's work of opening a conversation.
        return _trigger(HttpResponse(""), CHANGED)
    message = get_message_or_404(request.user, pk)
    context = _conversation_context(request, message, opening=False)
    context["notice"] = notice
    return _trigger(render(request, "inbox/_conversation.html", context), CHANGED)


@require_POST
def server_write_retry(request, pk: int):
    """Retry a change the mail server refused (docs/product.md §7.12, docs/reliability.md
    X-19): queued again through the same service, the conversation shown again."""
    change = get_pending_change_or_404(user=request.user, pk=pk)
    message = get_message_or_404(request.user, change.location.message_id)
    try:
        pending_change_retry(user=request.user, change=change)
        notice = "Trying again."
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=422)
    if not request.htmx:
        flash.success(request, f"{notice} The server follows on the next sync.")
        return redirect(reverse("inbox:conversation", args=[message.pk]) + "?reload=1")
    context = _conversation_context(request, message, opening=False)
    context["notice"] = notice
    return _trigger(render(request, "inbox/_conversation.html", context), CHANGED)
