"""Inbox pages: the Inbox (mailbox switcher, folders, conversation list, conversation view and
its actions), Qualify, Triage, the user's inbox preferences, and the Email tab that every CRM
record's detail page loads with htmx.

Every view that shows or changes mail goes through inbox.permissions (an outsider gets the
same 404 as a missing object) and reads through inbox.selectors, writes through
inbox.services. Pages answer htmx with the partial they need and everyone else with the whole
page, so every address works without JavaScript too."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from crm.models import RECORD_MODELS

from . import selectors, services
from .forms import ComposeForm, FilterForm, PreferencesForm, QuickCreateForm
from .models import Filing, Folder, Mailbox
from .permissions import (
    get_mailbox_or_404,
    get_message_or_404,
    readable_mailboxes,
    readable_messages,
)

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


# --- the Inbox -------------------------------------------------------------------------------


def _inbox_state(request) -> dict:
    """Mailbox, folder and filters from the query string, through the permission gate."""
    mailboxes = services.mailboxes_for_user(user=request.user)
    mailbox = None
    wanted = request.GET.get("mailbox", "")
    if wanted.isdigit():
        # Not in the user's list -> 404, the same as a mailbox that does not exist.
        mailbox = get_mailbox_or_404(request.user, int(wanted))
    elif mailboxes:
        mailbox = mailboxes[0]  # the primary one comes first
    folders = selectors.folders_with_unread(mailbox=mailbox) if mailbox else []
    folder = None
    wanted = request.GET.get("folder", "")
    if wanted.isdigit():
        folder = next((f for f in folders if f.pk == int(wanted)), None)
        if folder is None:
            raise Http404("No such folder.")
    else:
        folder = selectors.default_folder(folders)
    form = FilterForm(request.GET)
    return {
        "mailboxes": mailboxes,
        "primary_id": selectors.primary_mailbox_id(user=request.user) if mailboxes else None,
        "mailbox": mailbox,
        "folders": folders,
        "folder": folder,
        "filter_form": form,
        "filters": form.filters(),
    }


def _list_context(request, state: dict) -> dict:
    mailbox, folder = state["mailbox"], state["folder"]
    if mailbox is None:
        return {**state, "page": None}
    threads = selectors.conversations(mailbox=mailbox, folder=folder, filters=state["filters"])
    per_page = selectors.user_preferences(user=request.user).emails_per_page
    page = Paginator(threads, per_page).get_page(request.GET.get("page"))
    selectors.attach_latest(page.object_list)
    return {
        **state,
        "page": page,
        "fingerprint": selectors.list_fingerprint(mailbox=mailbox, folder=folder),
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
    }


@require_GET
def inbox_page(request):
    context = _list_context(request, _inbox_state(request))
    context["compose_url"] = _compose_url()
    template = "inbox/inbox.html"
    # Search and filters swap only the list; a plain GET (no JavaScript) gets the page.
    if request.htmx and request.htmx.target == "thread-list":
        template += "#thread_list"
    return render(request, template, context)


@require_GET
def inbox_poll(request):
    """New mail without a reload: the list polls here every few seconds with the fingerprint
    it shows. Nothing changed -> 204 (htmx leaves the page alone); else the fresh list."""
    state = _inbox_state(request)
    if state["mailbox"] is None:
        return HttpResponse(status=204)
    fingerprint = selectors.list_fingerprint(mailbox=state["mailbox"], folder=state["folder"])
    if request.GET.get("since") == fingerprint:
        return HttpResponse(status=204)
    context = _list_context(request, state)
    return render(request, "inbox/inbox.html#thread_list", context)


# --- the conversation ------------------------------------------------------------------------


def _conversation_context(request, message) -> dict:
    thread = selectors.conversation(user=request.user, message=message)
    for item in thread:
        for filing in item.active_filings:
            filing.reason = selectors.filing_reason(filing)
            filing.label = selectors.record_short_label(filing.record)
    latest = thread[-1] if thread else message
    return {
        "message": message,
        "latest": latest,
        "thread": thread,
        "subject": latest.subject or message.subject,
        "unread": [m for m in thread if not m.seen],
        "move_targets": selectors.move_targets(message=message),
        "compose_url": _compose_url(),
        "reading": _reading_available(),
    }


def _reading_available() -> bool:
    """Whether the safe reading view (issue 6a: sanitised body in a sandboxed frame) is there:
    each message's body then loads from it; until then the conversation shows the text body,
    escaped."""
    try:
        reverse("inbox:message_read", args=[1])
    except NoReverseMatch:
        return False
    return True


@require_GET
def conversation(request, pk: int):
    message = get_message_or_404(request.user, pk)
    context = _conversation_context(request, message)
    if request.htmx:
        return render(request, "inbox/_conversation.html", context)
    return render(request, "inbox/conversation_page.html", context)


ACTIONS = {"mark_read", "mark_unread", "flag", "unflag", "move", "delete"}


@require_POST
def message_action(request, pk: int):
    """Mark read/unread, flag, move, delete. The CRM shows the change at once; the server
    copies change on the next sync (inbox.services queues them)."""
    message = get_message_or_404(request.user, pk)
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        return HttpResponse("Unknown action.", status=400)
    notice = ""
    try:
        if action == "mark_read":
            # Reading a conversation reads all of it.
            for item in readable_messages(request.user).filter(
                thread=message.thread_id or -1, mailbox=message.mailbox_id, seen=False
            ) or [message]:
                services.message_change_flag(user=request.user, message=item, action=action)
        elif action in ("mark_unread", "flag", "unflag"):
            services.message_change_flag(user=request.user, message=message, action=action)
        elif action == "move":
            target = get_object_or_404(
                Folder, pk=request.POST.get("folder") or 0, mailbox=message.mailbox_id
            )
            services.message_move(user=request.user, message=message, target_folder=target)
            notice = f"Moving to {target.name}."
        else:
            services.message_delete(user=request.user, message=message)
            notice = "Moved to Trash."
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=422)
    if not request.htmx:
        if notice:
            flash.success(request, notice)
        return redirect("inbox:conversation", pk=message.pk)
    message = get_message_or_404(request.user, pk)
    context = _conversation_context(request, message)
    context["notice"] = notice
    return _trigger(render(request, "inbox/_conversation.html", context), CHANGED)


# --- Qualify ---------------------------------------------------------------------------------


def _qualify_context(request, message, **extra) -> dict:
    qualify = selectors.qualify_context(message=message)
    for filing in qualify.filings:
        filing.reason = selectors.filing_reason(filing)
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
    found = {"search": search.strip(), "results": selectors.record_search(search=search)}
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
                filing = services.message_qualify(
                    user=request.user,
                    message=message,
                    create=create_form.cleaned_data["create"],
                    **create_form.record_fields(),
                )
        else:
            record = selectors.get_record_or_none(key=request.POST.get("record", ""))
            if record is None:
                error = "That record no longer exists."
            else:
                filing = services.message_qualify(user=request.user, message=message, record=record)
        if filing is not None and request.POST.get("whole"):
            # "The whole conversation": the other messages of the thread go there too.
            others = readable_messages(request.user).filter(
                thread=message.thread_id or -1, mailbox=message.mailbox_id
            )
            for other in others.exclude(pk=message.pk):
                services.message_link(user=request.user, message=other, record=filing.record)
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
    filing = selectors.get_filing_or_404(user=request.user, pk=pk)
    services.message_unlink(user=request.user, filing=filing)
    if not request.htmx:
        flash.success(request, f"Removed from {filing.record}.")
        return redirect("inbox:conversation", pk=filing.message_id)
    return _trigger(HttpResponse(status=200), FILED, CHANGED)


# --- Triage ----------------------------------------------------------------------------------


@require_GET
def triage_page(request):
    entries = selectors.triage_entries(user=request.user)
    per_page = selectors.user_preferences(user=request.user).emails_per_page
    page = Paginator(entries, per_page).get_page(request.GET.get("page"))
    # The record picker without JavaScript: its "Find" button reloads the page with the
    # results, keeping the ticked messages ticked.
    search = request.GET.get("q", "").strip()
    checked = {int(v) for v in request.GET.getlist("message") if v.isdigit()}
    held = list(selectors.held_entries(user=request.user)[:50])
    health_urls = _health_urls(held)
    for entry in held:
        entry.health_url = health_urls.get(entry.mailbox_id, "")
    return render(
        request,
        "inbox/triage.html",
        {
            "page": page,
            "held": held,
            "search": search,
            "results": selectors.record_search(search=search),
            "checked": checked,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
        },
    )


def _health_urls(held) -> dict[int, str]:
    """Each held message's mailbox health page (issue 6c), once that page exists."""
    urls = {}
    for entry in held:
        try:
            urls[entry.mailbox_id] = reverse("inbox:mailbox_health", args=[entry.mailbox_id])
        except NoReverseMatch:
            return {}
    return urls


