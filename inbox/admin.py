"""Admin site for mailboxes: shared mailboxes with their grants, personal ones with their owner.

Secrets are write-only here: the form has a password field that is never rendered back, and
leaving it empty keeps the stored value, unless the server settings change: then the stored
secret is forgotten and the owner asked to reconnect (docs/reliability.md C-21). Admins manage
mailboxes but never read personal mail: messages are not registered here, a personal
mailbox's kind, owner and privacy are its owner's, and the outbox, ledger and Email API lists
show personal mailboxes' rows to their owner only (docs/reliability.md C-22)."""

from __future__ import annotations

import copy

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from .models import Folder, LedgerEntry, Mailbox, OutboxEntry, PrimaryMailbox, SmtpAuth
from .permissions import can_manage_mailbox
from .services import mailbox_access
from .services import mailboxes as mailbox_services


def visible_to(user, field: str = "mailbox") -> Q:
    """Rows of shared mailboxes, and of the user's own personal ones: what the admin lists of
    mail-bearing models (outbox, ledger, Email API). Another user's personal mail stays theirs,
    superuser or not (docs/product.md §2.2)."""
    return Q(**{f"{field}__kind": Mailbox.Kind.SHARED}) | Q(**{f"{field}__owner": user.pk})


class MailboxAdminForm(forms.ModelForm):
    user = None  # who edits: set by MailboxWithGrantsAdmin.get_form

    new_password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the current one.",
    )
    new_smtp_password = forms.CharField(
        label="SMTP password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Only with a separate SMTP login (docs/product.md §2.8). Stored encrypted and "
        "never shown again. Leave empty to keep the current one.",
    )

    class Meta:
        model = Mailbox
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "smtp_auth" in self.fields:
            # A form that does not send it (a script, an older page) keeps what the mailbox had.
            self.fields["smtp_auth"].required = False

    def clean_smtp_auth(self):
        return self.cleaned_data.get("smtp_auth") or self.instance.smtp_auth or SmtpAuth.SAME

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:
            # A new mailbox is created by inbox/services/mailboxes.py mailbox_connect, as the
            # wizard and `manage.py mailbox add` create theirs: with a password, once.
            if cleaned.get("connection_type", Mailbox.ConnectionType.IMAP) != (
                Mailbox.ConnectionType.IMAP
            ):
                self.add_error(
                    "connection_type",
                    "Google and Microsoft mailboxes are connected by signing in: Settings, "
                    "Mailboxes, Connect a mailbox.",
                )
            if not cleaned.get("new_password"):
                self.add_error("new_password", "Enter the mailbox's password.")
        elif cleaned.get("new_password") or cleaned.get("new_smtp_password"):
            edited = copy.copy(self.instance)
            for name in mailbox_services.SERVER_FIELDS:
                if name in cleaned:
                    setattr(edited, name, cleaned[name])
            if mailbox_services.server_changes(self.instance, edited) and not can_manage_mailbox(
                self.user, self.instance
            ):
                # Someone else's personal mailbox: its owner enters the password for the new
                # server themselves (docs/reliability.md C-21).
                self.add_error(
                    "new_password",
                    "Only the owner enters this mailbox's password after its server settings "
                    "change: leave it empty, they will be asked to reconnect.",
                )
        return cleaned


