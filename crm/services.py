"""Services that write CRM records. Keyword-only and transactional: a service either does all of
its work or none (bad input raises ValidationError before anything is saved)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from smtplib import SMTPException

from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import selectors
from .models import (
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Counter,
    Lead,
    LeadEmail,
    Opportunity,
    SiteSettings,
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


# A staff address counts once its owner proved it (docs/reliability.md C-19): the link in the
# confirmation mail is signed (Django's SECRET_KEY), names the user and the row, and expires.
STAFF_CONFIRM_SALT = "relay.crm.staff-email-confirmation"
STAFF_CONFIRM_MAX_AGE = 3 * 24 * 3600


def staff_email_token(row: StaffEmail) -> str:
    return signing.dumps({"u": row.user_id, "r": row.pk, "e": row.email}, salt=STAFF_CONFIRM_SALT)


def _taken(user, values: list[str]) -> None:
    taken = StaffEmail.objects.filter(email__in=values, confirmed_at__isnull=False).exclude(
        user=user
    )
    if taken.exists():
        raise ValidationError([f"{s.email} already belongs to another user." for s in taken])


@transaction.atomic
def staff_set_emails(
    *, user, emails: Iterable[str], confirm_url: Callable[[str], str]
) -> list[str]:
    """A user's own list of addresses ("My addresses"). Addresses already confirmed stay so;
    each address still waiting (new ones included) is sent a confirmation mail with a link
    made by `confirm_url(token)`, and counts as staff only once its owner follows it
    (docs/reliability.md C-19). Returns the addresses waiting. All or nothing: when a mail
    cannot be sent, nothing is saved."""
    values = normalize_emails(emails)
    _taken(user, values)
    existing = {row.email: row for row in user.staff_emails.all()}
    user.staff_emails.exclude(email__in=values).delete()
    # Another user's unconfirmed claim gives way: whoever answers at the address owns it.
    StaffEmail.objects.filter(email__in=values, confirmed_at__isnull=True).exclude(
        user=user
    ).delete()
    waiting = []
    for email in values:
        row = existing.get(email) or StaffEmail.objects.create(user=user, email=email)
        if row.confirmed_at is None:
            waiting.append(row)
    for row in waiting:
        _send_confirmation(user, row, confirm_url(staff_email_token(row)))
    return [row.email for row in waiting]


def _send_confirmation(user, row: StaffEmail, url: str) -> None:
    name = user.get_full_name() or user.get_username()
    days = STAFF_CONFIRM_MAX_AGE // (24 * 3600)
    body = (
        f"{name} added {row.email} as one of their own addresses in Relay CRM. Mail from a "
        "confirmed address is filed as their staff mail.\n\n"
        f"If this is your address, open this link while signed in as {user.get_username()} "
        f"and confirm (it works for {days} days):\n\n{url}\n\n"
        "If it is not, ignore this message: the address stays unconfirmed.\n"
    )
    try:
        send_mail(
            "Confirm your address in Relay CRM",
            body,
            selectors.default_from_email(),  # the saved override, else the environment's
            [row.email],
            using="default",  # the system mailer (MAILERS in crm/settings.py)
        )
    except (SMTPException, OSError) as exc:
        raise ValidationError(
            f"The confirmation mail to {row.email} could not be sent ({type(exc).__name__}); "
            "nothing was saved. Try again later."
        ) from exc


@transaction.atomic
def staff_confirm_email(*, user, token: str) -> StaffEmail:
    """Follow a confirmation link, signed in as the user who added the address."""
    try:
        data = signing.loads(token, salt=STAFF_CONFIRM_SALT, max_age=STAFF_CONFIRM_MAX_AGE)
    except signing.SignatureExpired:
        raise ValidationError(
            "This confirmation link has expired. Save the address again on My addresses to "
            "get a new one."
        ) from None
    except signing.BadSignature:
        raise ValidationError("This confirmation link is not valid.") from None
    if data.get("u") != user.pk:
        raise ValidationError(
            "This link confirms an address for another user: sign in as that user to confirm it."
        )
    row = (
        StaffEmail.objects.select_for_update()
        .filter(pk=data.get("r"), user=user, email=data.get("e"))
        .first()
    )
    if row is None:
        raise ValidationError("This address is no longer on your list: nothing to confirm.")
    if row.confirmed_at is None:
        row.confirmed_at = timezone.now()
        row.save(update_fields=["confirmed_at"])
    return row


@transaction.atomic
def staff_set_confirmed_emails(*, user, emails: Iterable[str]) -> None:
    """An admin's (or the demo data's) list of a user's addresses: they count at once."""
    values = normalize_emails(emails)
    _taken(user, values)
    StaffEmail.objects.filter(email__in=values, confirmed_at__isnull=True).exclude(
        user=user
    ).delete()
    _replace_children(user.staff_emails, StaffEmail, "email", values, user=user)
    user.staff_emails.filter(confirmed_at__isnull=True).update(confirmed_at=timezone.now())


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


# --- site settings (docs/product.md §8.1) ---------------------------------------------------

SITE_SETTINGS_PERMISSION = "crm.change_sitesettings"


def can_change_site_settings(user) -> bool:
    return bool(user and user.is_active and user.has_perm(SITE_SETTINGS_PERMISSION))


@transaction.atomic
def site_settings_save(
    *,
    user,
    purge_after_days: int | None,
    default_from_email: str,
    send_acknowledgements: bool | None,
    mail_enabled: bool | None = None,
) -> SiteSettings:
    """Save the overrides of the Site settings page. None or "" means "as the environment
    says" (crm/settings.py). Bad input raises ValidationError and saves nothing."""
    import logging

    from django.core.exceptions import PermissionDenied

    if not can_change_site_settings(user):
        raise PermissionDenied("Only administrators change the site settings.")
    errors = {}
    if purge_after_days is not None and not 0 <= int(purge_after_days) <= 3650:
        errors["purge_after_days"] = "Between 0 (keep everything) and 3650 days."
    sender = (default_from_email or "").strip()
    if sender:
        try:
            sender = normalize_email(sender)
        except ValidationError:
            errors["default_from_email"] = "Enter a valid email address, like crm@example.com."
    if errors:
        raise ValidationError(errors)
    row = SiteSettings.objects.select_for_update().filter(pk=1).first() or SiteSettings()
    row.mail_enabled = mail_enabled
    row.purge_after_days = purge_after_days
    row.default_from_email = sender
    row.send_acknowledgements = send_acknowledgements
    row.updated_by = user
    row.save()
    logging.getLogger("relay.audit").warning(
        "site settings: mail_enabled=%s purge_after_days=%s default_from_email=%s "
        "send_acknowledgements=%s (empty: the environment) set by user=%s",
        mail_enabled,
        purge_after_days,
        sender or "",
        send_acknowledgements,
        user.pk,
    )
    return row
