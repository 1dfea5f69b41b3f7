"""Notes on conversations and records, the mention picker, notes search and Mentions
(docs/product.md §7.9). The conversation page and the record pages load a target's notes from
here with htmx (inbox and crm never import this app)."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from crm.confirm import confirm_page
from inbox.models import Message
from inbox.permissions import readable_mailbox_ids

from . import selectors, services
from .access import get_target_or_404, visible_notes

# The @name being typed at the end of the text, if any.
_TYPING = re.compile(r"(?:^|[\s(])@([\w.+-]*)$")


def _form_only(request) -> bool:
    """A record page asks for the form alone: its notes are listed once, on its timeline
    (crm/templates/crm/detail_base.html, docs/product.md §7.4)."""
    return (request.POST.get("view") or request.GET.get("view")) == "form"


def _panel(request, target, *, body: str = "", errors=(), status: int = 200):
    form_only = _form_only(request)
    notes, total = ([], 0) if form_only else selectors.notes_on(target=target)
    return render(
        request,
        "notes/_panel.html",
        {
            "target": target,
            "notes": notes,
            "total": total,
            "hidden": total - len(notes),
            "body": body,
            "errors": errors,
            "form_only": form_only,
        },
        status=status,
    )


def _changed(response):
    """Tells the page a note was added or deleted: a record page's timeline reloads itself
    (crm/templates/crm/_timeline.html, docs/product.md §7.4)."""
    response["HX-Trigger"] = "relay-notes-changed"
    return response


@require_http_methods(["GET", "POST"])
def notes_panel(request, target_type: str, pk: int):
    target = get_target_or_404(request.user, target_type, pk)
    if request.method == "GET":
        if not request.htmx:
            # Without JavaScript: the notes on a page of their own.
            notes, total = selectors.notes_on(target=target)
            return render(
                request,
                "notes/page.html",
                {"target": target, "notes": notes, "total": total, "hidden": total - len(notes)},
            )
        return _panel(request, target)
    body = request.POST.get("body", "")
    try:
        note = services.note_create(author=request.user, target=target, body=body)
    except ValidationError as exc:
        if request.htmx:
            # 200 so that htmx shows the form again with the reason and the text kept.
            return _panel(request, target, body=body, errors=exc.messages)
        for text in exc.messages:
            messages.error(request, text)
        return redirect(reverse("notes:panel", args=[target.type, target.pk]))
    if request.htmx:
        return _changed(_panel(request, target))
    messages.success(request, "Note added.")
    return redirect(f"{target.url}#note-{note.pk}")


@require_http_methods(["GET", "POST"])
def note_delete(request, pk: int):
    """Delete one's own note; a GET (no JavaScript) asks first (crm/confirm.py)."""
    note = get_object_or_404(visible_notes(request.user), pk=pk)
    target_id = getattr(note, f"{note.target_type}_id")
    target = get_target_or_404(request.user, note.target_type, target_id)
    if request.method == "GET":
        if note.author_id != request.user.pk:
            return HttpResponse("Only its author may delete a note.", status=403)
        return confirm_page(
            request,
            question="Delete this note?",
            detail=f"“{note.body[:200]}” on {target.label}. This cannot be undone.",
            confirm_label="Delete",
            fields={},
            cancel_url=f"{target.url}#note-{note.pk}",
        )
    try:
        services.note_delete(user=request.user, note=note)
    except PermissionDenied:
        return HttpResponse("Only its author may delete a note.", status=403)
    if request.htmx:
        return _changed(_panel(request, target))
    messages.success(request, "Note deleted.")
    return redirect(f"{target.url}#notes")


@require_http_methods(["GET", "POST"])
def mention_suggest(request, target_type: str, pk: int):
    """The mention picker: people who can see the target whose name starts with what follows
    the @ being typed. The note's text comes by POST (a long note would not fit in a URL);
    nothing is written."""
    target = get_target_or_404(request.user, target_type, pk)
    body = request.POST.get("body", "") if request.method == "POST" else request.GET.get("body", "")
    typing = _TYPING.search(body[-200:])
    users = []
    if typing is not None:
        users = selectors.mention_candidates(target=target, prefix=typing.group(1))
    return render(request, "notes/_mention_suggest.html", {"users": users, "target": target})


@require_GET
def notes_search(request):
    query = request.GET.get("q", "").strip()[:200]
    page = Paginator(
        selectors.search_notes(user=request.user, query=query), settings.RELAY_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "notes/search.html",
        {"query": query, "page": page, "notes": page.object_list},
    )


@require_GET
def mentions_page(request):
    page = Paginator(selectors.mentions_of(user=request.user), settings.RELAY_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(request, "notes/mentions.html", {"page": page, "notes": page.object_list})


@require_GET
def thread_open(request, pk: int):
    """A conversation's page, by the conversation: its newest message the user may read."""
    message = (
        Message.objects.filter(thread=pk, mailbox__in=readable_mailbox_ids(request.user))
        .order_by("-date", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    if message is None:
        raise Http404("No such conversation.")
    return redirect(reverse("inbox:conversation", args=[message]))
