"""Mailbox settings (issue 6): the list with primary, pause/resume and Sync now; the connect
wizard; Reconnect; options; the health page with held messages.

Every mailbox is looked up through inbox.mailbox_selectors, which builds on inbox.permissions:
an outsider gets the same 404 as for a missing mailbox, and a grantee who may read a shared
mailbox sees its health but changes nothing. Network work (Test connection) goes through
inbox.hooks, which the connector fills in: inbox never imports connector."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from . import hooks, services
from .mailbox_forms import (
    OAUTH_HINT,
    ConnectForm,
    MailboxOptionsForm,
    ReconnectForm,
    SetupForm,
    provider_table,
)
from .mailbox_selectors import (
    get_managed_mailbox_or_404,
    get_settings_mailbox_or_404,
    mailbox_health,
    settings_rows,
)
from .models import LedgerEntry, Mailbox
from .permissions import can_manage_mailbox, get_mailbox_or_404

log = logging.getLogger(__name__)

# RELIABILITY C-08: Test connection must not become a port scanner or password oracle.
TEST_LIMIT_PER_USER = (10, 60)  # attempts, seconds
TEST_LIMIT_PER_HOST = (30, 60)
# RELIABILITY C-09: Reconnect attempts per user and mailbox, and refused logins before we stop
# trying for a while (a provider locks an account that keeps failing).
# A try is a test and a Reconnect (2 attempts); a few typos must still fit, while providers
# commonly lock an account after 5 to 10 refused logins in a row.
RECONNECT_LIMIT = (10, 15 * 60)
RECONNECT_AUTH_FAILURES = (4, 15 * 60)

OPTION_FIELDS = ("create_contacts", "refresh_interval", "signature", "privacy")
DEFAULT_ACTIVE = {"inbox", "sent"}
NEVER_DEFAULT = {"trash", "junk"}


# --- helpers ------------------------------------------------------------------------------


def _hit(key: str, limit: int, window: int) -> bool:
    """Count one attempt under `key`; False once more than `limit` fell in the window."""
    cache.add(key, 0, window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)
        count = 1
    return count <= limit


def _over(key: str, limit: int) -> bool:
    return (cache.get(key) or 0) >= limit


def _test_allowed(user, host: str) -> bool:
    per_user = _hit(f"relay:mbtest:user:{user.pk}", *TEST_LIMIT_PER_USER)
    # Hashed: a host name may hold characters some cache backends refuse in keys.
    target = hashlib.sha256(host.strip().lower().encode()).hexdigest()[:32]
    per_host = _hit(f"relay:mbtest:host:{target}", *TEST_LIMIT_PER_HOST)
    return per_user and per_host


TOO_MANY_TESTS = "Too many connection tests in a short time. Wait a minute and try again."


def _oauth_options() -> list[dict]:
    """Google and Microsoft sign-in, where the OAuth views exist and the provider has a client
    id; otherwise shown disabled with the reason."""
    options = []
    providers = getattr(settings, "RELAY_OAUTH_PROVIDERS", {})
    for value, label in (("google", "Google"), ("microsoft", "Microsoft")):
        try:
            url = reverse("inbox:oauth_start", args=[value])
        except NoReverseMatch:
            url = ""
        configured = bool(providers.get(value, {}).get("client_id"))
        note = ""
        if not url:
            note = "Sign-in with this provider is not available yet."
        elif not configured:
            note = "Your administrator has not set up sign-in with this provider."
        options.append(
            {
                "value": value,
                "label": label,
                "url": url,
                "available": bool(url) and configured,
                "note": note,
            }
        )
    return options


def _folder_rows(report, chosen: list[str] | None) -> list[dict]:
    """The folders of a Test connection report, with what is ticked: the person's choice when
    they made one, else Inbox and Sent (never Trash and Junk)."""
    rows = []
    for folder in report.folders:
        if chosen is None:
            checked = folder.selectable and (
                folder.special_use in DEFAULT_ACTIVE or folder.name.upper() == "INBOX"
            )
        else:
            checked = folder.selectable and folder.name in chosen
        if folder.special_use in NEVER_DEFAULT and chosen is None:
            checked = False
        rows.append(
            {
                "name": folder.name,
                "special_use": folder.special_use,
                "selectable": folder.selectable,
                "messages": folder.messages,
                "since_count": folder.since_count,
                "checked": checked,
            }
        )
    # Inbox first, then the special folders, then the rest by name: the order people expect.
    order = {"inbox": 0, "sent": 1, "drafts": 2, "archive": 3, "junk": 4, "trash": 5}
    rows.sort(
        key=lambda r: (
            0 if r["name"].upper() == "INBOX" else 1,
            order.get(r["special_use"], 9),
            r["name"].lower(),
        )
    )
    return rows


def _chosen(request) -> list[str] | None:
    """The folders the person ticked, or None when no folder list was shown yet."""
    if request.POST.get("folders_shown"):
        return request.POST.getlist("active_folders")
    return None


def _selectable(report) -> list[str]:
    return [f.name for f in report.folders if f.selectable]


def _result_context(report, chosen, *, sync_from=None) -> dict:
    rows = _folder_rows(report, chosen) if report and report.ok else []
    preview_total = sum((r["since_count"] or 0) for r in rows if r["checked"])
    return {
        "report": report,
        "folder_rows": rows,
        "preview_total": preview_total,
        "sync_from": sync_from,
    }


def _folder_errors(form) -> bool:
    """Validate `form`, saying so when no folder is ticked; True if anything is wrong."""
    form.is_valid()
    if not form.cleaned_data.get("active_folders") and "active_folders" not in form.errors:
        form.add_error("active_folders", "Pick at least one folder to sync.")
    return bool(form.errors)


def _option_initial(request) -> dict:
    return {name: request.POST[name] for name in OPTION_FIELDS if name in request.POST}


# --- the list and its actions -----------------------------------------------------------------


def mailbox_list(request):
    rows = settings_rows(request.user)
    return render(
        request,
        "inbox/mailboxes/list.html",
        {"rows": rows, "can_create_shared": request.user.is_superuser},
    )


def _action_done(request, mailbox: Mailbox, text: str):
    messages.success(request, text)
    target = request.POST.get("next") or ""
    if target == "health":
        return redirect("inbox:mailbox_health", pk=mailbox.pk)
    if target == "settings":
        return redirect("inbox:mailbox_settings", pk=mailbox.pk)
    return redirect("inbox:mailbox_list")


@require_POST
def mailbox_make_primary(request, pk: int):
    # Primary is about reading and sending first: only a mailbox the user reads qualifies (an
    # admin without a grant manages a shared mailbox but does not read it).
    mailbox = get_mailbox_or_404(request.user, pk)
    try:
        services.mailbox_set_primary(user=request.user, mailbox=mailbox)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("inbox:mailbox_list")
    return _action_done(request, mailbox, f"{mailbox.email_address} is now your primary mailbox.")


@require_POST
def mailbox_pause(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    services.mailbox_pause(mailbox=mailbox)
    return _action_done(
        request, mailbox, f"{mailbox.email_address} is paused: its mail stays on the server."
    )


@require_POST
def mailbox_resume(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if mailbox.state != Mailbox.State.PAUSED:
        messages.info(request, f"{mailbox.email_address} is not paused.")
        return redirect("inbox:mailbox_list")
    if needs_setup(mailbox):
        # Resuming now would sync every folder from the beginning of time: choose first.
        return redirect("inbox:mailbox_setup", pk=mailbox.pk)
    services.mailbox_resume(mailbox=mailbox)
    services.mailbox_request_sync(mailbox=mailbox)
    return _action_done(request, mailbox, f"{mailbox.email_address} syncs again.")


@require_POST
def mailbox_sync_now(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if mailbox.state in (Mailbox.State.PAUSED, Mailbox.State.NEEDS_RECONNECT):
        messages.warning(
            request,
            f"{mailbox.email_address} is {mailbox.get_state_display().lower()}: "
            + ("resume it first." if mailbox.state == Mailbox.State.PAUSED else "reconnect it."),
        )
        return redirect("inbox:mailbox_list")
    services.mailbox_request_sync(mailbox=mailbox)
    return _action_done(request, mailbox, f"Checking {mailbox.email_address} for new mail.")


# --- the connect wizard -----------------------------------------------------------------------


def _connect_page(request, form, *, result=None, status=200):
    kind = request.GET.get("kind") or request.POST.get("kind") or "personal"
    return render(
        request,
        "inbox/mailboxes/connect.html",
        {
            "form": form,
            "oauth_options": _oauth_options(),
            "providers": provider_table(),
            "oauth_hint": OAUTH_HINT,
            "shared": kind == Mailbox.Kind.SHARED and request.user.is_superuser,
            **(result or {}),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def mailbox_connect(request):
    """GET: the wizard. POST: Connect (tests the connection again, then saves)."""
    if request.method == "GET":
        initial = {}
        if request.GET.get("kind") == Mailbox.Kind.SHARED and request.user.is_superuser:
            initial["kind"] = Mailbox.Kind.SHARED
        return _connect_page(request, ConnectForm(user=request.user, initial=initial))

    chosen = _chosen(request)
    form = ConnectForm(request.POST, user=request.user, folder_names=chosen or ())
    if _connection_errors(form):
        return _connect_page(request, form, status=400)
    if not _test_allowed(request.user, form.cleaned_data["imap_host"]):
        form.add_error(None, TOO_MANY_TESTS)
        return _connect_page(request, form, status=429)
    # Test again on Connect: the folder list must be the server's, and the settings that get
    # saved are the ones that were just seen to work.
    report = hooks.test_connection(form.unsaved_mailbox(), sync_from=form.cleaned_data["sync_from"])
    result = _result_context(report, chosen, sync_from=form.cleaned_data["sync_from"])
    if not report.ok:
        return _connect_page(request, form, result=result, status=400)
    form = ConnectForm(request.POST, user=request.user, folder_names=_selectable(report))
    if _folder_errors(form):
        return _connect_page(request, form, result=result, status=400)
    data = form.cleaned_data
    try:
        mailbox = services.mailbox_connect(
            user=request.user,
            kind=form.mailbox_kind,
            email_address=data["email_address"],
            password=data["password"],
            active_folders=data["active_folders"],
            display_name=data["display_name"],
            login=data["login"],
            imap_host=data["imap_host"],
            imap_port=data["imap_port"],
            imap_security=data["imap_security"],
            smtp_host=data["smtp_host"],
            smtp_port=data["smtp_port"],
            smtp_security=data["smtp_security"],
            allow_insecure_cert=data["allow_insecure_cert"],
            sync_from=data["sync_from"],
            create_contacts=data["create_contacts"],
            refresh_interval=data["refresh_interval"],
            signature=data["signature"],
            privacy=data["privacy"],
        )
    except PermissionDenied as exc:
        raise Http404("No such page.") from exc
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, exc.messages)
        return _connect_page(request, form, result=result, status=400)
    messages.success(request, f"{mailbox.email_address} is connected. The first sync has started.")
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


def _connection_errors(form) -> list[str]:
    """Errors in what Test connection needs; the folder choice and options are for Connect."""
    form.is_valid()
    return [name for name in form.errors if name not in ("active_folders", *OPTION_FIELDS)]


@require_POST
def mailbox_connect_test(request):
    """Test connection / Retrieve folders (htmx): the result, the folders and the preview."""
    chosen = _chosen(request)
    form = ConnectForm(request.POST, user=request.user, folder_names=chosen or ())
    context = {"form": form, "options_form": None}
    if _connection_errors(form):
        context["form_errors"] = True
        return render(request, "inbox/mailboxes/_test_result.html", context)
    if not _test_allowed(request.user, form.cleaned_data["imap_host"]):
        context["limit_error"] = TOO_MANY_TESTS
        return render(request, "inbox/mailboxes/_test_result.html", context)
    report = hooks.test_connection(form.unsaved_mailbox(), sync_from=form.cleaned_data["sync_from"])
    context.update(_result_context(report, chosen, sync_from=form.cleaned_data["sync_from"]))
    context["options_form"] = ConnectForm(user=request.user, initial=_option_initial(request))
    context["show_connect"] = True
    return render(request, "inbox/mailboxes/_test_result.html", context)


# --- one mailbox: options, Reconnect, health ----------------------------------------------------


@require_http_methods(["GET", "POST"])
def mailbox_settings(request, pk: int):
    mailbox = get_settings_mailbox_or_404(request.user, pk)
    can_manage = can_manage_mailbox(request.user, mailbox)
    form = None
    status = 200
    if can_manage:
        form = MailboxOptionsForm(request.POST or None, instance=mailbox)
        if request.method == "POST":
            if form.is_valid():
                fields = {name: form.cleaned_data[name] for name in form.fields}
                # The ModelForm put the values on the instance already: reload so the service
                # is the one that writes them.
                mailbox.refresh_from_db()
                services.mailbox_update_options(user=request.user, mailbox=mailbox, **fields)
                messages.success(request, "Mailbox settings saved.")
                return redirect("inbox:mailbox_settings", pk=mailbox.pk)
            mailbox.refresh_from_db()
            status = 400
    elif request.method == "POST":
        raise Http404("No such mailbox.")
    return render(
        request,
        "inbox/mailboxes/settings.html",
        {
            "mailbox": mailbox,
            "form": form,
            "can_manage": can_manage,
            "oauth_options": {o["value"]: o for o in _oauth_options()},
        },
        status=status,
    )


def _reconnect_page(request, mailbox, form, *, result=None, status=200, error=""):
    return render(
        request,
        "inbox/mailboxes/reconnect.html",
        {
            "mailbox": mailbox,
            "form": form,
            "error": error,
            "oauth_option": next(
                (o for o in _oauth_options() if o["value"] == mailbox.connection_type), None
            ),
            **(result or {}),
        },
        status=status,
    )


def _reconnect_key(request, mailbox) -> str:
    return f"relay:reconnect:{request.user.pk}:{mailbox.pk}"


def _reconnect_blocked(request, mailbox) -> str:
    """Why another attempt is refused now, or "" (RELIABILITY C-09)."""
    if _over(f"{_reconnect_key(request, mailbox)}:auth", RECONNECT_AUTH_FAILURES[0]):
        return (
            "The server refused the password several times. To keep your provider from "
            "locking the account, wait 15 minutes before trying again."
        )
    if not _hit(_reconnect_key(request, mailbox), *RECONNECT_LIMIT):
        return "Too many reconnect attempts. Wait 15 minutes and try again."
    if not _test_allowed(request.user, mailbox.imap_host):
        return TOO_MANY_TESTS
    return ""


def _reconnect_test(request, mailbox, form):
    """Log in with the stored settings and the new password; count a refused login."""
    candidate = Mailbox.objects.get(pk=mailbox.pk)  # a copy: never saved here
    candidate.set_password(form.cleaned_data["password"])
    # The preview of what would come again is not wanted: the sync goes on from its cursors.
    report = hooks.test_connection(candidate)
    if not report.ok and report.error_category == "auth":
        _hit(f"{_reconnect_key(request, mailbox)}:auth", *RECONNECT_AUTH_FAILURES)
    return report


def _reconnect_chosen(request, mailbox) -> list[str] | None:
    chosen = _chosen(request)
    return list(mailbox.active_folders or []) if chosen is None else chosen


@require_http_methods(["GET", "POST"])
def mailbox_reconnect(request, pk: int):
    """IMAP: re-enter the password, re-test, re-pick folders, Connect. Google and Microsoft:
    the page offers their sign-in again (the OAuth views check it is the same account)."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if request.method == "GET" or mailbox.connection_type != Mailbox.ConnectionType.IMAP:
        return _reconnect_page(request, mailbox, ReconnectForm())
    chosen = _reconnect_chosen(request, mailbox)
    form = ReconnectForm(request.POST, folder_names=chosen)
    if not form.is_valid():
        return _reconnect_page(request, mailbox, form, status=400)
    blocked = _reconnect_blocked(request, mailbox)
    if blocked:
        return _reconnect_page(request, mailbox, form, status=429, error=blocked)
    report = _reconnect_test(request, mailbox, form)
    result = _result_context(report, chosen)
    if not report.ok:
        return _reconnect_page(request, mailbox, form, result=result, status=400)
    form = ReconnectForm(request.POST, folder_names=_selectable(report))
    if _folder_errors(form):
        return _reconnect_page(request, mailbox, form, result=result, status=400)
    try:
        services.mailbox_reconnect(
            user=request.user,
            mailbox=mailbox,
            password=form.cleaned_data["password"],
            active_folders=form.cleaned_data["active_folders"],
            email_address=request.POST.get("email_address", mailbox.email_address),
        )
    except ValidationError as exc:
        return _reconnect_page(
            request, mailbox, form, result=result, status=400, error=" ".join(exc.messages)
        )
    cache.delete(f"{_reconnect_key(request, mailbox)}:auth")
    messages.success(
        request, f"{mailbox.email_address} is reconnected. Syncing goes on where it stopped."
    )
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


