"""Mailbox settings: the list with primary, pause/resume and Sync now; one mailbox's options; its
health page with held messages; Test SMTP connection and Send test email.

Every mailbox is looked up through inbox/selectors/mailboxes.py, which builds on
inbox/permissions.py: an outsider gets the same 404 as for a missing mailbox, and a grantee who
may read a shared mailbox sees its health but changes nothing.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import capfirst
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from crm.confirm import confirm_page, done
from crm.selectors import mail_on
from crm.services import can_change_site_settings
from inbox.mailbox_forms import (
    ApiSenderForm,
    ExclusionForm,
    GrantForm,
    MailboxOptionsForm,
    ServerSettingsForm,
    SupportForm,
)
from inbox.models import EmailApiSender, ExclusionPattern, LedgerEntry, Mailbox, MatchingSettings
from inbox.permissions import can_manage_mailbox, get_mailbox_or_404
from inbox.ratelimit import TEST_LIMIT_PER_USER, TOO_MANY_TESTS, hit, test_allowed
from inbox.selectors.mailboxes import (
    api_senders_with_last_mail,
    get_managed_mailbox_or_404,
    get_settings_mailbox_or_404,
    mailbox_health,
    sender_works_today,
    settings_rows,
)
from inbox.services import mailbox_access
from inbox.services import mailboxes as mailbox_services
from inbox.services.mailboxes import (
    MAIL_OFF_SYNC,
    ledger_retry,
    mailbox_request_sync,
    mailbox_send_test_email,
    mailbox_set_primary,
    mailbox_test_smtp,
    mailbox_update_options,
)
from inbox.views.connect import needs_setup, oauth_options

log = logging.getLogger(__name__)


def mailbox_list(request):
    rows = settings_rows(request.user)
    return render(
        request,
        "inbox/mailboxes/list.html",
        {
            "rows": rows,
            "can_create_shared": request.user.is_superuser,
            "can_change_site_settings": can_change_site_settings(request.user),
        },
    )


def _action_done(request, mailbox: Mailbox, text: str, level: int = messages.SUCCESS):
    messages.add_message(request, level, text)
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
        mailbox_set_primary(user=request.user, mailbox=mailbox)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("inbox:mailbox_list")
    return _action_done(request, mailbox, f"{mailbox.email_address} is now your primary mailbox.")


@require_POST
def mailbox_pause(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    mailbox_services.mailbox_pause(mailbox=mailbox)
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
    try:
        mailbox_services.mailbox_resume(mailbox=mailbox)
    except ValidationError as exc:
        # A demo mailbox has no server behind it: say so rather than "Syncing" for ever.
        messages.warning(request, " ".join(exc.messages))
        target = request.POST.get("next") or ""
        if target in ("health", "settings"):
            return redirect(f"inbox:mailbox_{target}", pk=mailbox.pk)
        return redirect("inbox:mailbox_list")
    mailbox_request_sync(mailbox=mailbox)
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
    if not mail_on():
        return _action_done(request, mailbox, MAIL_OFF_SYNC, level=messages.WARNING)
    mailbox_request_sync(mailbox=mailbox)
    return _action_done(request, mailbox, f"Checking {mailbox.email_address} for new mail.")


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
                mailbox_update_options(user=request.user, mailbox=mailbox, **fields)
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
            "oauth_options": {o["value"]: o for o in oauth_options()},
            "server_form": _server_form(mailbox, can_manage),
            **_admin_sections(mailbox, can_manage),
        },
        status=status,
    )


def _server_form(mailbox: Mailbox, can_manage: bool, form=None):
    """Server settings (docs/product.md §2.8): for whoever manages a password mailbox."""
    if not can_manage or mailbox.connection_type != Mailbox.ConnectionType.IMAP:
        return None
    return form or ServerSettingsForm.for_mailbox(mailbox)


def _admin_sections(mailbox: Mailbox, can_manage: bool, **forms) -> dict:
    """The shared mailbox's administration (docs/product.md §2.7): for its managers only."""
    if not can_manage or mailbox.kind != Mailbox.Kind.SHARED:
        return {}
    senders = api_senders_with_last_mail(EmailApiSender.objects.filter(mailbox=mailbox))
    return {
        "precedence": MatchingSettings.load().precedence,
        "precedence_choices": MatchingSettings.Precedence.choices,
        "api_senders": [(sender, *sender_works_today(sender)) for sender in senders],
        "api_sender_form": forms.get("api_sender_form") or ApiSenderForm(),
        "new_secret": forms.get("new_secret"),
        "exclusion_patterns": list(ExclusionPattern.objects.all()),
        "exclusion_form": forms.get("exclusion_form") or ExclusionForm(),
        "dry_run": forms.get("dry_run"),
        "exclusion_notice": forms.get("exclusion_notice", ""),
        "grants": mailbox_access.mailbox_grants(mailbox),
        "grant_form": forms.get("grant_form") or GrantForm(mailbox=mailbox),
        "support_form": forms.get("support_form")
        or SupportForm(
            initial={
                "create_tickets": mailbox.create_tickets,
                "forward_unplaced_to": mailbox.forward_unplaced_to,
                "send_acknowledgements": mailbox.send_acknowledgements,
            }
        ),
    }