@require_GET
def record_picker(request):
    """Triage's record picker: records of every type matching what is typed."""
    search = request.GET.get("q", "")
    return render(
        request,
        "inbox/triage.html#picker_results",
        {"search": search.strip(), "results": selectors.record_search(search=search)},
    )


@require_POST
def triage_qualify(request):
    """Qualify several messages at once onto one record."""
    record = selectors.get_record_or_none(key=request.POST.get("record", ""))
    ids = [int(v) for v in request.POST.getlist("message") if v.isdigit()][:500]
    # Only messages the user may read: anything else is silently not there (as a 404 would be).
    chosen = list(readable_messages(request.user).filter(pk__in=ids).select_related("mailbox"))
    if record is None:
        flash.error(request, "Pick the record to file the messages on.")
    elif not chosen:
        flash.error(request, "Tick the messages to file.")
    else:
        for message in chosen:
            services.message_qualify(user=request.user, message=message, record=record)
        flash.success(
            request, f"Filed {len(chosen)} message{'s' if len(chosen) != 1 else ''} on {record}."
        )
    return redirect("inbox:triage")


# --- compose, reply, reply-all, forward ------------------------------------------------------

COMPOSE_MODES = {"reply": "Reply", "reply_all": "Reply all", "forward": "Forward"}


