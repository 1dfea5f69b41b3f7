"""The record timeline's mail (crm/timeline.py, docs/product.md §7.4): what the record's Email
tab lists, with the same privacy rules (inbox/selectors/records.py), newest first. Two queries
whatever the number of messages: the page and its recipients."""

from __future__ import annotations

from django.db.models.functions import Coalesce

from crm.timeline import Cursor, Entry, register_source

from .selectors.records import annotate_for_display, attach_recipients, messages_for_record

KIND = "mail"


def mail_entries(*, user, record_type: str, record_id: int, before: Cursor | None, limit: int):
    messages = messages_for_record(
        user=user, record_type=record_type, record_id=record_id
    ).annotate(timeline_at=Coalesce("date", "created_at"))
    if before is not None:
        messages = messages.filter(before.older(KIND, "timeline_at"))
    messages = list(messages.order_by("-timeline_at", "-pk")[:limit])
    attach_recipients(messages)
    annotate_for_display(messages)
    return [Entry(m.timeline_at, KIND, m.pk, "inbox/_timeline_mail.html", m) for m in messages]


def register() -> None:
    register_source(KIND, mail_entries)