def _settings_again(request, mailbox: Mailbox, status: int = 400, **forms):
    """The settings page again with a form's errors (status 400) or a dry run's result."""
    return render(
        request,
        "inbox/mailboxes/settings.html",
        {
            "mailbox": mailbox,
            "form": MailboxOptionsForm(instance=mailbox),
            "can_manage": True,
            "oauth_options": {o["value"]: o for o in oauth_options()},
            "server_form": _server_form(mailbox, True, forms.pop("server_form", None)),
            **_admin_sections(mailbox, True, **forms),
        },
        status=status,
    )


# The passwords never reach an error report (docs/reliability.md C-23).
@sensitive_post_parameters("servers-password", "servers-smtp_password")
@require_POST
def mailbox_servers(request, pk: int):
    """Server settings (docs/product.md §2.8): tested against the servers, then saved; a failed
    test saves nothing and the page says which server failed and why."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if mailbox.connection_type != Mailbox.ConnectionType.IMAP:
        raise Http404("No such page.")
    form = ServerSettingsForm.for_mailbox(mailbox, request.POST)
    if not form.is_valid():
        return _settings_again(request, mailbox, server_form=form)
    hosts = {form.cleaned_data["imap_host"], form.cleaned_data["smtp_host"]} - {""}
    if not all(test_allowed(request.user, host) for host in sorted(hosts)):
        form.add_error(None, TOO_MANY_TESTS)
        return _settings_again(request, mailbox, status=429, server_form=form)
    try:
        changed = mailbox_services.mailbox_update_servers(
            user=request.user,
            mailbox=mailbox,
            password=form.cleaned_data["password"],
            smtp_password=form.cleaned_data["smtp_password"],
            **form.server_fields(),
        )
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, exc.messages)
        mailbox.refresh_from_db()
        return _settings_again(request, mailbox, server_form=form)
    if changed:
        messages.success(
            request, "Server settings tested and saved: signing in to the servers works."
        )
    else:
        messages.info(request, "Nothing changed in the server settings.")
    return redirect(reverse("inbox:mailbox_settings", args=[mailbox.pk]) + "#servers")


def _shared_managed_or_404(request, pk: int) -> Mailbox:
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if mailbox.kind != Mailbox.Kind.SHARED:
        raise Http404("No such mailbox.")
    return mailbox


@require_POST
def mailbox_grant(request, pk: int):
    mailbox = _shared_managed_or_404(request, pk)
    form = GrantForm(request.POST, mailbox=mailbox)
    if not form.is_valid():
        return _settings_again(request, mailbox, grant_form=form)
    person, group = form.cleaned_data.get("user"), form.cleaned_data.get("group")
    mailbox_access.mailbox_grant(user=request.user, mailbox=mailbox, grantee=person, group=group)
    names = [
        n
        for n in (
            person and (person.get_full_name() or person.get_username()),
            group and f"the group {group.name}",
        )
        if n
    ]
    messages.success(request, f"{' and '.join(names)} can now read {mailbox.email_address}.")
    return redirect(reverse("inbox:mailbox_settings", args=[mailbox.pk]) + "#access")


def _section(mailbox: Mailbox, anchor: str) -> str:
    return reverse("inbox:mailbox_settings", args=[mailbox.pk]) + f"#{anchor}"


@require_http_methods(["GET", "POST"])
def mailbox_revoke(request, pk: int):
    """Remove a person's or a group's grant; a GET asks first (crm/confirm.py)."""
    mailbox = _shared_managed_or_404(request, pk)
    data = request.POST if request.method == "POST" else request.GET
    person = mailbox.granted_users.filter(pk=_int(data.get("user"))).first()
    group = mailbox.granted_groups.filter(pk=_int(data.get("group"))).first()
    if person is None and group is None:
        raise Http404("No such grant.")
    name = person.get_full_name() or person.get_username() if person else f"the group {group.name}"
    if request.method == "GET":
        return confirm_page(
            request,
            question=f"Remove {name} from {mailbox.email_address}?",
            detail=f"{capfirst(name)} will no longer read its mail or reply from it.",
            confirm_label="Remove",
            fields={"user": person and person.pk, "group": group and group.pk},
            cancel_url=_section(mailbox, "access"),
        )
    mailbox_access.mailbox_revoke(user=request.user, mailbox=mailbox, grantee=person, group=group)
    messages.success(
        request, f"{name[0].upper()}{name[1:]} no longer reads {mailbox.email_address}."
    )
    return done(request, _section(mailbox, "access"))


def _int(value) -> int:
    """An id from a form, 0 (nothing) when it is not a number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@require_POST
