"""Conversation threads within one mailbox, from In-Reply-To and References (RFC 5322 §3.6.4).

Message-IDs only group messages; they never decide identity. A reply whose parent we have
joins the parent's thread; otherwise a new thread starts. Subjects are not used to join
threads: two strangers both writing "Invoice" are not one conversation."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    F,
    Max,
    OuterRef,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from connector.ingest import bulk
from inbox.models import Draft, Message, Thread, ThreadEvent, ThreadRead
from inbox.signals import threads_merged

_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|tr|antw|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.I)


def base_subject(subject: str) -> str:
    return _PREFIX.sub("", subject or "").strip()[:500]


def assign_threads(*, mailbox_id: int, messages: Sequence[Message]) -> None:
    """Give each new message a thread. One query for the parents of the whole batch.

    `messages` may be unsaved: then each gets its `thread_id` before the caller inserts it,
    which saves the initial sync an UPDATE of every message it stores. Saved ones are updated
    here. Either way the threads' counts and last dates are refreshed once the messages are in
    the database: by `refresh_threads()` for threads that existed, by the caller's insert for
    new threads, whose figures come from this batch alone and are written as they are created.
    """
    existing = plan_threads(mailbox_id=mailbox_id, messages=messages)
    saved = [m for m in messages if m.pk is not None]
    if saved:
        Message.objects.bulk_update(saved, ["thread"])
    refresh_threads(thread_ids=existing)


def plan_threads(*, mailbox_id: int, messages: Sequence[Message]) -> set[int]:
    """Set `thread_id` on each message, creating the new threads (with their counts) in one
    INSERT; returns the ids of threads that existed before and gained messages."""
    wanted: set[str] = set()
    for message in messages:
        wanted.update(_parent_ids(message))
    known: dict[str, int | Thread] = {}
    if wanted:
        for message_id, thread_id in Message.objects.filter(
            mailbox_id=mailbox_id, message_id__in=wanted, thread__isnull=False
        ).values_list("message_id", "thread_id"):
            known.setdefault(message_id, thread_id)

    existing: set[int] = set()
    new_threads: dict[int, Thread] = {}  # id(thread) -> thread, in creation order
    chosen: list[tuple[Message, int | Thread]] = []
    # Oldest first, so a reply joins its parent's thread even when both arrive in one batch;
    # insertion order (the future primary key order) breaks ties, as the pk did before.
    order = sorted(
        enumerate(messages),
        key=lambda im: (im[1].date is None, im[1].date or 0, im[1].pk or 0, im[0]),
    )
    for _index, message in order:
        thread = next((known[p] for p in _parent_ids(message) if p in known), None)
        if thread is None:
            thread = Thread(
                mailbox_id=mailbox_id,
                subject=base_subject(message.subject),
                message_count=0,
                last_message_at=None,
            )
            new_threads[id(thread)] = thread
        if isinstance(thread, Thread):
            thread.message_count += 1
            if message.date is not None and (
                thread.last_message_at is None or message.date > thread.last_message_at
            ):
                thread.last_message_at = message.date
        else:
            existing.add(thread)
        if message.message_id:
            known.setdefault(message.message_id, thread)
        chosen.append((message, thread))
    bulk.insert(Thread, list(new_threads.values()))
    for message, thread in chosen:
        message.thread_id = thread.pk if isinstance(thread, Thread) else thread
    return existing | _adopt_earlier_replies(mailbox_id=mailbox_id, messages=messages)


def _adopt_earlier_replies(*, mailbox_id: int, messages: Sequence[Message]) -> set[int]:
    """Replies can be stored before the message they answer: the sync takes Inbox before
    Sent, so a customer's answer arrives before our own message it replies to. When the
    parent comes, the replies' thread joins the parent's (one query to find them). Returns
    the threads that gained messages, for refresh_threads() to recount."""
    parents = {m.message_id: m.thread_id for m in messages if m.message_id and m.thread_id}
    if not parents:
        return set()
    # Every stored reply to a parent of this batch, whatever thread it is in: a reply's thread
    # may itself be the thread another message of this batch joined (a customer's answer to
    # our reply, in the same batch as the request both follow), and is merged all the same.
    orphans = sorted(
        (thread_id, parent)
        for thread_id, parent in Message.objects.filter(
            mailbox_id=mailbox_id, in_reply_to__in=parents
        ).values_list("thread_id", "in_reply_to")
        if thread_id is not None
    )
    moves: dict[int, int] = {}  # thread -> the thread it joins

    def final(thread_id: int) -> int:
        while thread_id in moves:
            thread_id = moves[thread_id]
        return thread_id

    for thread_id, parent in orphans:
        # Roots only, and never a move back into itself: the moves stay a forest, no cycle.
        source, target = final(thread_id), final(parents[parent])
        if source != target:
            moves[source] = target
    if not moves:
        return set()
    resolved = {source: final(source) for source in moves}
    # One UPDATE and one DELETE for the whole batch: the Sent folder of an initial sync brings
    # the parents of hundreds of earlier replies at once.
    _move_messages(resolved)
    for message in messages:  # not inserted yet (ingest) or just updated above
        message.thread_id = resolved.get(message.thread_id, message.thread_id)
    _delete_emptied(list(resolved), resolved)
    return set(resolved.values())


def _move_messages(resolved: dict[int, int]) -> None:
    if connection.vendor == "postgresql":
        # A join against the moves (a hash join), where the portable CASE with one WHEN per
        # moved thread costs a comparison per WHEN and row: 3x the time on an initial sync.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Message._meta.db_table} AS m SET thread_id = moves.target"
                " FROM unnest(%s::bigint[], %s::bigint[]) AS moves(source, target)"
                " WHERE m.thread_id = moves.source",
                [list(resolved), list(resolved.values())],
            )
        return
    Message.objects.filter(thread_id__in=resolved).update(
        thread_id=Case(
            *(When(thread_id=source, then=Value(target)) for source, target in resolved.items()),
            default=F("thread_id"),
            output_field=BigIntegerField(),
        )
    )


def _delete_emptied(thread_ids: list[int], resolved: dict[int, int] | None = None) -> None:
    """Delete threads whose messages all moved away. Their timeline events and drafts follow
    their messages to the thread they joined; read states are dropped (the joined conversation has
    news for everyone). Then no row refers to them, so no cascade is needed: a plain DELETE,
    without the collector's SELECT of the rows and UPDATE of their (absent) messages."""
    for source, target in (resolved or {}).items():
        ThreadEvent.objects.filter(thread_id=source).update(thread_id=target)
        # Drafts follow too (docs/product.md §5.5); one its author already has in the joined
        # conversation keeps the other's place, and this one stays a draft of its own, listed
        # under Drafts: nothing typed is lost.
        writing = Draft.objects.filter(thread_id=target, sent_entry__isnull=True)
        Draft.objects.filter(
            thread_id=source, sent_entry__isnull=True, user_id__in=writing.values("user_id")
        ).update(thread=None)
        Draft.objects.filter(thread_id=source).update(thread_id=target)
    if resolved:
        threads_merged.send(sender=Thread, moves=dict(resolved))
    ThreadRead.objects.filter(thread_id__in=thread_ids).delete()
    Draft.objects.filter(thread_id__in=thread_ids).update(thread=None)
    Thread.objects.filter(pk__in=thread_ids)._raw_delete(connection.alias)


def refresh_threads(*, thread_ids: set[int]) -> None:
    """Recount threads from their messages: one UPDATE, whatever their number."""
    if not thread_ids:
        return
    of_thread = Message.objects.filter(thread_id=OuterRef("pk")).order_by().values("thread_id")
    Thread.objects.filter(pk__in=thread_ids).update(
        last_message_at=Subquery(of_thread.annotate(last=Max("date")).values("last")),
        message_count=Coalesce(Subquery(of_thread.annotate(count=Count("id")).values("count")), 0),
    )


def _parent_ids(message: Message) -> list[str]:
    ids = [message.in_reply_to] if message.in_reply_to else []
    ids.extend(reversed(message.references.split()))
    return [i for i in ids if i and i != message.message_id]
