"""Admin site for the CRM records, with their addresses and domains inline, and the staff's own
addresses inline on the User page. Inline forms normalise with the same functions as the
services, so the admin can never store an address the matching rules would not find."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.utils import timezone

from .models import (
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Lead,
    LeadEmail,
    Opportunity,
    SignInThrottle,
    StaffEmail,
    Ticket,
)
from .normalize import normalize_domain, normalize_email
from .services import account_set_domains, contact_set_emails, lead_set_emails, next_number
from .signin import AdminSignInForm

# The admin's own sign-in page is throttled like the site's (docs/reliability.md C-26).
admin.site.login_form = AdminSignInForm


class NormalizedEmailForm(forms.ModelForm):
    def clean_email(self):
        # Normalised here, before the unique constraints are validated, so "Ana@X.com" and
        # "ana@x.com" are seen as the same address (models.save() would do it too late).
        return normalize_email(self.cleaned_data["email"])


class NormalizedDomainForm(forms.ModelForm):
    def clean_domain(self):
        return normalize_domain(self.cleaned_data["domain"])


class AccountDomainInline(admin.TabularInline):
    model = AccountDomain
    form = NormalizedDomainForm
    extra = 1


class ContactEmailInline(admin.TabularInline):
    model = ContactEmail
    form = NormalizedEmailForm
    fields = ("email",)
    extra = 1


class LeadEmailInline(admin.TabularInline):
    model = LeadEmail
    form = NormalizedEmailForm
    fields = ("email",)
    extra = 1


class StaffEmailForm(NormalizedEmailForm):
    """An admin sets a user's addresses directly: they count at once, without the mail a user
    confirms their own with (docs/reliability.md C-19). An address the user added and has not
    confirmed shows "waiting"; unticking it confirms it, ticking it suspends one."""

    waiting = forms.BooleanField(label="Waiting for confirmation", required=False, initial=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["waiting"].initial = self.instance.confirmed_at is None

    def save(self, commit=True):
        row = super().save(commit=False)
        if self.cleaned_data.get("waiting"):
            row.confirmed_at = None
        elif row.confirmed_at is None:
            row.confirmed_at = timezone.now()
        if commit:
            row.save()
        return row


class StaffEmailInline(admin.TabularInline):
    model = StaffEmail
    form = StaffEmailForm
    fields = ("email", "waiting", "confirmed_at")
    readonly_fields = ("confirmed_at",)
    extra = 1
    verbose_name = "own email address"
    verbose_name_plural = (
        "own email addresses (mail from these is staff mail once confirmed; an admin's are)"
    )


class AddressesThroughServiceMixin:
    """The addresses (or domains) inline is saved by the same service as the web form, so an
    address added here files past mail too (docs/product.md §4.5), instead of rows written
    behind the service's back. The inline's forms only validate and normalise."""

    address_inline: type[admin.TabularInline]
    address_field = "email"

    def save_address_list(self, record, values: list[str]) -> None:
        raise NotImplementedError

    def save_formset(self, request, form, formset, change):
        if formset.model is not self.address_inline.model:
            return super().save_formset(request, form, formset, change)
        values = [
            row.cleaned_data[self.address_field]
            for row in formset.forms
            if row.cleaned_data
            and not row.cleaned_data.get("DELETE")
            and row.cleaned_data.get(self.address_field)
        ]
        self.save_address_list(form.instance, values)
        # Nothing left for the formset to write; the change message lists no rows.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        return None


@admin.register(Account)
class AccountAdmin(AddressesThroughServiceMixin, admin.ModelAdmin):
    list_display = ("name", "website", "phone", "owner", "created_at")
    search_fields = ("name", "domains__domain")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    inlines = [AccountDomainInline]
    address_inline = AccountDomainInline
    address_field = "domain"

    def save_address_list(self, record, values):
        account_set_domains(account=record, domains=values)


@admin.register(Contact)
class ContactAdmin(AddressesThroughServiceMixin, admin.ModelAdmin):
    list_display = ("__str__", "title", "account", "phone", "created_at")
    search_fields = ("first_name", "last_name", "emails__email", "account__name")
    list_select_related = ("account",)
    autocomplete_fields = ("account",)
    inlines = [ContactEmailInline]
    address_inline = ContactEmailInline

    def save_address_list(self, record, values):
        contact_set_emails(contact=record, emails=values)


@admin.register(Lead)
class LeadAdmin(AddressesThroughServiceMixin, admin.ModelAdmin):
    list_display = ("__str__", "company_name", "status", "owner", "created_at")
    list_filter = ("status",)
    search_fields = ("first_name", "last_name", "company_name", "emails__email")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner", "converted_contact", "converted_account")
    readonly_fields = ("converted_at",)
    inlines = [LeadEmailInline]
    address_inline = LeadEmailInline

    def save_address_list(self, record, values):
        lead_set_emails(lead=record, emails=values)


class NumberedAdmin(admin.ModelAdmin):
    """Tickets and opportunities take their number from the same counter as the services, so
    a record made in the admin never collides with one made on the pages."""

    series = ""

    @admin.display(description="Reference", ordering="number")
    def reference(self, obj):
        return obj.reference

    def save_model(self, request, obj, form, change):
        if not change:
            obj.number = next_number(series=self.series)
        super().save_model(request, obj, form, change)


@admin.register(Ticket)
class TicketAdmin(NumberedAdmin):
    series = "ticket"
    list_display = ("reference", "subject", "status", "priority", "account", "assignee")
    list_filter = ("status", "priority")
    search_fields = ("subject", "account__name", "contact__last_name")
    list_select_related = ("account", "assignee")
    autocomplete_fields = ("account", "contact", "assignee")


@admin.register(Opportunity)
class OpportunityAdmin(NumberedAdmin):
    series = "opportunity"
    list_display = ("reference", "name", "stage", "amount", "close_date", "account", "owner")
    list_filter = ("stage",)
    search_fields = ("name", "account__name")
    list_select_related = ("account", "owner")
    autocomplete_fields = ("account", "contact", "owner")


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class RelayUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, StaffEmailInline]
    search_fields = (*UserAdmin.search_fields, "staff_emails__email")


@admin.register(SignInThrottle)
class SignInThrottleAdmin(admin.ModelAdmin):
    """Failed sign-ins and locks (crm/signin.py). Unlocking deletes the row: the count starts
    again from nothing."""

    list_display = ("kind", "key", "failures", "lockouts", "last_failure_at", "locked_until")
    list_filter = ("kind",)
    search_fields = ("key",)
    readonly_fields = ("kind", "key", "failures", "lockouts", "last_failure_at", "locked_until")
    actions = ["unlock"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Unlock (forget the failed sign-ins)")
    def unlock(self, request, queryset):
        count = queryset.delete()[0]
        self.message_user(request, f"Unlocked {count} account(s) or address(es).")
