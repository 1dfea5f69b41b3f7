"""The Inbox page: mailbox switcher, folders, the conversation list with its filters, and the poll
that refreshes the list when something changed.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from crm.selectors import mail_on
from crm.snapshot import read_snapshot
from inbox.forms import SEARCH_MAX, FilterForm
from inbox.models import Mailbox
from inbox.permissions import get_mailbox_or_404
from inbox.selectors.conversations import (
    assignable_users,
    attach_latest,
    bulk_move_folders,
    conversations,
    default_folder,
    effective_status,
    folders_with_unread,
    get_view,
    list_fingerprint,
    view_counts,
    views_for,
)
from inbox.selectors.drafts import draft_count
from inbox.selectors.preferences import primary_mailbox_id, user_preferences
from inbox.services.mailboxes import MAIL_OFF_SYNC, mailbox_request_sync, mailboxes_for_user
from inbox.views.conversation_state import snooze_choices
from inbox.views.htmx import _compose_url
from inbox.views.outbox import _back


def inbox_state(request, *, mailbox_hint=None) -> dict:
    """Mailbox, folder and filters from the query string, through the permission gate.
    `mailbox_hint`: the mailbox of a conversation opened by its URL, when the query string
    names none (docs/product.md §7.12)."""
    mailboxes = mailboxes_for_user(user=request.user)
    mailbox = None
    wanted = request.GET.get("mailbox", "")
    if wanted == ALL_MAILBOXES and mailboxes:
        return _all_mailboxes_state(request, mailboxes)
    if wanted.isdigit():
        # Not in the user's list -> 404, the same as a mailbox that does not exist.
        mailbox = get_mailbox_or_404(request.user, int(wanted))
    elif mailbox_hint is not None:
        mailbox = mailbox_hint
    elif mailboxes:
        mailbox = mailboxes[0]  # the primary one comes first
    folders = folders_with_unread(mailbox=mailbox, user=request.user) if mailbox else []
    folder = None
    view = get_view(mailbox, request.GET.get("view", "")) if mailbox else None
    wanted = request.GET.get("folder", "")
    if view is not None:
        folder = None  # a view spans the mailbox's folders (docs/product.md §7.8)
    elif wanted.isdigit():
        folder = next((f for f in folders if f.pk == int(wanted)), None)
        if folder is None:
            raise Http404("No such folder.")
    else:
        folder = default_folder(folders)
    form = FilterForm(request.GET)
    return {
        "mailboxes": mailboxes,
        "primary_id": primary_mailbox_id(user=request.user) if mailboxes else None,
        "mailbox": mailbox,
        "folders": folders,
        "folder": folder,
        "view": view,
        "views": _views_with_counts(request, mailbox),
        "draft_count": draft_count(user=request.user),
        "filter_form": form,
        "filters": form.filters(),
        "list_url": list_url(request),
        "all_mailboxes": False,
    }


# ?mailbox=all: the All mailboxes view (docs/product.md §7.2).
ALL_MAILBOXES = "all"


def _all_mailboxes_state(request, mailboxes: list) -> dict:
    """All mailboxes: every folder of every mailbox the user may read, in one list (no folder,
    no view, which belong to one mailbox). `mailbox` stays the primary one for Compose; the
    list itself is scoped by the permission gate in the selector (in_scope)."""
    form = FilterForm(request.GET)
    return {
        "mailboxes": mailboxes,
        "primary_id": primary_mailbox_id(user=request.user),
        "mailbox": mailboxes[0],
        "folders": [],
        "folder": None,
        "view": None,
        "views": [],
        "draft_count": draft_count(user=request.user),
        "filter_form": form,
        "filters": form.filters(),
        "list_url": list_url(request),
        "all_mailboxes": True,
    }


def _bulk_assignable(state: dict, scope) -> list:
    if scope is not None:
        return list(assignable_users(mailbox=scope))
    people = {}
    for box in state["mailboxes"]:
        for person in assignable_users(mailbox=box):
            people.setdefault(person.pk, person)
    return sorted(people.values(), key=lambda p: (p.get_full_name() or p.username).lower())


def _list_mailbox(state: dict):
    """The mailbox the list shows, or None for All mailboxes."""
    return None if state["all_mailboxes"] else state["mailbox"]


def list_url(request) -> str:
    """The list this page shows (mailbox, folder or view, search, page), as a URL: where a
    conversation's Back leads, and what a conversation's URL carries so that a reload or a
    shared link shows the same list beside it (docs/product.md §7.12)."""
    query = request.GET.copy()
    for transient in ("since", "reload", "images"):
        query.pop(transient, None)
    encoded = query.urlencode()
    return reverse("inbox:inbox_page") + (f"?{encoded}" if encoded else "")


def list_query(request) -> str:
    """The list's query string ("?mailbox=3&q=..."), for the conversation links in it."""
    url = list_url(request)
    return url[url.index("?") :] if "?" in url else ""


