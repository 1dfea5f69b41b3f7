"""Selectors that read mail for the pages. Every one starts from inbox.permissions, so a
message from a mailbox the viewer may not read never reaches a template."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery

from crm.models import RECORD_MODELS

from .models import Filing, Message
from .permissions import readable_messages


def messages_for_record(*, user, record_type: str, record_id: int) -> QuerySet[Message]:
    """Mail filed on one record (active filings only: an unlinked filing is history), from the
    mailboxes `user` may read, newest first, one entry per message.

    A message is selected through Exists() rather than joined to its filings, so it is one row
    whatever the number of filings; the filing's rule and whether a person made it come along
    as annotations. The queryset is lazy: the page slices it, in a fixed number of queries."""
    if record_type not in RECORD_MODELS:
        raise ValueError(f"Unknown record type {record_type!r}")
    filings = Filing.objects.filter(
        message=OuterRef("pk"),
        record_type=record_type,
        unlinked_at__isnull=True,
        **{f"{record_type}_id": record_id},
    ).order_by("created_at", "pk")
    return (
        readable_messages(user)
        .filter(Exists(filings))
        .annotate(
            filing_rule=Subquery(filings.values("rule")[:1]),
            filed_by_person=Subquery(filings.values("by_person_id")[:1]),
        )
        .select_related("mailbox")
        .order_by(F("date").desc(nulls_last=True), "-pk")
    )
