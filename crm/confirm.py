"""Destructive actions ask first, with JavaScript or without (docs/product.md §7.1).

The button of such an action is a form whose method is GET, aimed at the action's own URL,
with `hx-post` to the same URL and `hx-confirm` with the question:

- with JavaScript, htmx asks the question in the app's dialog (crm/static/js/relay.js) and
  POSTs the form's fields once the person confirmed (the CSRF token travels in the header
  base.html gives every htmx request);
- without, the browser GETs the URL with the form's fields and the view answers with
  confirm_page(): the question, **Confirm** (a POST of the same fields) and **Cancel** (back to
  where the person was). Nothing changes on a GET.

Only a POST acts, so a plain form post never deletes anything unasked: the view looks up what
the action would remove (with the same access checks as the action itself) before asking, and
an outsider gets the same "not found" for the question as for the action.
tests/web/test_confirm_without_js.py proves every such form in the templates does it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpResponse
from django.shortcuts import redirect, render


def confirm_page(
    request,
    *,
    question: str,
    confirm_label: str,
    fields: dict[str, object],
    cancel_url: str,
    detail: str = "",
) -> HttpResponse:
    """The question asked without JavaScript: Confirm POSTs `fields` to this same URL."""
    return render(
        request,
        "crm/confirm.html",
        {
            "question": question,
            "detail": detail,
            "confirm_label": confirm_label,
            "fields": [(name, value) for name, value in fields.items() if value is not None],
            "action": request.path,
            "cancel_url": cancel_url,
        },
    )


def done(request, url: str) -> HttpResponse:
    """After a confirmed action: back to `url`, a full page in both cases, so the message that
    says what happened shows. With htmx: HX-Redirect, or HX-Refresh when the page is `url`
    already (a new address that differs only in its #fragment would not load anything)."""
    if not request.htmx:
        return redirect(url)
    response = HttpResponse(status=204)
    if urlsplit(request.htmx.current_url or "").path == urlsplit(url).path:
        response["HX-Refresh"] = "true"
    else:
        response["HX-Redirect"] = url
    return response
