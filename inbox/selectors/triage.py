"""Triage: mail the rules could not place, and messages held because they could not be stored."""

from __future__ import annotations

from django.db.models import (
    F,
    Prefetch,
    QuerySet,
)

from ..models import (
    LedgerEntry,
    MessageAddress,
    TriageEntry,
)
from ..permissions import readable_mailbox_ids


def triage_entries(*, user) -> QuerySet[TriageEntry]:
    """Open triage entries of messages the user may read, newest mail first (docs/product.md
    §4.7), one row per entry (a message with two reasons shows both), with the message, its
    mailbox and its To line: three queries for a page, whatever its size."""
    return (
        TriageEntry.objects.filter(
            resolved_at__isnull=True, message__mailbox__in=readable_mailbox_ids(user)
        )
        .select_related("message", "message__mailbox")
        # The bodies can be megabytes each; the list shows the stored snippet.
        .defer("message__text_body", "message__html_body", "message__headers")
        .prefetch_related(
            Prefetch(
                "message__addresses",
                queryset=MessageAddress.objects.filter(role=MessageAddress.Role.TO).order_by(
                    "position"
                ),
                to_attr="to_addresses",
            )
        )
        .order_by(F("message__date").desc(nulls_last=True), "-created_at", "-pk")
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
