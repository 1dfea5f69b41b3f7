"""Connecting a mailbox: the connect wizard (Test connection, pick folders, Connect), Reconnect
(re-enter the password or repeat the sign-in, re-test, must reach the same mailbox), and
finishing a mailbox connected with Google or Microsoft. Tests are rate-limited per user and per
host so they never become a port scanner or a password oracle (docs/reliability.md C-08, C-09);
the network work goes through inbox/ports.py.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from inbox import ports
from inbox.mailbox_forms import (
    OAUTH_HINT,
    ConnectForm,
    ReconnectForm,
    SetupForm,
    SmtpReconnectForm,
    provider_table,
)
from inbox.models import Mailbox
from inbox.ratelimit import (
    RECONNECT_AUTH_FAILURES,
    RECONNECT_LIMIT,
    TOO_MANY_TESTS,
    hit,
    over,
    test_allowed,
)
from inbox.selectors.mailboxes import get_managed_mailbox_or_404
from inbox.services import mailboxes as mailbox_services
from inbox.services.mailboxes import mailbox_finish_setup, smtp_reconnect_needed

log = logging.getLogger(__name__)
OPTION_FIELDS = ("create_contacts", "refresh_interval", "signature", "privacy")
DEFAULT_ACTIVE = {"inbox", "sent"}
NEVER_DEFAULT = {"trash", "junk"}


def oauth_options() -> list[dict]:
    """Google and Microsoft sign-in, where the OAuth views exist and the provider has a client
    id; otherwise shown disabled with the reason."""
    options = []
    providers = settings.RELAY_OAUTH_PROVIDERS
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


def _connect_page(request, form, *, result=None, status=200):
    kind = request.GET.get("kind") or request.POST.get("kind") or "personal"
    return render(
        request,
        "inbox/mailboxes/connect.html",
        {
            "form": form,
            "oauth_options": oauth_options(),
            "providers": provider_table(),
            "oauth_hint": OAUTH_HINT,
            "shared": kind == Mailbox.Kind.SHARED and request.user.is_superuser,
            **(result or {}),
        },
        status=status,
    )


# The password never reaches an error report (docs/reliability.md C-23).
@sensitive_post_parameters("password")
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
    if not test_allowed(request.user, form.cleaned_data["imap_host"]):
        form.add_error(None, TOO_MANY_TESTS)
        return _connect_page(request, form, status=429)
    # Test again on Connect: the folder list must be the server's, and the settings that get
    # saved are the ones that were just seen to work.
    report = ports.mail().test_connection(
        form.unsaved_mailbox(), sync_from=form.cleaned_data["sync_from"]
    )
    result = _result_context(report, chosen, sync_from=form.cleaned_data["sync_from"])
    if not report.ok:
        return _connect_page(request, form, result=result, status=400)
    form = ConnectForm(request.POST, user=request.user, folder_names=_selectable(report))
    if _folder_errors(form):
        return _connect_page(request, form, result=result, status=400)
    data = form.cleaned_data
    try:
        mailbox = mailbox_services.mailbox_connect(
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
    if mailbox.smtp_host and report.smtp_ok is False:
        # The wizard said "fix the outgoing settings later": this is where (docs/product.md §2.8).
        messages.warning(
            request,
            format_html(
                'Sending does not work yet. <a href="{}#servers">Fix the outgoing settings</a> '
                "on the mailbox's settings page.",
                reverse("inbox:mailbox_settings", args=[mailbox.pk]),
            ),
        )
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


def _connection_errors(form) -> list[str]:
    """Errors in what Test connection needs; the folder choice and options are for Connect."""
    form.is_valid()
    return [name for name in form.errors if name not in ("active_folders", *OPTION_FIELDS)]


# The password never reaches an error report (docs/reliability.md C-23).
@sensitive_post_parameters("password")
@require_POST
def mailbox_connect_test(request):
    """Test connection / Retrieve folders (htmx): the result, the folders and the preview."""
    chosen = _chosen(request)
    form = ConnectForm(request.POST, user=request.user, folder_names=chosen or ())
    context = {"form": form, "options_form": None}
    if _connection_errors(form):
        context["form_errors"] = True
        return render(request, "inbox/mailboxes/_test_result.html", context)
    if not test_allowed(request.user, form.cleaned_data["imap_host"]):
        context["limit_error"] = TOO_MANY_TESTS
        return render(request, "inbox/mailboxes/_test_result.html", context)
    report = ports.mail().test_connection(
        form.unsaved_mailbox(), sync_from=form.cleaned_data["sync_from"]
    )
    context.update(_result_context(report, chosen, sync_from=form.cleaned_data["sync_from"]))
    context["options_form"] = ConnectForm(user=request.user, initial=_option_initial(request))
    context["show_connect"] = True
    return render(request, "inbox/mailboxes/_test_result.html", context)


def _reconnect_page(request, mailbox, form, *, result=None, status=200, error="", smtp_only=False):
    return render(
        request,
        "inbox/mailboxes/reconnect.html",
        {
            "mailbox": mailbox,
            "form": form,
            "error": error,
            "smtp_only": smtp_only,
            "oauth_option": next(
                (o for o in oauth_options() if o["value"] == mailbox.connection_type), None
            ),
            **(result or {}),
        },
        status=status,
    )


def _reconnect_key(request, mailbox) -> str:
    return f"relay:reconnect:{request.user.pk}:{mailbox.pk}"


def _reconnect_blocked(request, mailbox, *, host: str = "") -> str:
    """Why another attempt is refused now, or "" (docs/reliability.md C-09)."""
    if over(f"{_reconnect_key(request, mailbox)}:auth", RECONNECT_AUTH_FAILURES[0]):
        return (
            "The server refused the password several times. To keep your provider from "
            "locking the account, wait 15 minutes before trying again."
        )
    if not hit(_reconnect_key(request, mailbox), *RECONNECT_LIMIT):
        return "Too many reconnect attempts. Wait 15 minutes and try again."
    if not test_allowed(request.user, host or mailbox.imap_host):
        return TOO_MANY_TESTS
    return ""


def _reconnect_test(request, mailbox, form):
    """Log in with the stored settings and the new password; count a refused login."""
    candidate = Mailbox.objects.get(pk=mailbox.pk)  # a copy: never saved here
    candidate.set_password(form.cleaned_data["password"])
    # The preview of what would come again is not wanted: the sync goes on from its cursors.
    report = ports.mail().test_connection(candidate)
    if not report.ok and report.error_category == "auth":
        hit(f"{_reconnect_key(request, mailbox)}:auth", *RECONNECT_AUTH_FAILURES)
    return report


def _reconnect_chosen(request, mailbox) -> list[str] | None:
    chosen = _chosen(request)
    return list(mailbox.active_folders or []) if chosen is None else chosen


def _reconnect_smtp(request, mailbox):
    """The outgoing server refused the separate SMTP login while IMAP works: Reconnect asks
    for that password, names the server that refused it, tests it against that server only
    and resumes (docs/product.md §2.5)."""
    if request.method == "GET":
        return _reconnect_page(request, mailbox, SmtpReconnectForm(), smtp_only=True)
    form = SmtpReconnectForm(request.POST)
    if not form.is_valid():
        return _reconnect_page(request, mailbox, form, status=400, smtp_only=True)
    blocked = _reconnect_blocked(request, mailbox, host=mailbox.smtp_host)
    if blocked:
        return _reconnect_page(request, mailbox, form, status=429, error=blocked, smtp_only=True)
    candidate = Mailbox.objects.get(pk=mailbox.pk)  # a copy: never saved here
    candidate.set_smtp_password(form.cleaned_data["smtp_password"])
    refused = ports.mail().test_smtp(candidate)
    if refused:
        # Counted like a refused IMAP password: the provider must not lock the account.
        hit(f"{_reconnect_key(request, mailbox)}:auth", *RECONNECT_AUTH_FAILURES)
        error = f"{mailbox.smtp_host} did not accept it: {refused} Nothing was changed."
        return _reconnect_page(request, mailbox, form, status=400, error=error, smtp_only=True)
    try:
        mailbox_services.mailbox_reconnect_smtp(
            user=request.user, mailbox=mailbox, smtp_password=form.cleaned_data["smtp_password"]
        )
    except ValidationError as exc:
        return _reconnect_page(
            request, mailbox, form, status=400, error=" ".join(exc.messages), smtp_only=True
        )
    cache.delete(f"{_reconnect_key(request, mailbox)}:auth")
    messages.success(
        request,
        f"{mailbox.smtp_host} accepts the new SMTP password: {mailbox.email_address} sends and "
        "syncs again.",
    )
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


# The password never reaches an error report (docs/reliability.md C-23).
@sensitive_post_parameters("password", "smtp_password")
@require_http_methods(["GET", "POST"])
def mailbox_reconnect(request, pk: int):
    """IMAP: re-enter the password, re-test, re-pick folders, Connect. Google and Microsoft:
    the page offers their sign-in again (the OAuth views check it is the same account)."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if smtp_reconnect_needed(mailbox):
        return _reconnect_smtp(request, mailbox)
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
        mailbox_services.mailbox_reconnect(
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


# The password never reaches an error report (docs/reliability.md C-23).
@sensitive_post_parameters("password")
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
    if not test_allowed(request.user, mailbox.imap_host):
        form.add_error(None, TOO_MANY_TESTS)
        return _setup_page(request, mailbox, form, status=429)
    report = ports.mail().test_connection(mailbox, sync_from=form.cleaned_data["sync_from"])
    result = _result_context(report, chosen, sync_from=form.cleaned_data["sync_from"])
    if not report.ok:
        return _setup_page(request, mailbox, form, result=result, status=400)
    form = SetupForm(request.POST, folder_names=_selectable(report))
    if _folder_errors(form):
        return _setup_page(request, mailbox, form, result=result, status=400)
    data = form.cleaned_data
    try:
        mailbox_finish_setup(
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
    if not test_allowed(request.user, mailbox.imap_host):
        context["limit_error"] = TOO_MANY_TESTS
        return render(request, "inbox/mailboxes/_test_result.html", context)
    report = ports.mail().test_connection(mailbox, sync_from=form.cleaned_data["sync_from"])
    context.update(_result_context(report, chosen, sync_from=form.cleaned_data["sync_from"]))
    context["options_form"] = SetupForm(initial=_option_initial(request))
    context["show_connect"] = True
    return render(request, "inbox/mailboxes/_test_result.html", context)
