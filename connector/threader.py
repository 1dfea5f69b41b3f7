"""Conversation threads within one mailbox, from In-Reply-To and References (RFC 5322 §3.6.4).

Message-IDs only group messages; they never decide identity. A reply whose parent we have
joins the parent's thread; otherwise a new thread starts. Subjects are not used to join
threads: two strangers both writing "Invoice" are not one conversation."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db.models import Count, Max

from inbox.models import Message, Thread

_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|tr|antw|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.I)


def base_subject(subject: str) -> str:
    return _PREFIX.sub("", subject or "").strip()[:500]


def assign_threads(*, mailbox_id: int, messages: Sequence[Message]) -> None:
    """Give each new message a thread. One query for the parents of the whole batch."""
    wanted: set[str] = set()
    for message in messages:
        wanted.update(_parent_ids(message))
    known: dict[str, int] = {}
    if wanted:
        for message_id, thread_id in Message.objects.filter(
            mailbox_id=mailbox_id, message_id__in=wanted, thread__isnull=False
        ).values_list("message_id", "thread_id"):
            known.setdefault(message_id, thread_id)

    touched: set[int] = set()
    for message in sorted(messages, key=lambda m: (m.date is None, m.date, m.pk)):
        thread_id = next((known[p] for p in _parent_ids(message) if p in known), None)
        if thread_id is None:
            thread = Thread.objects.create(
                mailbox_id=mailbox_id, subject=base_subject(message.subject)
            )
            thread_id = thread.pk
        message.thread_id = thread_id
        if message.message_id:
            known.setdefault(message.message_id, thread_id)
        touched.add(thread_id)
    Message.objects.bulk_update(messages, ["thread"])
    refresh_threads(thread_ids=touched)


def refresh_threads(*, thread_ids: set[int]) -> None:
    if not thread_ids:
        return
    stats = (
        Message.objects.filter(thread_id__in=thread_ids)
        .values("thread_id")
        .annotate(last=Max("date"), count=Count("id"))
    )
    threads = []
    for row in stats:
        threads.append(
            Thread(pk=row["thread_id"], last_message_at=row["last"], message_count=row["count"])
        )
    Thread.objects.bulk_update(threads, ["last_message_at", "message_count"])


def _parent_ids(message: Message) -> list[str]:
    ids = [message.in_reply_to] if message.in_reply_to else []
    ids.extend(reversed(message.references.split()))
    return [i for i in ids if i and i != message.message_id]
