"""Qualify: file a message on a record by hand (suggestions, search, quick-create), and unlink."""

from __future__ import annotations

import json

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from inbox.forms import QuickCreateForm
from inbox.permissions import get_message_or_404, readable_messages
from inbox.selectors.conversations import filing_reason, get_filing_or_404
from inbox.selectors.qualify import get_record_or_none, qualify_context, record_search
from inbox.services.qualify import (
    conversation_unlink,
    conversation_unlink_undo,
    message_link,
    message_qualify,
    message_unlink,
    message_unlink_undo,
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
        "existing": qualify.existing,
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
    extra = {}
    undo = request.GET.get("undo", "")
    if undo.isdigit():
        # Just unlinked without JavaScript: offer its Undo (a filing of this message, or of
        # the whole conversation with ?whole=1).
        extra["undo"] = message.filings.filter(pk=int(undo), unlinked_at__isnull=False).first()
        extra["undo_whole"] = request.GET.get("whole") == "1"
    context = _qualify_context(request, message, **extra)
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
    if getattr(filing, "instead_of_creating", False):
        done = (
            f"{filing.record} already has {message.from_address}: filed there instead of "
            "creating a second one."
        )
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


def _conversation_messages(request, filing):
    """The messages of `filing`'s conversation the user may read (one mailbox's thread)."""
    return readable_messages(request.user).filter(
        thread=filing.message.thread_id, mailbox=filing.message.mailbox_id
    )


@require_POST
def filing_unlink(request, pk: int):
    """Take a message off a wrong record (a chip's x). The filing stays as history, so
    automation never puts the message back there."""
    filing = get_filing_or_404(user=request.user, pk=pk)
    text = f"Removed from {filing.record}."
    whole = bool(request.POST.get("whole") and filing.message.thread_id)
    if whole:
        # The conversation's Filed on panel: the whole conversation (docs/product.md §7.12),
        # with the same Undo as one message's: it puts back what this action took off.
        conversation_unlink(
            user=request.user, filing=filing, messages=_conversation_messages(request, filing)
        )
        text = f"The conversation was removed from {filing.record}."
    else:
        message_unlink(user=request.user, filing=filing)
    undo_url = reverse("inbox:filing_relink", args=[filing.pk]) + ("?whole=1" if whole else "")
    if not request.htmx:
        # Without JavaScript the Qualify page offers the Undo.
        flash.success(request, text)
        back = reverse("inbox:qualify_dialog", args=[filing.message_id]) + f"?undo={pk}"
        return redirect(back + ("&whole=1" if whole else ""))
    if request.htmx.target == "qualify-content":
        context = _qualify_context(request, filing.message, done=text, undo=filing)
        return _trigger(render(request, "inbox/_qualify.html", context), FILED, CHANGED)
    # Elsewhere (a chip in the conversation) the page shows a toast with Undo (relay.js).
    response = HttpResponse(status=200)
    response["HX-Trigger"] = json.dumps(
        {FILED: True, CHANGED: True, "relay:undo": {"text": text, "url": undo_url}}
    )
    return response


@require_POST
def filing_relink(request, pk: int):
    """Undo of an unlink: the filing is back as the rules (or a person) made it."""
    filing = get_filing_or_404(user=request.user, pk=pk)
    if (request.GET.get("whole") or request.POST.get("whole")) and filing.message.thread_id:
        conversation_unlink_undo(
            user=request.user, filing=filing, messages=_conversation_messages(request, filing)
        )
    else:
        message_unlink_undo(user=request.user, filing=filing)
    text = f"Back on {filing.record}."
    if not request.htmx:
        flash.success(request, text)
        return redirect("inbox:qualify_dialog", pk=filing.message_id)
    if request.htmx.target == "qualify-content":
        context = _qualify_context(request, filing.message, done=text)
        return _trigger(render(request, "inbox/_qualify.html", context), FILED, CHANGED)
    return _trigger(HttpResponse(status=200), FILED, CHANGED)