def _views_with_counts(request, mailbox) -> list[dict]:
    """The sidebar's views with their counts for this user (one query for all of them)."""
    if mailbox is None:
        return []
    counts = view_counts(mailbox=mailbox, user=request.user)
    return [{"view": v, "count": counts.get(v.slug, 0)} for v in views_for(mailbox)]


def list_context(request, state: dict, *, fingerprint: str | None = None) -> dict:
    """The list's page and what it needs; read it in one snapshot with `state` and the
    fingerprint (crm/snapshot.py), which `fingerprint` passes when already read."""
    mailbox, folder = state["mailbox"], state["folder"]
    if mailbox is None:
        return {**state, "page": None}
    scope = _list_mailbox(state)
    if fingerprint is None:
        fingerprint = list_fingerprint(mailbox=scope, folder=folder, user=request.user)
    threads = conversations(
        mailbox=scope,
        folder=folder,
        filters=state["filters"],
        user=request.user,
        view=state["view"],
    )
    prefs = user_preferences(user=request.user)
    per_page = prefs.emails_per_page
    page = Paginator(threads, per_page).get_page(request.GET.get("page"))
    attach_latest(page.object_list)
    names = {box.pk: box.display_name or box.email_address for box in state["mailboxes"]}
    for thread in page.object_list:
        thread.shown_status = effective_status(thread)
        thread.mailbox_name = names.get(thread.mailbox_id, "")
    return {
        **state,
        "page": page,
        # Bulk actions: on All mailboxes, anyone who may read one of them (the service refuses
        # a conversation whose mailbox that person may not read); Archive and Trash where
        # the mailboxes have them (docs/product.md §7.8).
        "assignable": _bulk_assignable(state, scope),
        "bulk_moves": {
            kind
            for (_box, kind) in bulk_move_folders(
                mailbox_ids=[scope.pk] if scope else [b.pk for b in state["mailboxes"]]
            )
        },
        "snooze_choices": snooze_choices(),
        "fingerprint": fingerprint,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
        "list_query": list_query(request),
        "density": prefs.density,
        "search_max": SEARCH_MAX,
    }


@require_GET
def inbox_page(request):
    template = "inbox/inbox.html"
    # Search and filters swap only the list; a plain GET (no JavaScript) gets the page.
    if request.htmx and request.htmx.target == "thread-list":
        template += "#thread_list"
    # The list, its counts and its fingerprint read together (crm/snapshot.py).
    with read_snapshot():
        context = list_context(request, inbox_state(request))
        context["compose_url"] = _compose_url()
        return render(request, template, context)


@require_GET
def inbox_poll(request):
    """New mail without a reload: the list polls here every few seconds with the fingerprint
    it shows. Nothing changed -> 204 (htmx leaves the page alone); else the fresh list, read
    with its fingerprint in one snapshot (crm/snapshot.py)."""
    with read_snapshot():
        state = inbox_state(request)
        if state["mailbox"] is None:
            return HttpResponse(status=204)
        fingerprint = list_fingerprint(
            mailbox=_list_mailbox(state), folder=state["folder"], user=request.user
        )
        if request.GET.get("since") == fingerprint:
            return HttpResponse(status=204)
        context = list_context(request, state, fingerprint=fingerprint)
        return render(request, "inbox/inbox.html#thread_list", context)


@require_POST
def inbox_sync_now(request, pk: int):
    """The inbox's Sync now (docs/product.md §7.2): anyone who may read the mailbox asks for a
    sync, through the same service as the settings page's button (mailbox_request_sync)."""
    mailbox = get_mailbox_or_404(request.user, pk)
    if mailbox.state in (Mailbox.State.PAUSED, Mailbox.State.NEEDS_RECONNECT):
        text = f"{mailbox.email_address} is {mailbox.get_state_display().lower()}: nothing to sync."
        level = flash.WARNING
    elif not mail_on():
        text = MAIL_OFF_SYNC
        level = flash.WARNING
    else:
        mailbox_request_sync(mailbox=mailbox)
        text = "Checking the server for new mail…"
        level = flash.INFO
    if request.htmx:
        return render(request, "inbox/inbox.html#sync_status", {"sync_text": text})
    flash.add_message(request, level, text)
    return _back(request, "inbox:inbox_page")
