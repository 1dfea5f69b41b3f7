"""The bell, the notifications page (mark read, mark all read) and the per-kind switches
(docs/product.md §7.10)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .models import Kind, Notification


@require_GET
def bell(request):
    """The top bar's bell: polled by htmx (every 30 s and when the window gets focus)."""
    count = selectors.unread_count(user=request.user)
    return render(request, "notifications/_bell.html", {"unread": count})


@require_GET
def notification_list(request):
    page = Paginator(selectors.notifications_for(user=request.user), settings.RELAY_PAGE_SIZE)
    page = page.get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/list.html",
        {
            "page": page,
            "notifications": page.object_list,
            "unread": selectors.unread_count(user=request.user),
            "digests": selectors.recent_digests(user=request.user),
        },
    )


@require_GET
def notification_open(request, pk: int):
    """Follow a notification: it is read from then on."""
    note = get_object_or_404(Notification, pk=pk, recipient=request.user)
    services.mark_read(user=request.user, ids=[note.pk])
    target = note.url
    if not target or not url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        target = "notifications:list"
    return redirect(target)


@require_POST
def notification_mark_read(request):
    if request.POST.get("all"):
        services.mark_all_read(user=request.user)
    else:
        ids = [int(v) for v in request.POST.getlist("id") if v.isdigit()]
        services.mark_read(user=request.user, ids=ids)
    return redirect("notifications:list")


@require_http_methods(["GET", "POST"])
def notification_settings(request):
    if request.method == "POST":
        services.set_preferences(
            user=request.user,
            choices={
                kind: (f"{kind}-in_app" in request.POST, f"{kind}-email" in request.POST)
                for kind in Kind.values
            },
        )
        messages.success(request, "Your notification settings were saved.")
        return redirect("notifications:settings")
    return render(
        request,
        "notifications/settings.html",
        {
            "rows": selectors.preferences_for(user=request.user),
            "after": settings.RELAY_NOTIFY_EMAIL_AFTER_MINUTES,
        },
    )
