"""What the inbox pages tell htmx after an action (HX-Trigger events), so the parts of the page
that show what changed refresh themselves.
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.urls import NoReverseMatch, reverse

# Events htmx raises on the page after an action (HX-Trigger), so the parts that show what
# changed refresh themselves: the list (unread, filed) and an open conversation or dialog.
CHANGED = "inbox:changed"
FILED = "inbox:filed"


def _trigger(response: HttpResponse, *events: str) -> HttpResponse:
    response["HX-Trigger"] = json.dumps({event: True for event in events})
    return response


def _compose_url() -> str | None:
    """The compose page (it exists once the sending services do: see inbox/urls.py): reply,
    forward and "Compose" buttons are shown only when they lead somewhere."""
    try:
        return reverse("inbox:compose")
    except NoReverseMatch:
        return None
