"""The Outbox page and the actions on an entry (docs/product.md §5.4): send again, mark as
sent, cancel, edit and resend. Every entry is looked up through inbox/selectors/outbox.py, so
an entry the user may not see gets the same 404 as a missing one."""

from __future__ import annotations

from django import forms
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from inbox.selectors.outbox import (
    FILTERS,
    entry_actions,
    explain_send_error,
    get_outbox_entry_or_404,
    outbox_entries,
)
from inbox.services.outbox import (
    outbox_cancel,
    outbox_edit_resend,
    outbox_mark_sent,
    outbox_send_again,
)

PER_PAGE = 50

ACTIONS = {
    "send_again": (outbox_send_again, "Queued again: it goes out in a moment."),
    "mark_sent": (outbox_mark_sent, "Marked as sent."),
    "cancel": (outbox_cancel, "Cancelled: it will not be sent."),
}


def annotate(user, entries) -> list:
    """Each entry with its plain-words explanation and the actions it offers (no query)."""
    for entry in entries:
        entry.explanation = explain_send_error(entry.state, entry.last_error)
        entry.actions = entry_actions(user, entry)
        entry.refused = {
            r: s for r, s in (entry.recipient_status or {}).items() if s.startswith("refused")
        }
    return entries


def outbox_page(request):
    show = request.GET.get("show", "all")
    if show not in FILTERS:
        show = "all"
    page = Paginator(outbox_entries(request.user, show=show), PER_PAGE).get_page(
        request.GET.get("page")
    )
    annotate(request.user, page.object_list)
    return render(
        request,
        "inbox/outbox.html",
        {
            "page": page,
            "show": show,
            "filters": [(key, label) for key, (label, _q) in FILTERS.items()],
        },
    )


def _safe_next(request, target: str) -> str:
    """A same-site path to return to, or "" (never another site, never javascript:)."""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def _back(request, default: str):
    return redirect(_safe_next(request, request.POST.get("next", "")) or default)


@require_POST
def outbox_action(request, pk: int, action: str):
    entry = get_outbox_entry_or_404(request.user, pk)
    if action not in ACTIONS:
        raise Http404("No such action.")
    service, done = ACTIONS[action]
    try:
        service(user=request.user, entry=entry)
    except ValidationError as exc:
        flash.error(request, " ".join(exc.messages))
    except PermissionDenied as exc:
        raise Http404("No such outbox entry.") from exc
    else:
        flash.success(request, done)
    return _back(request, "inbox:outbox")


class ResendForm(forms.Form):
    to = forms.CharField(label="To", required=False, max_length=5000)
    cc = forms.CharField(label="Cc", required=False, max_length=5000)
    bcc = forms.CharField(label="Bcc", required=False, max_length=5000)
    subject = forms.CharField(label="Subject", required=False, max_length=900)
    body = forms.CharField(label="Message", required=False, widget=forms.Textarea)


@require_http_methods(["GET", "POST"])
def outbox_edit(request, pk: int):
    """Edit a failed message and send the corrected one (a new message; the failed one is
    kept, marked as replaced)."""
    entry = get_outbox_entry_or_404(request.user, pk)
    if "edit" not in entry_actions(request.user, entry):
        flash.error(request, "Only a failed message can be edited and sent again.")
        return redirect("inbox:outbox")
    if request.method == "POST":
        form = ResendForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                outbox_edit_resend(
                    user=request.user,
                    entry=entry,
                    to=data["to"],
                    cc=data["cc"],
                    bcc=data["bcc"],
                    subject=data["subject"],
                    text_body=data["body"],
                )
            except ValidationError as exc:
                form.add_error(None, " ".join(exc.messages))
            except PermissionDenied as exc:
                raise Http404("No such outbox entry.") from exc
            else:
                flash.success(request, "The corrected message is queued; the failed one is kept.")
                return _back(request, "inbox:outbox")
    else:
        form = ResendForm(
            initial={
                "to": ", ".join(entry.to),
                "cc": ", ".join(entry.cc),
                "bcc": ", ".join(entry.bcc),
                "subject": entry.subject,
                "body": entry.text_body,
            }
        )
    annotate(request.user, [entry])
    return render(
        request,
        "inbox/outbox_edit.html",
        {
            "form": form,
            "entry": entry,
            "next": _safe_next(request, request.POST.get("next") or request.GET.get("next", "")),
        },
        status=422 if form.is_bound and form.errors else 200,
    )