@require_POST
def mailbox_reconnect_test(request, pk: int):
    """Reconnect's Test connection (htmx): the folders, with the current choice ticked."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if mailbox.connection_type != Mailbox.ConnectionType.IMAP:
        raise Http404("No such page.")
    chosen = _reconnect_chosen(request, mailbox)
    form = ReconnectForm(request.POST, folder_names=chosen)
    context = {"form": form, "reconnect": True, "mailbox": mailbox}
    if not form.is_valid() and "password" in form.errors:
        context["form_errors"] = True
        return render(request, "inbox/mailboxes/_test_result.html", context)
    blocked = _reconnect_blocked(request, mailbox)
    if blocked:
        context["limit_error"] = blocked
        return render(request, "inbox/mailboxes/_test_result.html", context)
    report = _reconnect_test(request, mailbox, form)
    context.update(_result_context(report, chosen))
    context["show_connect"] = True
    return render(request, "inbox/mailboxes/_test_result.html", context)


def mailbox_health_page(request, pk: int):
    mailbox = get_settings_mailbox_or_404(request.user, pk)
    context = {
        "mailbox": mailbox,
        "can_manage": can_manage_mailbox(request.user, mailbox),
        **mailbox_health(mailbox),
    }
    if request.htmx and request.GET.get("part") == "live":
        return render(request, "inbox/mailboxes/health.html#live", context)
    return render(request, "inbox/mailboxes/health.html", context)


@require_POST
def held_retry(request, pk: int, entry_pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    try:
        entry = LedgerEntry.objects.get(pk=entry_pk, mailbox=mailbox)
    except LedgerEntry.DoesNotExist as exc:
        raise Http404("No such message.") from exc
    try:
        services.ledger_retry(user=request.user, entry=entry)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"UID {entry.uid} will be fetched again on the next sync.")
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


# --- finishing a mailbox connected with Google or Microsoft ---------------------------------


def needs_setup(mailbox: Mailbox) -> bool:
    """Created by an OAuth sign-in (paused, no sync-from date): folders and date still to pick."""
    return (
        mailbox.connection_type != Mailbox.ConnectionType.IMAP
        and mailbox.state == Mailbox.State.PAUSED
        and mailbox.sync_from is None
        and not mailbox.first_sync_done
    )


def _setup_page(request, mailbox, form, *, result=None, status=200):
    return render(
        request,
        "inbox/mailboxes/setup.html",
        {"mailbox": mailbox, "form": form, **(result or {})},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def mailbox_setup(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if not needs_setup(mailbox):
        messages.info(request, f"{mailbox.email_address} is set up already.")
        return redirect("inbox:mailbox_settings", pk=mailbox.pk)
    if request.method == "GET":
        return _setup_page(request, mailbox, SetupForm())
    chosen = _chosen(request)
    form = SetupForm(request.POST, folder_names=chosen or ())
    form.is_valid()
    if "sync_from" in form.errors:
        return _setup_page(request, mailbox, form, status=400)
    if not _test_allowed(request.user, mailbox.imap_host):
        form.add_error(None, TOO_MANY_TESTS)
        return _setup_page(request, mailbox, form, status=429)
    report = hooks.test_connection(mailbox, sync_from=form.cleaned_data["sync_from"])
    result = _result_context(report, chosen, sync_from=form.cleaned_data["sync_from"])
    if not report.ok:
        return _setup_page(request, mailbox, form, result=result, status=400)
    form = SetupForm(request.POST, folder_names=_selectable(report))
    if _folder_errors(form):
        return _setup_page(request, mailbox, form, result=result, status=400)
    data = form.cleaned_data
    try:
        services.mailbox_finish_setup(
            user=request.user,
            mailbox=mailbox,
            sync_from=data["sync_from"],
            active_folders=data["active_folders"],
            **{name: data[name] for name in OPTION_FIELDS},
        )
    except ValidationError as exc:
        form.add_error(None, exc.messages)
        return _setup_page(request, mailbox, form, result=result, status=400)
    messages.success(request, f"{mailbox.email_address} is set up. The first sync has started.")
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


@require_POST
def mailbox_setup_test(request, pk: int):
    """The setup step's Retrieve folders (htmx), with the stored OAuth credentials."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if not needs_setup(mailbox):
        raise Http404("No such page.")
    chosen = _chosen(request)
    form = SetupForm(request.POST, folder_names=chosen or ())
    form.is_valid()
    context = {"form": form, "setup": True, "mailbox": mailbox}
    if "sync_from" in form.errors:
        context["form_errors"] = True
        return render(request, "inbox/mailboxes/_test_result.html", context)
    if not _test_allowed(request.user, mailbox.imap_host):
        context["limit_error"] = TOO_MANY_TESTS
        return render(request, "inbox/mailboxes/_test_result.html", context)
    report = hooks.test_connection(mailbox, sync_from=form.cleaned_data["sync_from"])
    context.update(_result_context(report, chosen, sync_from=form.cleaned_data["sync_from"]))
    context["options_form"] = SetupForm(initial=_option_initial(request))
    context["show_connect"] = True
    return render(request, "inbox/mailboxes/_test_result.html", context)


