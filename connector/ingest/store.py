"""Store fetched messages idempotently, one batch per transaction.

For each UID the sync fetched, exactly one ledger outcome is written in the same transaction as
the message, its location and the folder cursor, so a crash anywhere leaves either all of a
batch or none of it (docs/reliability.md S-11, S-18, I-01):
- stored: a new message (new content for this mailbox),
- duplicate: content the mailbox already has (a COPY, a second delivery, a move seen from the
  other side): one Message, one more Location (S-05, S-06),
- failed: could not be read or stored; the raw bytes are kept and the UID retried by later syncs.
  A transient failure (the server or the network lost it, a truncated download, storage full)
  is retried for as long as it lasts, with a growing back-off (`next_retry_at`); only a failed
  parse counts towards holding (docs/reliability.md S-29),
- held: its parse failed MAX_ATTEMPTS times; shown on the health page, no longer retried
  automatically.
Identity is the SHA-256 of the raw bytes within the mailbox, never the Message-ID (S-08, S-09).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from connector.ingest import bulk
from connector.ingest.mime import ParsedMessage, parse_message
from connector.ingest.pool import PreparedBatch
from connector.ingest.prepare import Fetched, Prepared
from connector.ingest.signals import messages_stored
from connector.ingest.threads import plan_threads, refresh_threads
from inbox.models import (
    Attachment,
    AttachmentBlob,
    Folder,
    LedgerEntry,
    Location,
    Mailbox,
    Message,
    MessageAddress,
)
from inbox.services.conversations import note_new_mail

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
# Back-off of a transient failure: retried by the next syncs for the first MAX_ATTEMPTS
# attempts (a dropped line or a brief outage heals at once), then after RETRY_FIRST_DELAY,
# doubling up to RETRY_MAX_DELAY: a long outage costs one fetch an hour per message.
RETRY_FIRST_DELAY = timedelta(minutes=5)
RETRY_MAX_DELAY = timedelta(hours=1)


def retry_delay(attempts: int) -> timedelta:
    """How long a message waits after its `attempts`-th transient failure."""
    if attempts < MAX_ATTEMPTS:
        return timedelta(0)
    return min(RETRY_FIRST_DELAY * 2 ** min(attempts - MAX_ATTEMPTS, 16), RETRY_MAX_DELAY)


class Lease(Protocol):
    """The sync's hold on its mailbox (connector/sync/lease.py): checked inside each batch's
    transaction, so a worker that lost it writes nothing (docs/reliability.md I-03)."""

    def check(self) -> None: ...


@dataclass
class BatchResult:
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    held: int = 0
    skipped: int = 0
    unchanged: int = 0
    new_message_ids: list[int] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        for name in ("stored", "duplicate", "failed", "held", "skipped", "unchanged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.new_message_ids.extend(other.new_message_ids)


def store_batch(
    *,
    folder: Folder,
    uidvalidity: int,
    items: Sequence[Fetched],
    lease: Lease | None,
    advance_cursor: bool = True,
    initial: bool = False,
    parse: Callable[..., ParsedMessage] = parse_message,
    prepared: PreparedBatch | None = None,
) -> BatchResult:
    """Store one fetched batch and move the folder cursor past it, all in one transaction.
    `prepared` is the batch already started by `PreparedBatch(items)` (the sync starts it while
    the previous batch is being stored); files are written before the transaction begins."""
    mailbox_id = folder.mailbox_id
    prepared = (prepared or PreparedBatch(mailbox_id, items, parse)).result()
    result = BatchResult()
    with transaction.atomic():
        if lease is not None:
            lease.check()
        _store(folder, uidvalidity, prepared, result, initial=initial)
        if advance_cursor and items:
            top = max(item.uid for item in items)
            Folder.objects.filter(pk=folder.pk, last_uid__lt=top).update(last_uid=top)
            folder.last_uid = max(folder.last_uid, top)
        if result.new_message_ids:
            new_ids = list(result.new_message_ids)
            transaction.on_commit(
                lambda: messages_stored.send(
                    sender=Message, mailbox_id=mailbox_id, message_ids=new_ids, initial=initial
                )
            )
    return result


def _store(
    folder: Folder,
    uidvalidity: int,
    prepared: list[Prepared],
    result: BatchResult,
    *,
    initial: bool = False,
):
    mailbox_id = folder.mailbox_id
    uids = [p.item.uid for p in prepared]
    ledger = {
        e.uid: e
        for e in LedgerEntry.objects.filter(folder=folder, uidvalidity=uidvalidity, uid__in=uids)
    }
    located = dict(
        Location.objects.filter(folder=folder, uidvalidity=uidvalidity, uid__in=uids).values_list(
            "uid", "message_id"
        )
    )
    digests = {p.digest for p in prepared if p.parsed is not None}
    existing = dict(
        Message.objects.filter(mailbox_id=mailbox_id, sha256__in=digests).values_list(
            "sha256", "pk"
        )
    )

    new_messages: dict[str, tuple[Message, Prepared]] = {}
    for p in prepared:
        if p.parsed is not None and p.digest not in existing and p.digest not in new_messages:
            new_messages[p.digest] = (message_from(mailbox_id, p), p)
    # Threads are chosen before the insert, so each message goes in with its thread_id.
    to_create = [m for m, _ in new_messages.values()]
    touched_threads = (
        plan_threads(mailbox_id=mailbox_id, messages=to_create) if to_create else set()
    )
    created = _insert_messages(to_create)
    for message in created:
        existing[message.sha256] = message.pk
    store_parts(new_messages.values())
    refresh_threads(thread_ids=touched_threads)
    if created:
        # The conversations' state follows new mail here, once per message ever: a message
        # found again is a duplicate and never reaches this (docs/reliability.md S-32).
        sent = folder.special_use == Folder.SpecialUse.SENT
        for message in created:
            message.in_sent_folder = sent
        note_new_mail(
            messages=created,
            mailbox=Mailbox.objects.get(pk=mailbox_id),
            # Imported files (.mbox/.eml) are archives, history as a first sync's mail is.
            history=initial or folder.is_local,
        )
    result.new_message_ids.extend(m.pk for m in created)
    created_digests = {m.sha256 for m in created}

    locations, ledger_rows, seen_state = [], [], {}
    now = timezone.now()
    for p in prepared:
        item = p.item
        entry = ledger.get(item.uid) or LedgerEntry(
            mailbox_id=mailbox_id, folder=folder, uidvalidity=uidvalidity, uid=item.uid
        )
        entry.next_retry_at = None
        if getattr(item, "gone", False):
            entry.outcome, entry.reason = LedgerEntry.Outcome.SKIPPED, item.error
            result.skipped += 1
        elif p.parsed is None:
            entry.attempts += 1
            entry.error = p.error
            entry.raw_file = p.raw_file or entry.raw_file
            if p.transient:
                # Nothing is wrong with the message: it waits and is tried again, however
                # long the fault lasts (docs/reliability.md S-29).
                entry.outcome, entry.reason = LedgerEntry.Outcome.FAILED, "waiting to retry"
                entry.next_retry_at = now + retry_delay(entry.attempts)
                result.failed += 1
            else:
                entry.parse_failures += 1
                if entry.parse_failures >= MAX_ATTEMPTS:
                    entry.outcome, entry.reason = LedgerEntry.Outcome.HELD, "failed repeatedly"
                    result.held += 1
                else:
                    entry.outcome, entry.reason = LedgerEntry.Outcome.FAILED, "will retry"
                    result.failed += 1
            log.warning(
                "message failed mailbox=%s folder=%s uid=%s attempts=%s error=%s",
                mailbox_id,
                folder.pk,
                item.uid,
                entry.attempts,
                p.error,
            )
        else:
            message_id = existing[p.digest]
            if item.uid in located:
                result.unchanged += 1
                continue
            if p.unreadable:
                entry.outcome, entry.reason = LedgerEntry.Outcome.HELD, "unreadable message"
                entry.attempts += 1
                entry.parse_failures += 1
                result.held += 1
            elif p.digest in created_digests and message_id not in seen_state:
                entry.outcome, entry.reason = LedgerEntry.Outcome.STORED, ""
                result.stored += 1
            else:
                entry.outcome = LedgerEntry.Outcome.DUPLICATE
                entry.reason = "same content already in this mailbox"
                result.duplicate += 1
            entry.message_id = message_id
            entry.error = p.unreadable
            locations.append(
                Location(
                    message_id=message_id,
                    folder=folder,
                    uidvalidity=uidvalidity,
                    uid=item.uid,
                    flags=sorted(item.flags),
                    modseq=item.modseq,
                )
            )
            seen_state[message_id] = item.flags
        entry.updated_at = now
        ledger_rows.append(entry)

    _insert_locations_and_ledger(locations, ledger_rows)
    # Messages created above went in with on_server, seen and flagged right; only the ones
    # this batch found again (duplicates, re-attached after a UIDVALIDITY reset) need updates,
    # and a new one only when another copy in this batch carries \\Seen or \\Flagged.
    fresh = {m.pk: m for m in created}
    stale = {
        pk: flags
        for pk, flags in seen_state.items()
        if pk not in fresh
        or ("\\Seen" in flags and not fresh[pk].seen)
        or ("\\Flagged" in flags and not fresh[pk].flagged)
    }
    if stale:
        Message.objects.filter(pk__in=stale).update(on_server=True)
        _apply_flags(stale)


LEDGER_UPDATE_FIELDS = [
    "outcome",
    "reason",
    "error",
    "attempts",
    "parse_failures",
    "next_retry_at",
    "raw_file",
    "message",
    "updated_at",
]


def _insert_locations_and_ledger(locations: list[Location], ledger_rows: list[LedgerEntry]):
    """New locations (a location already there stays as it is) and the ledger rows, new or
    known, each in one statement on PostgreSQL (bulk.upsert)."""
    if not bulk.upsert(Location, locations, unique_fields=["folder", "uidvalidity", "uid"]):
        Location.objects.bulk_create(locations, ignore_conflicts=True)
    if bulk.upsert(
        LedgerEntry,
        ledger_rows,
        unique_fields=["folder", "uidvalidity", "uid"],
        update_fields=LEDGER_UPDATE_FIELDS,
    ):
        return
    # Split before the insert: bulk_create sets the new rows' pk, and updating them again
    # (one CASE per field and row) cost more than the whole rest of the batch.
    known_rows = [e for e in ledger_rows if e.pk is not None]
    LedgerEntry.objects.bulk_create(
        [e for e in ledger_rows if e.pk is None],
        update_conflicts=True,
        unique_fields=["folder", "uidvalidity", "uid"],
        update_fields=LEDGER_UPDATE_FIELDS,
    )
    LedgerEntry.objects.bulk_update(known_rows, LEDGER_UPDATE_FIELDS)


def _apply_flags(flags_by_message: dict[int, Sequence[str]]) -> None:
    seen = [pk for pk, flags in flags_by_message.items() if "\\Seen" in flags]
    flagged = [pk for pk, flags in flags_by_message.items() if "\\Flagged" in flags]
    Message.objects.filter(pk__in=seen).update(seen=True)
    Message.objects.filter(pk__in=flagged).update(flagged=True)


def message_from(mailbox_id: int, p: Prepared) -> Message:
    parsed = p.parsed
    return Message(
        mailbox_id=mailbox_id,
        sha256=p.digest,
        size=p.size,
        raw_file=p.raw_file,
        message_id=parsed.message_id[:998],
        in_reply_to=(parsed.in_reply_to or "")[:998],
        references=" ".join(parsed.references)[:20000],
        subject=parsed.subject[:1000],
        from_name=parsed.from_name[:500],
        from_address=(parsed.from_address or "")[:320],
        date=parsed.date or p.item.internal_date,
        internal_date=p.item.internal_date,
        text_body=parsed.text_body,
        html_body=parsed.html_body,
        snippet=parsed.snippet[:300],
        headers=parsed.headers,
        has_attachments=any(not a.is_inline for a in parsed.attachments),
        is_auto_reply=parsed.is_auto_reply,
        is_bounce=parsed.is_bounce,
        is_list=parsed.is_list,
        too_large=bool(getattr(parsed, "too_large", False)),
        parse_defects=list(parsed.defects)[:50],
        seen="\\Seen" in p.item.flags,
        flagged="\\Flagged" in p.item.flags,
    )


def _insert_messages(messages: list[Message]) -> list[Message]:
    return bulk.insert(Message, messages)


def _insert_addresses(rows: list[tuple]) -> None:
    if not bulk.can_copy(len(rows)):
        MessageAddress.objects.bulk_create(
            MessageAddress(message_id=m, role=r, address=a, name=n, position=p)
            for m, r, a, n, p in rows
        )
        return
    bulk.copy_rows(MessageAddress, ["message_id", "role", "address", "name", "position"], rows)


def _addresses(parsed: ParsedMessage):
    def as_list(value):
        if not value:
            return []
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str | None):
            return [value]
        return list(value)

    if parsed.from_address:
        yield MessageAddress.Role.FROM, [(parsed.from_name, parsed.from_address)]
    yield MessageAddress.Role.SENDER, as_list(getattr(parsed, "sender", None))
    yield MessageAddress.Role.REPLY_TO, as_list(parsed.reply_to)
    yield MessageAddress.Role.TO, as_list(parsed.to)
    yield MessageAddress.Role.CC, as_list(parsed.cc)
    yield MessageAddress.Role.BCC, as_list(parsed.bcc)


def store_parts(new_messages) -> None:
    addresses, attachments, blob_rows = [], [], {}
    for message, p in new_messages:
        for role, pairs in _addresses(p.parsed):
            for position, (name, address) in enumerate(pairs):
                if address:
                    addresses.append(
                        (message.pk, role, address[:320], (name or "")[:500], position)
                    )
        for digest, path, size in p.blobs:
            blob_rows[digest] = AttachmentBlob(sha256=digest, size=size, file=path)
    _insert_addresses(addresses)
    if blob_rows:
        blobs = list(blob_rows.values())
        if not bulk.upsert(AttachmentBlob, blobs, unique_fields=["sha256"]):
            AttachmentBlob.objects.bulk_create(blobs, ignore_conflicts=True)
        blob_ids = dict(
            AttachmentBlob.objects.filter(sha256__in=blob_rows).values_list("sha256", "pk")
        )
        for message, p in new_messages:
            for position, (attachment, (digest, _path, _size)) in enumerate(
                zip(p.parsed.attachments, p.blobs, strict=True)
            ):
                attachments.append(
                    Attachment(
                        message=message,
                        blob_id=blob_ids[digest],
                        filename=(attachment.filename or "")[:500],
                        content_type=(attachment.content_type or "application/octet-stream")[:200],
                        content_id=(attachment.content_id or "")[:500],
                        is_inline=attachment.is_inline,
                        position=position,
                    )
                )
        bulk.insert(Attachment, attachments)


def record_skipped(
    *, folder: Folder, uidvalidity: int, uids: Sequence[int], reason: str, lease: Lease | None
) -> None:
    """Ledger rows for UIDs deliberately not stored (e.g. older than the sync-from date)."""
    now = timezone.now()
    with transaction.atomic():
        if lease is not None:
            lease.check()
        for start in range(0, len(uids), 5000):
            LedgerEntry.objects.bulk_create(
                [
                    LedgerEntry(
                        mailbox_id=folder.mailbox_id,
                        folder=folder,
                        uidvalidity=uidvalidity,
                        uid=uid,
                        outcome=LedgerEntry.Outcome.SKIPPED,
                        reason=reason,
                        updated_at=now,
                    )
                    for uid in uids[start : start + 5000]
                ],
                update_conflicts=True,
                unique_fields=["folder", "uidvalidity", "uid"],
                update_fields=["outcome", "reason", "next_retry_at", "updated_at"],
            )
