"""Qualify: file a message on a record by hand (suggestions, search, quick-create), and unlink."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from inbox.forms import QuickCreateForm
from inbox.permissions import get_message_or_404, readable_messages
from inbox.selectors.conversations import filing_reason, get_filing_or_404
from inbox.selectors.qualify import get_record_or_none, qualify_context, record_search
from inbox.services.qualify import (
    conversation_unlink,
    message_link,
    message_qualify,
    message_unlink,
)
from inbox.views.htmx import CHANGED, FILED, _trigger


def _qualify_context(request, message, **extra) -> dict:
    qualify = qualify_context(message=message)
    for filing in qualify.filings:
        filing.reason = filing_reason(filing)
    name = (message.from_name or "").strip()
    first, _, last = name.rpartition(" ")
    return {
        "message": message,
        "thread_size": message.thread.message_count if message.thread_id else 1,
        "filings": qualify.filings,
        "suggestions": qualify.suggestions,
        "create_form": extra.pop("create_form", None)
        or QuickCreateForm(
            initial={
                "create": "contact",
                "first_name": first or last,
                "last_name": last if first else "",
            }
        ),
        **extra,
    }


@require_GET
def qualify_dialog(request, pk: int):
    message = get_message_or_404(request.user, pk)
    context = _qualify_context(request, message)
    if request.htmx:
        return render(request, "inbox/_qualify.html", context)
    return render(request, "inbox/qualify_page.html", context)


@require_GET
def qualify_search(request, pk: int):
    message = get_message_or_404(request.user, pk)
    search = request.GET.get("q", "")
    found = {"search": search.strip(), "results": record_search(search=search)}
    if not request.htmx:
        # Without JavaScript the search form reloads the whole Qualify page, with the results.
        return render(
            request, "inbox/qualify_page.html", _qualify_context(request, message, **found)
        )
    return render(request, "inbox/_qualify.html#search_results", {"message": message, **found})


@require_POST
def qualify_link(request, pk: int):
    """Link the message to a picked record, or to a contact or lead made from its sender."""
    message = get_message_or_404(request.user, pk)
    create_form = None
    error = ""
    filing = None
    try:
        if request.POST.get("create"):
            create_form = QuickCreateForm(request.POST)
            if create_form.is_valid():
                filing = message_qualify(
                    user=request.user,
                    message=message,
                    create=create_form.cleaned_data["create"],
                    **create_form.record_fields(),
                )
        else:
            record = get_record_or_none(key=request.POST.get("record", ""))
            if record is None:
                error = "That record no longer exists."
            else:
                filing = message_qualify(user=request.user, message=message, record=record)
        if filing is not None and request.POST.get("whole"):
            # "The whole conversation": the other messages of the thread go there too.
            others = readable_messages(request.user).filter(
                thread=message.thread_id or -1, mailbox=message.mailbox_id
            )
            for other in others.exclude(pk=message.pk):
                message_link(user=request.user, message=other, record=filing.record)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    done = f"Filed on {filing.record}." if filing else ""
    if not request.htmx:
        if done:
            flash.success(request, done)
        elif error:
            flash.error(request, error)
        return redirect("inbox:qualify_dialog", pk=message.pk)
    context = _qualify_context(
        request,
        message,
        done=done,
        error=error,
        create_form=create_form if create_form is not None and not filing else None,
    )
    response = render(request, "inbox/_qualify.html", context)
    return _trigger(response, FILED, CHANGED) if filing else response


@require_POST
def filing_unlink(request, pk: int):
    """Take a message off a wrong record (a chip's x). The filing stays as history, so
    automation never puts the message back there."""
    filing = get_filing_or_404(user=request.user, pk=pk)
    if request.POST.get("whole") and filing.message.thread_id:
        # The conversation's Filed on panel: the whole conversation (docs/product.md §7.12).
        conversation_unlink(
            user=request.user,
            filing=filing,
            messages=readable_messages(request.user).filter(
                thread=filing.message.thread_id, mailbox=filing.message.mailbox_id
            ),
        )
    else:
        message_unlink(user=request.user, filing=filing)
    if not request.htmx:
        flash.success(request, f"Removed from {filing.record}.")
        return redirect("inbox:conversation", pk=filing.message_id)
    return _trigger(HttpResponse(status=200), FILED, CHANGED)
