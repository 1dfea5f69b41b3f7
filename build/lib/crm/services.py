"""Services that write CRM records. Keyword-only and transactional: a service either does all of
its work or none (bad input raises ValidationError before anything is saved)."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import (
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Counter,
    Lead,
    LeadEmail,
    Opportunity,
    StaffEmail,
    Ticket,
)
from .normalize import normalize_domain, normalize_email
from .signals import addresses_added

FIRST_NUMBER = {"ticket": 1000, "opportunity": 1}


def next_number(*, series: str) -> int:
    """The next number of a series, taken inside the caller's transaction."""
    with transaction.atomic():
        updated = Counter.objects.filter(name=series).update(value=F("value") + 1)
        if not updated:
            Counter.objects.get_or_create(name=series, defaults={"value": FIRST_NUMBER[series]})
            Counter.objects.filter(name=series).update(value=F("value") + 1)
        return Counter.objects.get(name=series).value - 1


def normalize_emails(values: Iterable[str]) -> list[str]:
    """Normalise and de-duplicate a list of addresses; one ValidationError naming every bad one."""
    seen: dict[str, None] = {}
    errors = []
    for value in values:
        if not value or not value.strip():
            continue
        try:
            seen.setdefault(normalize_email(value), None)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    return list(seen)


def normalize_domains(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    errors = []
    for value in values:
        if not value or not value.strip():
            continue
        try:
            seen.setdefault(normalize_domain(value), None)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    return list(seen)


def _replace_children(manager, model, field: str, values: list[str], **parent) -> list[str]:
    existing = set(manager.values_list(field, flat=True))
    wanted = set(values)
    manager.filter(**{f"{field}__in": existing - wanted}).delete()
    added = [v for v in values if v not in existing]
    model.objects.bulk_create([model(**parent, **{field: v}) for v in added])
    return added


def _announce(record, *, emails: list[str] = (), domains: list[str] = ()) -> None:
    """Tell listeners (mail filing) that a record gained addresses, so past mail is filed."""
    if emails or domains:
        addresses_added.send(
            sender=type(record),
            record_type=record.record_type,
            record_id=record.pk,
            emails=list(emails),
            domains=list(domains),
        )


@transaction.atomic
def contact_set_emails(*, contact: Contact, emails: Iterable[str]) -> None:
    added = _replace_children(
        contact.emails, ContactEmail, "email", normalize_emails(emails), contact=contact
    )
    _announce(contact, emails=added)


@transaction.atomic
def lead_set_emails(*, lead: Lead, emails: Iterable[str]) -> None:
    added = _replace_children(lead.emails, LeadEmail, "email", normalize_emails(emails), lead=lead)
    _announce(lead, emails=added)


@transaction.atomic
def account_set_domains(*, account: Account, domains: Iterable[str]) -> None:
    added = _replace_children(
        account.domains, AccountDomain, "domain", normalize_domains(domains), account=account
    )
    _announce(account, domains=added)


@transaction.atomic
def staff_set_emails(*, user, emails: Iterable[str]) -> None:
    values = normalize_emails(emails)
    taken = StaffEmail.objects.filter(email__in=values).exclude(user=user)
    if taken.exists():
        raise ValidationError([f"{s.email} already belongs to another user." for s in taken])
    _replace_children(user.staff_emails, StaffEmail, "email", values, user=user)


@transaction.atomic
def contact_create(*, emails: Iterable[str] = (), **fields) -> Contact:
    values = normalize_emails(emails)
    contact = Contact(**fields)
    contact.full_clean()
    contact.save()
    contact_set_emails(contact=contact, emails=values)
    return contact


@transaction.atomic
def lead_create(*, emails: Iterable[str] = (), **fields) -> Lead:
    values = normalize_emails(emails)
    lead = Lead(**fields)
    lead.full_clean()
    lead.save()
    lead_set_emails(lead=lead, emails=values)
    return lead


@transaction.atomic
def account_create(*, domains: Iterable[str] = (), **fields) -> Account:
    values = normalize_domains(domains)
    account = Account(**fields)
    account.full_clean()
    account.save()
    account_set_domains(account=account, domains=values)
    return account


@transaction.atomic
def ticket_create(**fields) -> Ticket:
    ticket = Ticket(**fields)
    ticket.number = next_number(series="ticket")
    ticket.full_clean()
    ticket.save()
    return ticket


@transaction.atomic
def opportunity_create(**fields) -> Opportunity:
    opportunity = Opportunity(**fields)
    opportunity.number = next_number(series="opportunity")
    opportunity.full_clean()
    opportunity.save()
    return opportunity


@transaction.atomic
def lead_convert(
    *, lead: Lead, account: Account | None = None, create_account: bool = True
) -> Contact:
    """Turn a lead into a contact (with its addresses) and, by default, an account named after
    its company (reusing `account` when given). The lead keeps pointing at what it became."""
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    if lead.is_converted:
        raise ValidationError("This lead has already been converted.")
    if account is None and create_account and lead.company_name.strip():
        account = Account.objects.filter(name__iexact=lead.company_name.strip()).first()
        if account is None:
            account = account_create(name=lead.company_name.strip())
    contact = contact_create(
        first_name=lead.first_name,
        last_name=lead.last_name,
        phone=lead.phone,
        account=account,
        emails=list(lead.emails.values_list("email", flat=True)),
    )
    lead.status = Lead.Status.CONVERTED
    lead.converted_contact = contact
    lead.converted_account = account
    lead.converted_at = timezone.now()
    lead.save(
        update_fields=[
            "status",
            "converted_contact",
            "converted_account",
            "converted_at",
            "updated_at",
        ]
    )
    return contact