def _compose_subject(message, mode: str) -> str:
    subject = (message.subject or "").strip()
    prefix = "Fwd: " if mode == "forward" else "Re: "
    if subject.lower().startswith(prefix.lower()):
        return subject
    return f"{prefix}{subject}".strip()


@require_http_methods(["GET", "POST"])
def compose_page(request):
    """Write a new message (optionally from a record: its reference goes into the subject and
    the sent mail is filed there), or reply, reply to all, forward. Sending is queued: the
    outbox keeps it, with its error, until the mailbox's server takes it."""
    data = request.POST if request.method == "POST" else request.GET
    original = None
    mode = data.get("mode", "") if data.get("reply_to", "").isdigit() else ""
    if mode:
        if mode not in COMPOSE_MODES:
            raise Http404("No such way to answer.")
        original = get_message_or_404(request.user, int(data["reply_to"]))
    record = None
    if data.get("record_type") in RECORD_MODELS and data.get("record_id", "").isdigit():
        record = get_object_or_404(RECORD_MODELS[data["record_type"]], pk=int(data["record_id"]))
    mailboxes = services.mailboxes_for_user(user=request.user)
    if data.get("mailbox", "").isdigit():
        # A mailbox the user may not send from is missing, as everywhere else.
        get_mailbox_or_404(request.user, int(data["mailbox"]))
    if not mailboxes:
        flash.error(request, "Connect a mailbox first: mail goes out through its server.")
        return redirect("inbox:inbox_page")
    initial = {"mailbox": (original.mailbox_id if original else mailboxes[0].pk)}
    if original is not None:
        initial["subject"] = _compose_subject(original, mode)
        if mode != "forward":
            to, cc = services.reply_recipients(
                message=original, mailbox=original.mailbox, reply_all=mode == "reply_all"
            )
            initial["to"] = ", ".join(str(r) for r in to)
            initial["cc"] = ", ".join(str(r) for r in cc)
    elif getattr(record, "reference", ""):
        initial["subject"] = f"[{record.reference}] "
    if original is None and record is not None:
        initial["to"] = ", ".join(_record_addresses(record))
    if request.method == "POST":
        form = ComposeForm(
            request.POST, request.FILES, mailboxes=mailboxes, forwarding=mode == "forward"
        )
    else:
        form = ComposeForm(
            initial={**initial, **{k: data[k] for k in ("mailbox",) if k in data}},
            mailboxes=mailboxes,
            forwarding=mode == "forward",
        )
    if request.method == "POST" and form.is_valid():
        try:
            _send(request.user, form.cleaned_data, original=original, mode=mode, record=record)
        except (ValidationError, PermissionDenied) as exc:
            messages_ = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
            form.add_error(None, " ".join(messages_))
        else:
            flash.success(request, "Queued: it goes out in a moment, from the outbox.")
            if record is not None:
                return redirect(f"{record.get_absolute_url()}#email")
            if original is not None:
                return redirect("inbox:conversation", pk=original.pk)
            return redirect("inbox:inbox_page")
    return render(
        request,
        "inbox/compose.html",
        {
            "form": form,
            "original": original,
            "mode": mode,
            "mode_label": COMPOSE_MODES.get(mode, "New message"),
            "record": record,
        },
        status=422 if form.is_bound and form.errors else 200,
    )


