"""Presence on a conversation (docs/product.md §5.4): each open conversation or reply page
posts here every few seconds (and at once when its composer opens, folds or is left); the
answer lists the others there."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_POST

from inbox.permissions import get_message_or_404
from inbox.services.presence import (
    presence_done_writing,
    presence_others,
    presence_refresh_for,
    presence_touch,
)


@require_POST
def presence(request, pk: int):
    message = get_message_or_404(request.user, pk)
    composing = request.POST.get("composing") == "1"
    composer = request.POST.get("composer", "")[:40]
    if request.POST.get("leaving") == "1":
        # The page's composer was closed or left (a beacon from the page going away).
        presence_done_writing(user=request.user, message=message, composer=composer)
        return render(request, "inbox/_presence.html", {"message": message, "others": []})
    presence_touch(user=request.user, message=message, composing=composing, composer=composer)
    others = presence_others(user=request.user, message=message)
    return render(
        request,
        "inbox/_presence.html",
        {"message": message, "others": others, "refresh": presence_refresh_for(others)},
    )