# --- outgoing mail: Test SMTP connection and Send test email (SPEC 2, "Outgoing") ------------


@require_POST
def mailbox_smtp_test(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if not mailbox.smtp_host:
        messages.warning(request, "This mailbox has no outgoing (SMTP) server.")
    elif not _test_allowed(request.user, mailbox.smtp_host):
        messages.error(request, TOO_MANY_TESTS)
    else:
        error = services.mailbox_test_smtp(user=request.user, mailbox=mailbox)
        if error:
            messages.error(request, f"Sending does not work: {error}")
        else:
            messages.success(request, f"Signed in to {mailbox.smtp_host}: sending works.")
    return redirect("inbox:mailbox_settings", pk=mailbox.pk)


@require_POST
def mailbox_send_test(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    to = (request.POST.get("to") or "").strip()
    if not to:
        messages.error(request, "Enter the address to send the test email to.")
    elif not _hit(f"relay:mbsend:user:{request.user.pk}", *TEST_LIMIT_PER_USER):
        messages.error(request, "Too many test emails in a short time. Wait a minute.")
    else:
        try:
            services.mailbox_send_test_email(user=request.user, mailbox=mailbox, to=to)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Test email queued to {to}. Its outcome shows in the outbox."
            )
    return redirect("inbox:mailbox_settings", pk=mailbox.pk)