def _record_addresses(record) -> list[str]:
    """Who a message from a record goes to by default: the person's first address."""
    person = (
        record if record.record_type in ("contact", "lead") else getattr(record, "contact", None)
    )
    if person is None:
        return []
    first = person.emails.order_by("pk").values_list("email", flat=True).first()
    return [first] if first else []


def _send(user, data: dict, *, original, mode: str, record):
    mailbox = get_mailbox_or_404(user, data["mailbox"])
    common = {
        "user": user,
        "mailbox": mailbox,
        "cc": data["cc"],
        "bcc": data["bcc"],
        "text_body": data["body"],
        "attachments": data["attachments"],
    }
    if mode in ("reply", "reply_all"):
        return services.message_reply(
            message=original,
            reply_all=mode == "reply_all",
            to=data["to"],
            subject=data["subject"] or None,
            **common,
        )
    if mode == "forward":
        return services.message_forward(message=original, to=data["to"], record=record, **common)
    return services.outbox_compose(to=data["to"], subject=data["subject"], record=record, **common)


# --- preferences -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def preferences_page(request):
    prefs = selectors.user_preferences(user=request.user)
    form = PreferencesForm(request.POST or None, instance=prefs)
    if request.method == "POST" and form.is_valid():
        form.save()
        flash.success(request, "Inbox preferences saved.")
        return redirect("inbox:preferences")
    return render(
        request,
        "inbox/preferences.html",
        {"form": form},
        status=422 if form.is_bound and form.errors else 200,
    )


# --- the Email tab ---------------------------------------------------------------------------


@require_GET
def email_tab(request, record_type: str, pk: int):
    model = RECORD_MODELS.get(record_type)
    if model is None:
        raise Http404("No such record type.")
    # The record must exist (a deleted record's tab is a 404, not an empty list).
    record = get_object_or_404(model, pk=pk)
    if not request.htmx:
        # The tab is a fragment: someone who opens its address directly gets the whole page.
        return redirect(f"{record.get_absolute_url()}#email")
    messages = selectors.messages_for_record(
        user=request.user, record_type=record_type, record_id=pk
    )
    page = Paginator(messages, settings.RELAY_PAGE_SIZE).get_page(request.GET.get("page"))
    selectors.attach_recipients(page.object_list)
    rule_labels = dict(Filing.Rule.choices)
    for message in page.object_list:
        message.filing_rule_label = rule_labels.get(message.filing_rule, message.filing_rule)
        message.full = message.visibility <= selectors.FULL_BY_PRIVACY
        message.readable = message.visibility == selectors.FULL
        message.show_subject = message.visibility <= selectors.SUBJECT
        message.is_personal_of_other = (
            not message.readable and message.mailbox.kind == Mailbox.Kind.PERSONAL
        )
    # Compose only for someone with a mailbox to send from.
    compose_url = _compose_url() if readable_mailboxes(request.user).exists() else None
    return render(
        request,
        "inbox/email_tab.html",
        {
            "record_type": record_type,
            "record_id": pk,
            "record": record,
            "reference": getattr(record, "reference", ""),
            "page": page,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=1),
            "compose_url": compose_url,
        },
    )
