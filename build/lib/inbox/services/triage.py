"""Triage: what exclusion patterns would keep out of filing, shown before they are saved."""

from __future__ import annotations

from ..models import ExclusionPattern, Message


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
