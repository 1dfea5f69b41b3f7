"""Qualify: people file mail by hand, link it to a record, unlink it, or create the contact or
lead it should be on. A person's filing is marked as theirs and never undone by the rules.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..models import Filing, TriageEntry


def _record_field(record) -> str:

    record_type = getattr(record, "record_type", "")
    if record_type not in Filing.RECORD_FIELDS or record.pk is None:
        raise ValidationError("Pick an account, contact, lead, ticket or opportunity.")
    return record_type


@transaction.atomic
def message_link(*, user, message, record, evidence: str = ""):
    """File `message` on `record` by hand (the caller checked that `user` may read it). A
    filing the person or automation made before is taken over, an unlinked one relinked: the
    person's word is the last one. Open triage entries of the message are resolved."""

    record_type = _record_field(record)
    filing, created = Filing.objects.select_for_update().get_or_create(
        message=message,
        **{record_type: record},
        defaults={
            "record_type": record_type,
            "rule": Filing.Rule.MANUAL,
            "by_person": user,
            "evidence": evidence or "Filed by hand",
        },
    )
    if not created and (filing.unlinked_at is not None or filing.by_person_id is None):
        filing.unlinked_at = None
        filing.unlinked_by = None
        filing.rule = Filing.Rule.MANUAL
        filing.by_person = user
        filing.evidence = evidence or "Filed by hand"
        filing.save(update_fields=["unlinked_at", "unlinked_by", "rule", "by_person", "evidence"])
    TriageEntry.objects.filter(message=message, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )
    return filing


@transaction.atomic
def message_unlink(*, user, filing):
    """Take a message off a record. The row stays (unlinked_at/unlinked_by), so automation
    never files the message there again and the history shows who did it."""

    filing = Filing.objects.select_for_update().get(pk=filing.pk)
    if filing.unlinked_at is None:
        filing.unlinked_at = timezone.now()
        filing.unlinked_by = user
        filing.save(update_fields=["unlinked_at", "unlinked_by"])
    return filing


@transaction.atomic
def message_unlink_undo(*, user, filing):
    """Undo an unlink: the filing is back as it was, with its rule and evidence (a person's
    Link would make it theirs). Nothing happens to a filing that is not unlinked."""

    filing = Filing.objects.select_for_update().get(pk=filing.pk)
    if filing.unlinked_at is not None:
        filing.unlinked_at = None
        filing.unlinked_by = None
        filing.save(update_fields=["unlinked_at", "unlinked_by"])
    return filing


def conversation_unlink(*, user, filing, messages) -> int:
    """Take the messages of `messages` (a conversation's, those the caller checked `user` may
    read) off `filing`'s record, as message_unlink does for one (docs/product.md §7.12).
    Returns how many filings were unlinked."""

    record_field = f"{filing.record_type}_id"
    return (
        Filing.objects.select_for_update()
        .filter(
            message__in=messages,
            unlinked_at__isnull=True,
            record_type=filing.record_type,
            **{record_field: getattr(filing, record_field)},
        )
        .update(unlinked_at=timezone.now(), unlinked_by=user)
    )


@transaction.atomic
def conversation_unlink_undo(*, user, filing, messages) -> int:
    """Undo of conversation_unlink: the filings that one action took off the record (same
    moment, same person, as `filing`'s) are back as they were, rule and evidence included;
    filings unlinked before, by anyone, stay unlinked. Returns how many came back."""

    filing = Filing.objects.get(pk=filing.pk)
    if filing.unlinked_at is None:
        return 0
    record_field = f"{filing.record_type}_id"
    return (
        Filing.objects.select_for_update()
        .filter(
            message__in=messages,
            unlinked_at=filing.unlinked_at,
            unlinked_by=filing.unlinked_by_id,
            record_type=filing.record_type,
            **{record_field: getattr(filing, record_field)},
        )
        .update(unlinked_at=None, unlinked_by=None)
    )


@transaction.atomic
def message_qualify(*, user, message, record=None, create: str = "", **fields):
    """Qualify: link `message` to `record`, or create a contact or lead from its sender
    (`create="contact"` / `"lead"`, with optional name fields and, for contacts, `account`)
    and link it. Returns the filing."""
    from crm import services as crm_services

    if record is None:
        if not message.from_address:
            raise ValidationError("This message has no sender address to create a record from.")
        existing = _existing_with_address(create, message.from_address)
        if existing is not None:
            # A second contact with the same address would split its mail in two: file on the
            # one there is, and say so (docs/product.md §4.6).
            filing = message_link(user=user, message=message, record=existing)
            filing.instead_of_creating = True
            return filing
        name = (message.from_name or "").strip()
        first, _, last = name.rpartition(" ")
        fields.setdefault("first_name", (first or last)[:100])
        fields.setdefault("last_name", (last if first else "")[:100])
        if create == "contact":
            record = crm_services.contact_create(emails=[message.from_address], **fields)
        elif create == "lead":
            record = crm_services.lead_create(emails=[message.from_address], **fields)
        else:
            raise ValidationError("Pick a record, or create a contact or a lead.")
    return message_link(user=user, message=message, record=record)


def _existing_with_address(create: str, address: str):
    """The earliest contact (or lead) that already has this address, if any."""
    from crm.models import Contact, Lead
    from crm.normalize import normalize_email

    try:
        address = normalize_email(address)
    except ValidationError:
        return None  # creating will name the bad address
    if create == "contact":
        return Contact.objects.filter(emails__email=address).order_by("pk").first()
    if create == "lead":
        return Lead.objects.filter(emails__email=address).order_by("pk").first()
    return None
