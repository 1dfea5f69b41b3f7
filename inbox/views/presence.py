"""Presence on a conversation (docs/product.md §5.4): each open conversation or reply page
posts here every few seconds; the answer lists the others there."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_POST

from inbox.permissions import get_message_or_404
from inbox.services.presence import PRESENCE_REFRESH, presence_others, presence_touch


@require_POST
def presence(request, pk: int):
    message = get_message_or_404(request.user, pk)
    presence_touch(
        user=request.user, message=message, composing=request.POST.get("composing") == "1"
    )
    return render(
        request,
        "inbox/_presence.html",
        {
            "message": message,
            "others": presence_others(user=request.user, message=message),
            "composing": request.POST.get("composing") == "1",
            "refresh": PRESENCE_REFRESH,
        },
    )
