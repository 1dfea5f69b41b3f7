"""Forms for the CRM pages. Every form validates all of its input (addresses and domains with
the services' own normalisers) before anything is written, and writes through crm.services,
so a bad address among good ones leaves the database exactly as it was."""

from __future__ import annotations

import re

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Column, Field, Layout, Row
from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction

from . import selectors, services
from .models import Account, Contact, Lead, Opportunity, Ticket

# One address per line is what people paste from a spreadsheet; commas and semicolons are what
# they paste from a mail client's To line. Spaces are not separators: "ana lopez@x.com" is a
# typo that must be reported, not silently split into two guesses.
_SEPARATORS = re.compile(r"[\n\r,;]+")
MAX_ADDRESSES = 50


class AddressListField(forms.CharField):
    """A textarea of addresses or domains; cleans to a normalised, de-duplicated list."""

    def __init__(self, *, normalize, noun: str, **kwargs):
        self.normalize = normalize
        self.noun = noun
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [part.strip() for part in _SEPARATORS.split(text) if part.strip()]

    def validate(self, value):
        if self.required and not value:
            raise ValidationError(self.error_messages["required"], code="required")
        if len(value) > MAX_ADDRESSES:
            raise ValidationError(f"Enter at most {MAX_ADDRESSES} {self.noun}.")

    def clean(self, value):
        values = super().clean(value)
        errors = []
        for entry in values:
            try:
                self.normalize([entry])
            except ValidationError as exc:
                # Some messages do not repeat the entry ("Enter a domain such as example.com."
                # for "ana@"): in a list of twenty, the user must be told which line is wrong.
                errors += [m if entry in m else f"“{entry}”: {m}" for m in exc.messages]
        if errors:
            raise ValidationError(errors)
        return self.normalize(values)


def email_list_field(**kwargs) -> AddressListField:
    kwargs.setdefault("label", "Email addresses")
    kwargs.setdefault("help_text", "One per line, or separated by commas.")
    return AddressListField(normalize=services.normalize_emails, noun="addresses", **kwargs)


class UserChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        kwargs.setdefault("empty_label", "Nobody")
        super().__init__(queryset=selectors.assignable_users(), required=False, **kwargs)

    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.get_username()


class AccountChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            queryset=Account.objects.order_by("name", "id"),
            required=False,
            empty_label="No account",
            **kwargs,
        )


class ContactChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            queryset=Contact.objects.all(), required=False, empty_label="No contact", **kwargs
        )


def _helper(*layout) -> FormHelper:
    # The templates own the <form> tag, the CSRF token and the buttons (Save / Cancel).
    helper = FormHelper()
    helper.form_tag = False
    helper.layout = Layout(*layout)
    return helper


def _pair(first: str, second: str) -> Row:
    return Row(Column(first, css_class="col-md-6"), Column(second, css_class="col-md-6"))


class RecordForm(forms.ModelForm):
    """A ModelForm whose save() creates through a crm service, or updates in one transaction
    (the record's fields and its address list together, or neither)."""

    children_field: str | None = None

    def create(self, fields: dict):
        """Subclasses create through their crm service (which numbers tickets, etc.)."""
        raise NotImplementedError(f"{type(self).__name__} must say how it creates its record")

    def set_children(self, record, values: list[str]) -> None:
        """Subclasses with children_field replace the record's addresses or domains."""
        raise NotImplementedError(f"{type(self).__name__} must say how it sets {values!r}")

    def model_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self._meta.fields}

    def save(self, commit: bool = True):
        children = self.cleaned_data.get(self.children_field) if self.children_field else None
        if self.instance.pk is None:
            if self.children_field:
                return self.create({**self.model_fields(), self.children_field: children})
            return self.create(self.model_fields())
        with transaction.atomic():
            record = super().save()
            if self.children_field:
                self.set_children(record, children)
        return record


