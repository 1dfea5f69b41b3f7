"""Triage: mail the rules could not place (one at a time or in bulk) and held messages."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from inbox.models import Mailbox
from inbox.permissions import can_manage_mailbox, get_message_or_404, readable_messages
from inbox.selectors.preferences import user_preferences
from inbox.selectors.qualify import get_record_or_none, record_search
from inbox.selectors.triage import held_entries, triage_entries
from inbox.services.qualify import message_qualify
from inbox.services.triage import (
    ignore_choices,
    triage_dismiss,
    triage_ignore_dry_run,
    triage_ignore_sender,
)


@require_GET
def triage_page(request):
    # The record picker without JavaScript: its "Find" button reloads the page with the
    # results, keeping the ticked messages ticked.
    checked = {int(v) for v in request.GET.getlist("message") if v.isdigit()}
    return _triage_page(request, search=request.GET.get("q", "").strip(), checked=checked)


def _triage_page(request, *, search: str, checked: set[int], page_number=None, status=200):
    entries = triage_entries(user=request.user)
    per_page = user_preferences(user=request.user).emails_per_page
    page = Paginator(entries, per_page).get_page(page_number or request.GET.get("page"))
    held = list(held_entries(user=request.user)[:50])
    health_urls = _health_urls(held)
    for entry in held:
        entry.health_url = health_urls.get(entry.mailbox_id, "")
    # "Always ignore" is offered where the user administers the mailbox (docs/product.md §2.7).
    managed: dict[int, bool] = {}
    for entry in page.object_list:
        mailbox = entry.message.mailbox
        if mailbox.pk not in managed:
            managed[mailbox.pk] = mailbox.kind == Mailbox.Kind.SHARED and can_manage_mailbox(
                request.user, mailbox
            )
        entry.may_ignore = managed[mailbox.pk] and bool(entry.message.from_address)
    return render(
        request,
        "inbox/triage.html",
        {
            "page": page,
            "held": held,
            "search": search,
            "results": record_search(search=search),
            "checked": checked,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
        },
        status=status,
    )


def _health_urls(held) -> dict[int, str]:
    """Each held message's mailbox health page, once that page exists."""
    urls = {}
    for entry in held:
        try:
            urls[entry.mailbox_id] = reverse("inbox:mailbox_health", args=[entry.mailbox_id])
        except NoReverseMatch:
            return {}
    return urls


@require_GET
def record_picker(request):
    """Triage's record picker: records of every type matching what is typed."""
    search = request.GET.get("q", "")
    return render(
        request,
        "inbox/triage.html#picker_results",
        {"search": search.strip(), "results": record_search(search=search)},
    )


def _ticked(request) -> list[int]:
    return [int(v) for v in request.POST.getlist("message") if v.isdigit()][:500]


@require_POST
def triage_qualify(request):
    """Qualify several messages at once onto one record. A refusal shows the page again with
    the same messages ticked and the same search, so nobody ticks twenty rows twice."""
    record = get_record_or_none(key=request.POST.get("record", ""))
    ids = _ticked(request)
    # Only messages the user may read: anything else is silently not there (as a 404 would be).
    chosen = list(readable_messages(request.user).filter(pk__in=ids).select_related("mailbox"))
    error = ""
    if record is None:
        error = "Pick the record to file the messages on."
    elif not chosen:
        error = "Tick the messages to file."
    if error:
        flash.error(request, error)
        return _triage_page(
            request,
            search=request.POST.get("q", "").strip(),
            checked={m.pk for m in chosen},
            page_number=request.POST.get("page"),
        )
    for message in chosen:
        message_qualify(user=request.user, message=message, record=record)
    flash.success(
        request, f"Filed {len(chosen)} message{'s' if len(chosen) != 1 else ''} on {record}."
    )
    return redirect("inbox:triage")


@require_POST
def triage_dismiss_view(request):
    """Dismiss: one message (its row's button, "only") or the ticked ones. They leave triage
    unfiled; nothing else changes. A row the user may not read is the same 404 as a missing one."""
    only = request.POST.get("only", "")
    if only:
        message = get_message_or_404(request.user, int(only) if only.isdigit() else 0)
        if not triage_dismiss(user=request.user, message_ids=[message.pk]):
            flash.info(request, "That message had already left triage.")
            return redirect("inbox:triage")
        flash.success(request, "Dismissed: it stays in the mailbox, unfiled.")
        return redirect("inbox:triage")
    dismissed = triage_dismiss(user=request.user, message_ids=_ticked(request))
    if not dismissed:
        flash.error(request, "Tick the messages to dismiss.")
        return _triage_page(
            request,
            search=request.POST.get("q", "").strip(),
            checked=set(),
            page_number=request.POST.get("page"),
        )
    flash.success(
        request,
        f"Dismissed {dismissed} message{'s' if dismissed != 1 else ''}: "
        "they stay in the mailbox, unfiled.",
    )
    return redirect("inbox:triage")


@require_http_methods(["GET", "POST"])
def triage_ignore(request, pk: int):
    """ "Always ignore this sender/domain" (docs/product.md §4.7): pick the address or the
    domain, see what it would have excluded (the settings page's dry run on this mailbox) and
    only then save it. For administrators of the message's shared mailbox; anyone else gets the
    same 404 as a missing message."""
    message = get_message_or_404(request.user, pk)
    if message.mailbox.kind != Mailbox.Kind.SHARED or not can_manage_mailbox(
        request.user, message.mailbox
    ):
        raise Http404("No such message.")
    choices = ignore_choices(message=message)
    if not choices:
        raise Http404("This message has no sender to ignore.")
    pattern = (request.POST.get("pattern") or request.GET.get("pattern") or "").strip().lower()
    error = ""
    dry_run = None
    status = 200
    try:
        if request.method == "POST" and request.POST.get("checked") == pattern:
            saved, cleared = triage_ignore_sender(
                user=request.user, message=message, pattern=pattern
            )
            flash.success(
                request,
                f"{saved.pattern} is ignored from now on, in every mailbox; "
                f"{cleared} message{'s' if cleared != 1 else ''} left triage.",
            )
            return redirect("inbox:triage")
        if pattern:
            dry_run = triage_ignore_dry_run(user=request.user, message=message, pattern=pattern)
    except (ValidationError, PermissionDenied) as exc:
        error = " ".join(getattr(exc, "messages", [str(exc)]))
        status = 400
    return render(
        request,
        "inbox/triage_ignore.html",
        {
            "message": message,
            "choices": choices,
            "pattern": pattern or choices[0]["pattern"],
            "dry_run": dry_run,
            "error": error,
        },
        status=status,
    )
