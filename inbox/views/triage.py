"""Triage: mail the rules could not place (one at a time or in bulk) and held messages."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from inbox.permissions import readable_messages
from inbox.selectors.preferences import user_preferences
from inbox.selectors.qualify import get_record_or_none, record_search
from inbox.selectors.triage import held_entries, triage_entries
from inbox.services.qualify import message_qualify


@require_GET
def triage_page(request):
    entries = triage_entries(user=request.user)
    per_page = user_preferences(user=request.user).emails_per_page
    page = Paginator(entries, per_page).get_page(request.GET.get("page"))
    # The record picker without JavaScript: its "Find" button reloads the page with the
    # results, keeping the ticked messages ticked.
    search = request.GET.get("q", "").strip()
    checked = {int(v) for v in request.GET.getlist("message") if v.isdigit()}
    held = list(held_entries(user=request.user)[:50])
    health_urls = _health_urls(held)
    for entry in held:
        entry.health_url = health_urls.get(entry.mailbox_id, "")
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


@require_POST
def triage_qualify(request):
    """Qualify several messages at once onto one record."""
    record = get_record_or_none(key=request.POST.get("record", ""))
    ids = [int(v) for v in request.POST.getlist("message") if v.isdigit()][:500]
    # Only messages the user may read: anything else is silently not there (as a 404 would be).
    chosen = list(readable_messages(request.user).filter(pk__in=ids).select_related("mailbox"))
    if record is None:
        flash.error(request, "Pick the record to file the messages on.")
    elif not chosen:
        flash.error(request, "Tick the messages to file.")
    else:
        for message in chosen:
            message_qualify(user=request.user, message=message, record=record)
        flash.success(
            request, f"Filed {len(chosen)} message{'s' if len(chosen) != 1 else ''} on {record}."
        )
    return redirect("inbox:triage")