class AccountForm(RecordForm):
    children_field = "domains"

    domains = AddressListField(
        normalize=services.normalize_domains,
        noun="domains",
        label="Email domains",
        help_text="Domains this company's people write from, such as example.com. "
        "One per line, or separated by commas.",
    )
    owner = UserChoiceField()

    class Meta:
        model = Account
        fields = ["name", "website", "phone", "owner"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["domains"] = [d.domain for d in self.instance.domains.all()]
        self.helper = _helper("name", _pair("website", "phone"), "owner", "domains")

    def create(self, fields):
        return services.account_create(**fields)

    def set_children(self, record, values):
        services.account_set_domains(account=record, domains=values)


class ContactForm(RecordForm):
    children_field = "emails"

    emails = email_list_field()
    account = AccountChoiceField()

    class Meta:
        model = Contact
        fields = ["first_name", "last_name", "title", "phone", "account"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["emails"] = [e.email for e in self.instance.emails.all()]
        self.helper = _helper(
            _pair("first_name", "last_name"), _pair("title", "phone"), "account", "emails"
        )

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("first_name") or cleaned.get("last_name") or cleaned.get("emails")):
            raise ValidationError("Give the contact a name or at least one email address.")
        return cleaned

    def create(self, fields):
        return services.contact_create(**fields)

    def set_children(self, record, values):
        services.contact_set_emails(contact=record, emails=values)


class LeadForm(RecordForm):
    children_field = "emails"

    emails = email_list_field()
    owner = UserChoiceField()

    class Meta:
        model = Lead
        fields = ["first_name", "last_name", "company_name", "phone", "status", "owner"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["emails"] = [e.email for e in self.instance.emails.all()]
        if self.instance.is_converted:
            # A converted lead points at what it became; only Convert sets that status.
            self.fields["status"].disabled = True
        else:
            self.fields["status"].choices = [
                choice for choice in Lead.Status.choices if choice[0] != Lead.Status.CONVERTED
            ]
        self.helper = _helper(
            _pair("first_name", "last_name"),
            _pair("company_name", "phone"),
            _pair("status", "owner"),
            "emails",
        )

    def clean(self):
        cleaned = super().clean()
        if not (
            cleaned.get("first_name")
            or cleaned.get("last_name")
            or cleaned.get("company_name")
            or cleaned.get("emails")
        ):
            raise ValidationError("Give the lead a name, a company or an email address.")
        return cleaned

    def create(self, fields):
        return services.lead_create(**fields)

    def set_children(self, record, values):
        services.lead_set_emails(lead=record, emails=values)


class TicketForm(RecordForm):
    account = AccountChoiceField()
    contact = ContactChoiceField()
    assignee = UserChoiceField()

    class Meta:
        model = Ticket
        fields = ["subject", "description", "status", "priority", "account", "contact", "assignee"]
        widgets = {"description": forms.Textarea(attrs={"rows": 5})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper(
            "subject",
            "description",
            _pair("status", "priority"),
            _pair("account", "contact"),
            "assignee",
        )

    def create(self, fields):
        return services.ticket_create(**fields)


class OpportunityForm(RecordForm):
    account = AccountChoiceField()
    contact = ContactChoiceField()
    owner = UserChoiceField()

    class Meta:
        model = Opportunity
        fields = ["name", "stage", "amount", "close_date", "account", "contact", "owner"]
        widgets = {
            "close_date": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "amount": forms.NumberInput(attrs={"step": "0.01", "min": "0"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper(
            "name",
            _pair("stage", "amount"),
            _pair("close_date", "owner"),
            _pair("account", "contact"),
        )

    def clean_amount(self):
        amount = self.cleaned_data.get("amount")
        if amount is not None and amount < 0:
            raise ValidationError("The amount cannot be negative.")
        return amount

    def create(self, fields):
        return services.opportunity_create(**fields)


class StaffEmailsForm(forms.Form):
    emails = email_list_field(
        label="My email addresses",
        help_text="Mail from these addresses is yours: it is filed as staff mail and never "
        "creates a contact. A new address counts once you follow the link mailed to it. One "
        "per line, or separated by commas.",
    )

    def __init__(self, *args, user, confirm_url=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.confirm_url = confirm_url
        self.waiting: list[str] = []
        self.initial.setdefault("emails", selectors.staff_emails(user=user))
        self.fields["emails"].widget.attrs["rows"] = 5
        self.helper = _helper(Field("emails"))

    def save(self) -> bool:
        """Write the list; False (with the error on the field) when an address is taken."""
        try:
            self.waiting = services.staff_set_emails(
                user=self.user, emails=self.cleaned_data["emails"], confirm_url=self.confirm_url
            )
        except ValidationError as exc:
            self.add_error("emails", exc)
            return False
        return True


SWITCH_VALUES = {True: "on", False: "off"}


def _site_switch(label: str, help_text: str) -> forms.TypedChoiceField:
    """An on/off site setting that may also follow the environment (None)."""
    return forms.TypedChoiceField(
        label=label,
        choices=[("", "As the environment says"), ("on", "On"), ("off", "Off")],
        required=False,
        coerce=lambda value: {"on": True, "off": False}.get(value),
        empty_value=None,
        help_text=help_text,
    )


class SiteSettingsForm(forms.Form):
    """The Site settings page (docs/product.md §8.1): each field empty, or "As the environment
    says", keeps the environment's value (crm/settings.py)."""

    mail_enabled = _site_switch(
        "Mail (syncing and sending)",
        "Off: no mailbox is synced or watched and nothing is sent through one; mail "
        "sent meanwhile waits in the Outbox, and every mailbox catches up once it is on "
        "again. Every page says so while it is off.",
    )
    purge_after_days = forms.IntegerField(
        label="Purge completed job records after (days)",
        required=False,
        min_value=0,
        max_value=3650,
        help_text="Sent mail records, done changes, resolved triage entries, answered Email API "
        "requests and old ledger rows. 0 keeps everything. Empty: the environment's value.",
    )
    default_from_email = forms.CharField(
        label="Default From address of system mail",
        required=False,
        max_length=320,
        widget=forms.EmailInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
        help_text="Confirmation links, notification mail and mail no mailbox sends. Empty: the "
        "environment's value.",
    )
    send_acknowledgements = _site_switch(
        "Ticket acknowledgements",
        "Off: no mailbox acknowledges new tickets, whatever its own switch says. On: each "
        "support mailbox's own switch decides.",
    )

    @classmethod
    def for_row(cls, row, data=None):
        initial = {}
        if row is not None:
            initial = {
                "mail_enabled": SWITCH_VALUES.get(row.mail_enabled, ""),
                "purge_after_days": row.purge_after_days,
                "default_from_email": row.default_from_email,
                "send_acknowledgements": SWITCH_VALUES.get(row.send_acknowledgements, ""),
            }
        return cls(data, initial=initial)