class FolderInline(admin.TabularInline):
    model = Folder
    extra = 0
    can_delete = False
    fields = (
        "name",
        "special_use",
        "is_active",
        "uidvalidity",
        "last_uid",
        "highest_modseq",
        "messages_on_server",
        "last_synced_at",
    )
    readonly_fields = (
        "uidvalidity",
        "last_uid",
        "highest_modseq",
        "messages_on_server",
        "last_synced_at",
    )


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    form = MailboxAdminForm
    list_display = ("email_address", "kind", "owner", "connection_type", "state", "last_success_at")
    list_filter = ("kind", "state", "connection_type")
    search_fields = ("email_address", "display_name", "owner__username")
    filter_horizontal = ("granted_users", "granted_groups")
    readonly_fields = (
        "state",
        "last_error",
        "consecutive_failures",
        "last_sync_at",
        "last_success_at",
        "next_sync_at",
        "first_sync_done",
        "progress_done",
        "progress_total",
        "oauth_expires_at",
        "created_at",
        "updated_at",
    )
    inlines = [FolderInline]
    fieldsets = (
        (None, {"fields": ("kind", "owner", "email_address", "display_name", "connection_type")}),
        ("Grants (shared mailboxes)", {"fields": ("granted_users", "granted_groups")}),
        (
            "Incoming (IMAP)",
            {
                "fields": (
                    "login",
                    "new_password",
                    "imap_host",
                    "imap_port",
                    "imap_security",
                    "allow_insecure_cert",
                )
            },
        ),
        (
            "Outgoing (SMTP)",
            {
                "fields": (
                    "smtp_host",
                    "smtp_port",
                    "smtp_security",
                    "smtp_auth",
                    "smtp_login",
                    "new_smtp_password",
                )
            },
        ),
        (
            "Sync",
            {
                "fields": (
                    "active_folders",
                    "sync_from",
                    "refresh_interval",
                    "create_contacts",
                    "create_tickets",
                    "send_acknowledgements",
                    "forward_unplaced_to",
                    "signature",
                    "privacy",
                    "write_seen_to_server",
                    "reply_sets_waiting",
                )
            },
        ),
        (
            "State",
            {
                "fields": (
                    "state",
                    "last_error",
                    "consecutive_failures",
                    "last_sync_at",
                    "last_success_at",
                    "next_sync_at",
                    "first_sync_done",
                    "progress_done",
                    "progress_total",
                    "oauth_expires_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.sync_from:
            fields.append("sync_from")  # docs/product.md §2.4: cannot be changed afterwards
        if obj is not None:
            # A connection type is chosen by how the mailbox was connected (a password or a
            # provider's sign-in), not switched afterwards.
            fields.append("connection_type")
        if obj is not None and obj.connection_type != Mailbox.ConnectionType.IMAP:
            # Google's and Microsoft's servers come from the provider's settings: an access
            # token is only ever sent there (docs/reliability.md C-21).
            fields += [
                "login",
                "imap_host",
                "imap_port",
                "imap_security",
                "smtp_host",
                "smtp_port",
                "smtp_security",
                "smtp_auth",
                "smtp_login",
                "allow_insecure_cert",
            ]
        if obj is not None and obj.kind == Mailbox.Kind.PERSONAL:
            # Personal mail is its owner's (docs/product.md §2.2, docs/reliability.md C-22):
            # nobody moves the mailbox to another owner, turns it into a shared one, opens
            # tickets from it or forwards it elsewhere, and only the owner chooses what
            # colleagues see of it.
            fields += ["kind", "owner", "create_tickets", "forward_unplaced_to"]
            if obj.owner_id != request.user.pk:
                fields.append("privacy")
        return fields

    @method_decorator(sensitive_post_parameters("new_password", "new_smtp_password"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The password typed here never reaches an error report (docs/reliability.md C-23).
        return super().changeform_view(request, object_id, form_url, extra_context)


@admin.register(PrimaryMailbox)
class PrimaryMailboxAdmin(admin.ModelAdmin):
    list_display = ("user", "mailbox")
    autocomplete_fields = ("mailbox",)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OwnMailAdmin(ReadOnlyAdmin):
    """Rows that carry mail: of shared mailboxes, and of the viewer's own personal ones."""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(visible_to(request.user))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(OwnMailAdmin):
    list_display = (
        "mailbox",
        "folder",
        "uidvalidity",
        "uid",
        "outcome",
        "reason",
        "attempts",
        "updated_at",
    )
    list_filter = ("outcome",)
    search_fields = ("mailbox__email_address", "reason", "error")
    list_select_related = ("mailbox", "folder")


@admin.register(OutboxEntry)
class OutboxEntryAdmin(OwnMailAdmin):
    list_display = ("mailbox", "subject", "state", "attempts", "sent_at", "created_at")
    list_filter = ("state",)
    fields = (
        "mailbox",
        "state",
        "from_address",
        "to",
        "cc",
        "subject",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "created_at",
    )
    list_select_related = ("mailbox",)
    actions = ["send_again", "mark_sent", "cancel"]

    # The Outbox page's actions (docs/product.md §5.4), through the same services and the same
    # checks: only rows this admin sees (visible_to), each refused one reported, none forced.
    def _act(self, request, queryset, service, done: str) -> None:
        from django.contrib import messages as flash
        from django.core.exceptions import PermissionDenied, ValidationError

        ok, refused = 0, []
        for entry in queryset.select_related("mailbox"):
            try:
                service(user=request.user, entry=entry)
            except (ValidationError, PermissionDenied) as exc:
                reason = " ".join(getattr(exc, "messages", [str(exc)]))
                refused.append(f"{entry.subject or entry.pk}: {reason}")
            else:
                ok += 1
        if ok:
            self.message_user(request, f"{done}: {ok}.", flash.SUCCESS)
        for line in refused:
            self.message_user(request, line, flash.WARNING)

    @admin.action(description="Send again (failed or outcome unknown)")
    def send_again(self, request, queryset):
        from .services.outbox import outbox_send_again

        self._act(request, queryset, outbox_send_again, "Queued again")

    @admin.action(description="Mark as sent (outcome unknown)")
    def mark_sent(self, request, queryset):
        from .services.outbox import outbox_mark_sent

        self._act(request, queryset, outbox_mark_sent, "Marked as sent")

    @admin.action(description="Cancel (queued, not yet sending)")
    def cancel(self, request, queryset):
        from .services.outbox import outbox_cancel

        self._act(request, queryset, outbox_cancel, "Cancelled")


# --- matching (docs/product.md §4) ------------------------------------------------------------
from .models import ExclusionPattern, MatchingSettings  # noqa: E402


@admin.register(ExclusionPattern)
class ExclusionPatternAdmin(admin.ModelAdmin):
    list_display = ("pattern", "note", "created_at")
    search_fields = ("pattern", "note")


@admin.register(MatchingSettings)
class MatchingSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "precedence", "acknowledgements_per_hour", "updated_at")

    def has_add_permission(self, request):
        # A singleton: the row is created on first read; a second one would never be used.
        return not MatchingSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


# --- The ledger read-only (nothing deleted: every UID stays accounted for), retry of
# held messages as an action, and the grants of shared mailboxes in the list ------------------
from django.contrib import messages as admin_messages  # noqa: E402
from django.core.exceptions import PermissionDenied, ValidationError  # noqa: E402
from django.db.models import Count  # noqa: E402

admin.site.unregister(LedgerEntry)


@admin.register(LedgerEntry)
class LedgerAdmin(LedgerEntryAdmin):
    list_filter = ("outcome", "mailbox")
    readonly_fields = fields = (
        "mailbox",
        "folder",
        "uidvalidity",
        "uid",
        "outcome",
        "reason",
        "error",
        "attempts",
        "raw_file",
        "message",
        "created_at",
        "updated_at",
    )
    actions = ["retry_held"]

    def has_delete_permission(self, request, obj=None):
        # Deleting a row would make a UID unaccounted for (docs/product.md §3.3): the ledger is
        # history.
        return False

    @admin.action(description="Retry the selected held messages on the next sync")
    def retry_held(self, request, queryset):
        retried, refused = 0, 0
        for entry in queryset.select_related("mailbox"):
            try:
                mailbox_services.ledger_retry(user=request.user, entry=entry)
                retried += 1
            except (ValidationError, PermissionDenied):
                refused += 1
        self.message_user(request, f"{retried} held message(s) will be fetched again.")
        if refused:
            self.message_user(
                request,
                f"{refused} entr(y/ies) left as they were: only held messages that were never "
                "stored, of mailboxes you manage, can be retried.",
                level=admin_messages.WARNING,
            )


admin.site.unregister(Mailbox)


@admin.register(Mailbox)
class MailboxWithGrantsAdmin(MailboxAdmin):
    list_display = (
        "email_address",
        "kind",
        "owner",
        "grants",
        "connection_type",
        "state",
        "last_success_at",
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(
                user_grants=Count("granted_users", distinct=True),
                group_grants=Count("granted_groups", distinct=True),
            )
        )

    @admin.display(description="Granted to")
    def grants(self, obj):
        if obj.kind != Mailbox.Kind.SHARED:
            return "—"
        return f"{obj.user_grants} user(s), {obj.group_grants} group(s)"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user
        return form

    def save_model(self, request, obj, form, change):
        if change:
            # The one service decides what a change means for the stored secret.
            mailbox_services.mailbox_admin_update(
                user=request.user,
                mailbox=obj,
                new_password=form.cleaned_data["new_password"],
                new_smtp_password=form.cleaned_data["new_smtp_password"],
            )
            return
        # Adding: the one service every entry point creates mailboxes with (duplicate check,
        # audit log, primary choice, first sync). The grants are saved after it, by the form.
        fields = mailbox_services.CONNECT_FIELDS + (
            mailbox_services.ADMIN_CONNECT_FIELDS if obj.kind == Mailbox.Kind.SHARED else ()
        )
        created = mailbox_services.mailbox_connect(
            user=request.user,
            kind=obj.kind,
            owner=obj.owner,
            email_address=obj.email_address,
            password=form.cleaned_data["new_password"],
            smtp_password=form.cleaned_data["new_smtp_password"],
            active_folders=obj.active_folders or None,
            **{name: getattr(obj, name) for name in fields},
        )
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db
        obj.email_address = created.email_address

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        mailbox = form.instance
        if mailbox.kind != Mailbox.Kind.SHARED:
            return
        if not change:
            # The form's grants replaced the ones the service made: its creator keeps access
            # (docs/product.md §2.7).
            mailbox.granted_users.add(request.user)
        # A revoked grant also clears that user's primary choice (docs/product.md §2.7 item 2).
        mailbox_access.mailbox_forget_lost_primaries(mailbox=mailbox)


# --- Email API (docs/product.md §6) --------------------------------------------------------------
from .models import EmailApiRequest, EmailApiSender  # noqa: E402
from .selectors.mailboxes import api_senders_with_last_mail, sender_works_today  # noqa: E402


class EmailApiSenderForm(forms.ModelForm):
    new_secret = forms.CharField(
        label="Secret",
        required=False,
        strip=False,
        min_length=16,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text='Every document must then carry it: <request secret="...">. Stored as a hash '
        "and never shown again. Leave empty to keep the current one. At least 16 characters.",
    )
    remove_secret = forms.BooleanField(
        label="Remove the secret", required=False, help_text="Documents then need none."
    )

    class Meta:
        model = EmailApiSender
        fields = ("mailbox", "address", "note")

    def save(self, commit=True):
        sender = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            sender.set_secret(self.cleaned_data["new_secret"])
        elif self.cleaned_data.get("remove_secret"):
            sender.set_secret("")
        if commit:
            sender.save()
        return sender


@admin.register(EmailApiSender)
class EmailApiSenderAdmin(admin.ModelAdmin):
    """Who may send Email API documents to which support mailbox
    (connector/emailapi/document.py), each with whether it can work today: a document is
    applied only when our receiving server authenticated the sender for its From domain
    (docs/reliability.md C-17), which the sender's last mail shows."""

    form = EmailApiSenderForm
    list_display = ("address", "mailbox", "secret", "works_today", "note")
    list_filter = ("mailbox",)
    search_fields = ("address", "note")
    fields = ("mailbox", "address", "note", "works_today", "new_secret", "remove_secret")
    readonly_fields = ("works_today",)

    def get_queryset(self, request):
        # The same reads as the settings page's Email API senders (docs/product.md §2.7).
        return api_senders_with_last_mail(super().get_queryset(request))

    @admin.display(description="Secret")
    def secret(self, obj) -> str:
        return "set" if obj.secret_hash else "none"

    @admin.display(description="Works today?")
    def works_today(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "—"
        return sender_works_today(obj)[1]


@admin.register(EmailApiRequest)
class EmailApiRequestAdmin(OwnMailAdmin):
    list_display = ("created_at", "mailbox", "sender", "outcome")
    list_filter = ("outcome", "mailbox")
    search_fields = ("sender",)