def mailbox_support(request, pk: int):
    mailbox = _shared_managed_or_404(request, pk)
    form = SupportForm(request.POST)
    if form.is_valid():
        try:
            mailbox_access.mailbox_update_support(
                user=request.user, mailbox=mailbox, **form.cleaned_data
            )
        except ValidationError as exc:
            mailbox.refresh_from_db()
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, "Tickets and forwarding saved.")
            return redirect(reverse("inbox:mailbox_settings", args=[mailbox.pk]) + "#tickets")
    return _settings_again(request, mailbox, support_form=form)


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
        entry = LedgerEntry.objects.select_related("folder").get(pk=entry_pk, mailbox=mailbox)
    except LedgerEntry.DoesNotExist as exc:
        raise Http404("No such message.") from exc
    try:
        ledger_retry(user=request.user, entry=entry)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if entry.folder.is_local:
            messages.success(
                request,
                f"UID {entry.uid} of {entry.folder.name} is being imported again from its raw "
                "source. Reload to see the outcome.",
            )
        else:
            messages.success(request, f"UID {entry.uid} will be fetched again on the next sync.")
    return redirect("inbox:mailbox_health", pk=mailbox.pk)


@require_POST
def mailbox_smtp_test(request, pk: int):
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    if not mailbox.smtp_host:
        messages.warning(request, "This mailbox has no outgoing (SMTP) server.")
    elif not test_allowed(request.user, mailbox.smtp_host):
        messages.error(request, TOO_MANY_TESTS)
    else:
        error = mailbox_test_smtp(user=request.user, mailbox=mailbox)
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
    elif not hit(f"relay:mbsend:user:{request.user.pk}", *TEST_LIMIT_PER_USER):
        messages.error(request, "Too many test emails in a short time. Wait a minute.")
    else:
        try:
            mailbox_send_test_email(user=request.user, mailbox=mailbox, to=to)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Test email queued to {to}. Its outcome shows in the outbox."
            )
    return redirect("inbox:mailbox_settings", pk=mailbox.pk)


