"""A conversation's owner and state: assign, Done, Open, Waiting, Snooze, one at a time from
the conversation's toolbar (and its shortcuts e, i, h, #) or in bulk from the list
(docs/product.md §7.8). Every action goes through the permission gate first: a conversation of
a mailbox the user may not read is the same 404 as one that does not exist."""

from __future__ import annotations

import datetime as dt
import json

from django.contrib import messages as flash
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from inbox.permissions import get_mailbox_or_404, get_message_or_404, readable_threads
from inbox.services.conversations import (
    conversation_assign,
    conversation_set_status,
    conversations_bulk,
)
from inbox.views.htmx import CHANGED, _trigger

STATUS_ACTIONS = {"done": "done", "open": "open", "waiting": "waiting"}


def snooze_choices(now: dt.datetime | None = None) -> list[tuple[str, str, dt.datetime]]:
    """The snooze menu: (key, label, moment), in the server's time zone."""
    now = timezone.localtime(now or timezone.now())
    morning = now.replace(hour=8, minute=0, second=0, microsecond=0)
    tomorrow = morning + dt.timedelta(days=1)
    monday = morning + dt.timedelta(days=(7 - now.weekday()) or 7)
    return [
        ("later", "Later today (3 hours)", now + dt.timedelta(hours=3)),
        ("tomorrow", f"Tomorrow, {tomorrow:%H:%M}", tomorrow),
        ("monday", f"Next Monday, {monday.day} {monday:%b}", monday),
        ("week", "In a week", morning + dt.timedelta(days=7)),
    ]


def snooze_until(request) -> dt.datetime | None:
    """The moment asked for: a menu key, or a date and time typed in the form."""
    key = request.POST.get("until", "")
    for choice, _label, moment in snooze_choices():
        if key == choice:
            return moment
    typed = request.POST.get("until_at", "")
    try:
        moment = dt.datetime.fromisoformat(typed)
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _assignee(request):
    """The user named by `assignee` (empty: nobody). An unknown id is a 422, not a 404: the
    conversation itself was found."""
    value = request.POST.get("assignee", "")
    if not value:
        return None
    user = get_user_model().objects.filter(pk=value if value.isdigit() else 0).first()
    if user is None:
        raise ValidationError("No such person.")
    return user


def _apply(request, thread, action: str) -> str:
    """One action on one conversation; returns the notice to show."""
    user = request.user
    if action == "assign_me":
        conversation_assign(actor=user, thread=thread, assignee=user)
        return "Assigned to you."
    if action == "assign":
        assignee = _assignee(request)
        conversation_assign(actor=user, thread=thread, assignee=assignee)
        return "Unassigned." if assignee is None else "Assigned."
    if action == "snooze":
        until = snooze_until(request)
        if until is None:
            raise ValidationError("Pick when it should come back.")
        conversation_set_status(actor=user, thread=thread, status="snoozed", until=until)
        return "Snoozed."
    if action in STATUS_ACTIONS:
        conversation_set_status(actor=user, thread=thread, status=STATUS_ACTIONS[action])
        return {"done": "Marked done.", "open": "Reopened.", "waiting": "Waiting on the customer."}[
            action
        ]
    raise ValidationError("Unknown action.")


@require_POST
def conversation_state(request, pk: int):
    """Assign, close, reopen, wait or snooze the conversation of message `pk`."""
    from inbox.views.conversations import _conversation_context

    message = get_message_or_404(request.user, pk)
    if message.thread_id is None:
        raise Http404("No such conversation.")
    thread = readable_threads(request.user).get(pk=message.thread_id)
    try:
        notice = _apply(request, thread, request.POST.get("action", ""))
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=422)
    if not request.htmx:
        flash.success(request, notice)
        # Shown again after an action, not opened: it does not read itself (§7.7).
        return redirect(reverse("inbox:conversation", args=[message.pk]) + "?reload=1")
    context = _conversation_context(request, get_message_or_404(request.user, pk), opening=False)
    context["state_notice"] = notice
    return _trigger(render(request, "inbox/_conversation.html", context), CHANGED)


BULK_NOTICES = {
    "mark_read": "marked read",
    "mark_unread": "marked unread",
    "archive": "moving to Archive",
    "trash": "moving to Trash",
}


@require_POST
def conversations_bulk_action(request):
    """The list's bulk bar: one action on the ticked conversations, of one mailbox or, from
    All mailboxes, of several (docs/product.md §7.8). Each conversation is checked against the
    user's access to its own mailbox: those the user may not read are not there, as with a
    404, and none found at all is a 404."""
    wanted = request.POST.get("mailbox", "")
    ids = [int(v) for v in request.POST.getlist("thread") if v.isdigit()][:500]
    threads = readable_threads(request.user).filter(pk__in=ids).select_related("mailbox")
    if wanted == "all":
        default_back = reverse("inbox:inbox_page") + "?mailbox=all"
    else:
        mailbox = get_mailbox_or_404(request.user, int(wanted) if wanted.isdigit() else 0)
        threads = threads.filter(mailbox=mailbox)
        default_back = reverse("inbox:inbox_page") + f"?mailbox={mailbox.pk}"
    threads = list(threads)
    if ids and not threads:
        raise Http404("No such conversation.")
    action = request.POST.get("action", "")
    back = request.POST.get("next", "")
    if not back.startswith(reverse("inbox:inbox_page")):
        back = default_back
    try:
        if not threads:
            raise ValidationError("Tick the conversations first.")
        until = snooze_until(request) if action == "snooze" else None
        if action == "snooze" and until is None:
            raise ValidationError("Pick when they should come back.")
        assignee = _assignee(request) if action == "assign" else None
        if action == "assign" and assignee is None:
            action = "unassign"
        changed = conversations_bulk(
            actor=request.user, threads=threads, action=action, assignee=assignee, until=until
        )
    except ValidationError as exc:
        if request.htmx:
            return HttpResponse(" ".join(exc.messages), status=422)
        flash.error(request, " ".join(exc.messages))
        return redirect(back)
    plural = "s" if changed != 1 else ""
    notice = f"{changed} conversation{plural} {BULK_NOTICES.get(action, 'changed')}."
    if action in ("archive", "trash") and changed < len(threads):
        left = len(threads) - changed
        folder = "an Archive" if action == "archive" else "a Trash"
        notice += f" {left} left where they are: their mailbox has no {folder} folder."
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = json.dumps({CHANGED: True, "relay:notice": {"text": notice}})
        return response
    flash.success(request, notice)
    return redirect(back)
