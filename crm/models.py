"""The CRM records: accounts, contacts, leads, tickets, opportunities, and staff addresses.

`crm` knows nothing of mail: `inbox` points at these records, never the other way round.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from .normalize import normalize_domain, normalize_email


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Account(TimeStamped):
    name = models.CharField(max_length=200)
    website = models.URLField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_accounts",
    )

    record_type = "account"

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(Lower("name"), name="crm_account_name_lower")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("crm:account_detail", args=[self.pk])


class AccountDomain(models.Model):
    """A domain the account's people write from. A domain claimed by two accounts is allowed but
    ambiguous: it is flagged and never used for automatic filing (docs/product.md §1.1)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, db_index=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["account", "domain"], name="crm_account_domain_once")
        ]

    def __str__(self) -> str:
        return self.domain

    def save(self, *args, **kwargs):
        self.domain = normalize_domain(self.domain)
        super().save(*args, **kwargs)


class Person(TimeStamped):
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=50, blank=True)

    class Meta:
        abstract = True

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or "(no name)"

    def __str__(self) -> str:
        return self.name


class Contact(Person):
    title = models.CharField(max_length=100, blank=True)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts"
    )

    record_type = "contact"

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [models.Index(Lower("last_name"), Lower("first_name"), name="crm_contact_name")]

    def get_absolute_url(self) -> str:
        return reverse("crm:contact_detail", args=[self.pk])


class EmailAddressBase(models.Model):
    email = models.CharField(max_length=320, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs):
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)


class ContactEmail(EmailAddressBase):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="emails")

    class Meta(EmailAddressBase.Meta):
        constraints = [
            models.UniqueConstraint(fields=["contact", "email"], name="crm_contact_email_once")
        ]


class Lead(Person):
    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        LOST = "lost", "Lost"
        CONVERTED = "converted", "Converted"

    company_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_leads",
    )
    converted_contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="from_leads"
    )
    converted_account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="from_leads"
    )
    converted_at = models.DateTimeField(null=True, blank=True)

    record_type = "lead"

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def is_converted(self) -> bool:
        return self.status == self.Status.CONVERTED

    def get_absolute_url(self) -> str:
        return reverse("crm:lead_detail", args=[self.pk])


class LeadEmail(EmailAddressBase):
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="emails")

    class Meta(EmailAddressBase.Meta):
        constraints = [
            models.UniqueConstraint(fields=["lead", "email"], name="crm_lead_email_once")
        ]


class StaffEmail(EmailAddressBase):
    """An address of a staff user's own: mail from it is staff mail, never a new contact.

    It counts only once confirmed (docs/reliability.md C-19): a user who adds one on "My
    addresses" gets a confirmation link at that address; an admin may set a user's addresses
    directly. Until then anybody's claim would turn a customer's mail into staff mail."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_emails"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    class Meta(EmailAddressBase.Meta):
        constraints = [models.UniqueConstraint(fields=["email"], name="crm_staff_email_unique")]


class Counter(models.Model):
    """Next number for a reference series (tickets, opportunities). Incremented in the same
    transaction as the record is created, so two creators never get the same number."""

    name = models.CharField(max_length=30, primary_key=True)
    value = models.PositiveBigIntegerField()


class Ticket(TimeStamped):
    PREFIX = "TKT"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Waiting on customer"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"
        URGENT = "urgent", "Urgent"

    number = models.PositiveBigIntegerField(unique=True, editable=False)
    subject = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    priority = models.CharField(max_length=20, choices=Priority.choices, default=Priority.NORMAL)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tickets",
    )

    record_type = "ticket"

    class Meta:
        ordering = ["-number"]

    @property
    def reference(self) -> str:
        return f"{self.PREFIX}-{self.number}"

    def __str__(self) -> str:
        return f"{self.reference} {self.subject}"

    def get_absolute_url(self) -> str:
        return reverse("crm:ticket_detail", args=[self.pk])


class Opportunity(TimeStamped):
    PREFIX = "OPP"

    class Stage(models.TextChoices):
        PROSPECTING = "prospecting", "Prospecting"
        QUALIFICATION = "qualification", "Qualification"
        PROPOSAL = "proposal", "Proposal"
        NEGOTIATION = "negotiation", "Negotiation"
        WON = "won", "Closed won"
        LOST = "lost", "Closed lost"

    number = models.PositiveBigIntegerField(unique=True, editable=False)
    name = models.CharField(max_length=200)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="opportunities"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="opportunities"
    )
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.PROSPECTING)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    close_date = models.DateField(null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_opportunities",
    )

    record_type = "opportunity"

    class Meta:
        ordering = ["-number"]
        verbose_name_plural = "opportunities"

    @property
    def reference(self) -> str:
        return f"{self.PREFIX}-{self.number}"

    def __str__(self) -> str:
        return f"{self.reference} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("crm:opportunity_detail", args=[self.pk])


RECORD_MODELS: dict[str, type[models.Model]] = {
    "account": Account,
    "contact": Contact,
    "lead": Lead,
    "ticket": Ticket,
    "opportunity": Opportunity,
}


class SignInThrottle(models.Model):
    """Failed sign-ins counted per account (the user name typed) and per client address;
    past a limit the account or the address is locked for a while, longer each time
    (crm/signin.py, docs/reliability.md C-26). Deleting a row unlocks."""

    class Kind(models.TextChoices):
        ACCOUNT = "account", "Account"
        ADDRESS = "address", "IP address"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    key = models.CharField(
        max_length=255, help_text="The user name typed (lower case), or the client's address."
    )
    failures = models.PositiveIntegerField(default=0, help_text="Since the last lock.")
    lockouts = models.PositiveIntegerField(
        default=0, help_text="Locks in a row; each one lasts twice as long as the one before."
    )
    last_failure_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sign-in lock"
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="crm_signin_throttle_unique")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}"


class SiteSettings(models.Model):
    """The one row (pk 1) of settings an administrator may override on the Site settings page
    (docs/product.md §8.1). Empty (None, "") means "as the environment says": crm/settings.py
    stays the default, and crm/selectors.py `site_settings` is the one reader of both."""

    mail_enabled = models.BooleanField(
        null=True,
        blank=True,
        help_text="Overrides RELAY_MAIL_ENABLED. Empty: the environment.",
    )
    purge_after_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Overrides RELAY_PURGE_AFTER_DAYS (0 keeps everything). Empty: the environment.",
    )
    default_from_email = models.CharField(
        max_length=320,
        blank=True,
        help_text="Overrides RELAY_DEFAULT_FROM_EMAIL. Empty: the environment.",
    )
    send_acknowledgements = models.BooleanField(
        null=True,
        blank=True,
        help_text="Overrides RELAY_SEND_ACKNOWLEDGEMENTS. Empty: the environment.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)