@require_http_methods(["GET", "POST"])
def mailbox_exclusions(request, pk: int):
    """Exclusion patterns (docs/product.md §2.7): a new pattern is first tried on the mailbox's
    last 100 messages ("dry_run"), and only the pattern that dry run showed can be saved; or a
    pattern is removed (a GET asks first, crm/confirm.py). With htmx only the section is
    swapped (the page answers 200 with errors shown in place); without JavaScript the whole
    page comes back."""
    mailbox = _shared_managed_or_404(request, pk)
    if request.method == "GET":
        if request.GET.get("action") != "remove":
            raise Http404("No such action.")
        pattern = get_object_or_404(ExclusionPattern, pk=_int(request.GET.get("pattern_id")))
        return confirm_page(
            request,
            question=f"Remove {pattern.pattern} from the exclusion patterns?",
            detail="Its senders can become contacts and tickets again, in every mailbox.",
            confirm_label="Remove",
            fields={"action": "remove", "pattern_id": pattern.pk},
            cancel_url=_section(mailbox, "exclusions"),
        )
    action = request.POST.get("action")
    error_status = 200 if request.htmx else 400
    if action == "remove":
        try:
            removed = mailbox_access.exclusion_pattern_remove(
                user=request.user,
                mailbox=mailbox,
                pattern_id=int(request.POST.get("pattern_id") or 0),
            )
        except (ValidationError, ValueError) as exc:
            raise Http404("No such pattern.") from exc
        return _exclusions_done(request, mailbox, f"{removed} is no longer excluded.")
    if action not in ("dry_run", "save"):
        raise Http404("No such action.")
    form = ExclusionForm(request.POST)
    if not form.is_valid():
        return _settings_again(request, mailbox, status=error_status, exclusion_form=form)
    pattern = form.cleaned_data["pattern"]
    try:
        if action == "save" and request.POST.get("checked") == pattern.strip().lower():
            saved = mailbox_access.exclusion_pattern_add(
                user=request.user, mailbox=mailbox, pattern=pattern, note=form.cleaned_data["note"]
            )
            return _exclusions_done(
                request, mailbox, f"{saved.pattern} is excluded from now on, in every mailbox."
            )
        hits = mailbox_access.exclusion_dry_run(user=request.user, mailbox=mailbox, pattern=pattern)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return _settings_again(request, mailbox, status=error_status, exclusion_form=form)
    dry_run = {"pattern": mailbox_access.clean_exclusion_pattern(pattern), "hits": hits}
    return _settings_again(request, mailbox, status=200, exclusion_form=form, dry_run=dry_run)


def _exclusions_done(request, mailbox: Mailbox, text: str):
    if request.htmx:
        return _settings_again(request, mailbox, status=200, exclusion_notice=text)
    messages.success(request, text)
    return redirect(reverse("inbox:mailbox_settings", args=[mailbox.pk]) + "#exclusions")


@require_http_methods(["GET", "POST"])
def mailbox_api_senders(request, pk: int):
    """Email API senders (docs/product.md §2.7): add, remove (a GET asks first,
    crm/confirm.py), or give one a new secret, which this answer shows once (never redirected
    through a cookie, never stored in clear)."""
    mailbox = _shared_managed_or_404(request, pk)
    if request.method == "GET":
        if request.GET.get("action") != "remove":
            raise Http404("No such action.")
        sender = get_object_or_404(
            EmailApiSender, pk=_int(request.GET.get("sender_id")), mailbox=mailbox
        )
        return confirm_page(
            request,
            question=(
                f"Remove {sender.address} from the Email API senders of {mailbox.email_address}?"
            ),
            detail="Documents it sends are no longer acted on.",
            confirm_label="Remove",
            fields={"action": "remove", "sender_id": sender.pk},
            cancel_url=_section(mailbox, "api"),
        )
    action = request.POST.get("action")
    if action == "add":
        form = ApiSenderForm(request.POST)
        if form.is_valid():
            try:
                sender = mailbox_access.api_sender_add(
                    user=request.user, mailbox=mailbox, **form.cleaned_data
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, f"{sender.address} may now send Email API documents.")
                return redirect(reverse("inbox:mailbox_settings", args=[mailbox.pk]) + "#api")
        return _settings_again(request, mailbox, api_sender_form=form)
    try:
        if action == "secret":
            sender, secret = mailbox_access.api_sender_new_secret(
                user=request.user, mailbox=mailbox, sender_id=request.POST.get("sender_id")
            )
            response = _settings_again(
                request, mailbox, status=200, new_secret={"sender": sender, "secret": secret}
            )
            response["Cache-Control"] = "no-store"
            return response
        if action == "remove":
            address = mailbox_access.api_sender_remove(
                user=request.user, mailbox=mailbox, sender_id=request.POST.get("sender_id")
            )
            messages.success(request, f"{address} may no longer send Email API documents.")
            return done(request, _section(mailbox, "api"))
    except ValidationError as exc:
        raise Http404("No such sender.") from exc
    raise Http404("No such action.")


@require_POST
def mailbox_precedence(request, pk: int):
    """Lead or contact first (for every mailbox), from a shared mailbox's page."""
    mailbox = _shared_managed_or_404(request, pk)
    try:
        row = mailbox_access.matching_precedence_set(
            user=request.user, mailbox=mailbox, precedence=request.POST.get("precedence", "")
        )
    except ValidationError:
        messages.error(request, "Pick contact first or lead first.")
    else:
        messages.success(request, f"Matching: {row.get_precedence_display()}, in every mailbox.")
    return redirect(reverse("inbox:mailbox_settings", args=[mailbox.pk]) + "#precedence")
