"""Triage: mail the rules could not place, and messages held because they could not be stored."""

from __future__ import annotations

from django.db.models import (
    QuerySet,
)

from ..models import (
    LedgerEntry,
    TriageEntry,
)
from ..permissions import readable_mailbox_ids


def triage_entries(*, user) -> QuerySet[TriageEntry]:
    """Open triage entries of messages the user may read, newest first, one row per entry
    (a message with two reasons shows both), with the message and its mailbox."""
    return (
        TriageEntry.objects.filter(
            resolved_at__isnull=True, message__mailbox__in=readable_mailbox_ids(user)
        )
        .select_related("message", "message__mailbox")
        .order_by("-created_at", "-pk")
    )


def held_entries(*, user) -> QuerySet[LedgerEntry]:
    """Messages the sync could not store or read (held, or failed and waiting for a retry),
    of the mailboxes the user may read."""
    return (
        LedgerEntry.objects.filter(
            outcome__in=[LedgerEntry.Outcome.HELD, LedgerEntry.Outcome.FAILED],
            mailbox__in=readable_mailbox_ids(user),
        )
        .select_related("folder", "mailbox", "message")
        .order_by("-updated_at", "-pk")
    )
