"""Store fetched messages idempotently, one batch per transaction (SPEC 3).

For each UID the sync fetched, exactly one ledger outcome is written in the same transaction as
the message, its location and the folder cursor, so a crash anywhere leaves either all of a
batch or none of it (RELIABILITY S-11, S-18, I-01):
- stored: a new message (new content for this mailbox),
- duplicate: content the mailbox already has (a COPY, a second delivery, a move seen from the
  other side): one Message, one more Location (S-05, S-06),
- failed: could not be read or stored; the raw bytes are kept and the UID retried by later syncs,
- held: failed MAX_ATTEMPTS times; shown on the health page, no longer retried automatically.
Identity is the SHA-256 of the raw bytes within the mailbox, never the Message-ID (S-08, S-09).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inbox.models import (
    Attachment,
    AttachmentBlob,
    Folder,
    LedgerEntry,
    Location,
    Message,
    MessageAddress,
)
from inbox.signals import messages_stored

from . import bulk, storage
from .lease import Lease
from .mime import MessageUnparseable, ParsedMessage, parse_message
from .threader import plan_threads, refresh_threads

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
PARSE_TIME_LIMIT = 10.0  # seconds per message; beyond it the message fails (RELIABILITY P-07)


@dataclass
class Fetched:
    """One message as the server gave it."""

    uid: int
    raw: bytes | None
    flags: Sequence[str] = ()
    internal_date: datetime | None = None
    size: int | None = None
    modseq: int | None = None
    error: str = ""  # set when the server could not deliver it (e.g. omitted from FETCH)
    gone: bool = False  # expunged on the server before we could fetch it: nothing to store


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


class ParseTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """A wall-clock limit for one parse. SIGALRM works only in the main thread (Celery's prefork
    children run tasks there); elsewhere the task's soft time limit is the bound."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum, frame):
        raise ParseTimeout(f"parsing took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class _Prepared:
    item: Fetched
    digest: str = ""
    raw_file: str = ""
    parsed: ParsedMessage | None = None
    blobs: list[tuple[str, str, int]] = field(default_factory=list)  # (sha, path, size)
    error: str = ""
    unreadable: str = ""
    size: int = 0


def _prepare(mailbox_id: int, item: Fetched, parse: Callable[..., ParsedMessage]) -> _Prepared:
    return _prepare_many(mailbox_id, [item], parse)[0]


def _prepare_many(
    mailbox_id: int, items: Sequence[Fetched], parse: Callable[..., ParsedMessage]
) -> list[_Prepared]:
    """Hash, store the raw sources (one pack for the lot: connector/storage.py), then parse
    each message and store its attachments. The raw source is stored before the parse, so a
    message that cannot be parsed keeps its bytes (RELIABILITY S-29)."""
    out = [_Prepared(item=item) for item in items]
    to_store: list[_Prepared] = []
    for prepared in out:
        item = prepared.item
        if item.raw is None:
            prepared.error = item.error or "the server did not return the message"
            continue
        prepared.digest = storage.sha256(item.raw)
        prepared.size = len(item.raw)
        if item.size is not None and item.size != len(item.raw):
            # RFC822.SIZE disagrees with what arrived: a truncated download is never stored as
            # a complete message (RELIABILITY P-10).
            prepared.error = f"truncated download: {len(item.raw)} of {item.size} bytes"
            continue
        to_store.append(prepared)
    if not to_store:
        return out
    try:
        names = storage.save_raws(
            mailbox_id=mailbox_id, raws=[(p.digest, p.item.raw) for p in to_store]
        )
    except OSError as exc:  # storage full or unwritable (I-05): nothing points at it yet
        for prepared in to_store:
            prepared.error = f"storage error: {exc}"[:2000]
        return out
    for prepared, name in zip(to_store, names, strict=True):
        prepared.raw_file = name
        _parse_into(prepared, parse)
    return out


def _parse_into(prepared: _Prepared, parse: Callable[..., ParsedMessage]) -> None:
    item = prepared.item
    try:
        with time_limit(PARSE_TIME_LIMIT):
            prepared.parsed = parse(item.raw, internal_date=item.internal_date)
        for attachment in prepared.parsed.attachments:
            digest, path = storage.save_blob(attachment.payload)
            prepared.blobs.append((digest, path, len(attachment.payload)))
    except MessageUnparseable as exc:
        # Not mail at all (empty, no header): parsing it again will not help. Keep it as a
        # message with its raw source, so nothing on the server goes missing from the CRM,
        # and hold it for a person to look at (RELIABILITY S-29, P-01).
        prepared.unreadable = f"unreadable message: {exc}"
        prepared.parsed = ParsedMessage(
            snippet="(This message could not be read; its raw source is kept.)",
            date=item.internal_date,
            defects=[str(exc)[:500]],
        )
    except (ParseTimeout, RecursionError, MemoryError, ValueError, LookupError, TypeError) as exc:
        prepared.error = f"{type(exc).__name__}: {exc}"[:2000]
    except OSError as exc:  # storage full or unwritable (I-05): nothing points at it yet
        prepared.error = f"storage error: {exc}"[:2000]


# --- preparing in a process pool ----------------------------------------------------------------
# Hashing, compressing and writing the raw source, parsing, writing attachments: per message
# that is CPU work without the database, and it decides the speed of an initial sync. A pool of
# forked processes does it on every core while this process talks to PostgreSQL (bench/sync.py:
# issue 3 wants >= 1,500 msg/s on 2 cores). Small batches, a custom parser (tests) or a broken
# pool prepare in this process, exactly as before: the pool changes where, never what.
# The pool's processes run at a lower priority than their worker: the worker's store (with
# PostgreSQL) is the critical path of the pipeline, and the pool only has to keep one batch
# ahead of it; on 2 cores shared by worker, PostgreSQL and pool, +5-10% messages a second.
POOL_NICENESS = 5
POOL_MIN_BATCH = 16  # fewer messages than this are prepared in-process: forking is not free
_pool: ProcessPoolExecutor | None = None
_pool_pid = 0
_pool_fingerprint: tuple = ()
_pool_refused_pid = 0  # this process could not start a pool: do not try for every batch


def _pool_size() -> int:
    configured = getattr(settings, "RELAY_PARSE_WORKERS", None)
    return int(configured) if configured is not None else (os.cpu_count() or 1)


def _pool_init() -> None:
    # A pool process must not outlive its worker (a SIGKILLed Celery worker, RELIABILITY K-*):
    # Linux kills it when its parent dies (prctl PR_SET_PDEATHSIG = 1).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    if POOL_NICENESS:
        os.nice(POOL_NICENESS)


def _fingerprint() -> tuple:
    # What a forked pool process took from this one and relies on: where files go. Tests (and
    # nothing else) change these at run time; a pool made under other values is replaced.
    return (str(settings.MEDIA_ROOT), repr(settings.STORAGES.get("default")), _pool_size())


def _get_pool(*, create: bool = True) -> ProcessPoolExecutor | None:
    """The pool, if it can be used here. Only the main thread creates one: fork copies the
    calling thread alone, and a lock another thread held at that moment stays held forever in
    the child."""
    global _pool, _pool_pid, _pool_fingerprint
    fingerprint = _fingerprint()
    if _pool is not None and _pool_pid == os.getpid() and _pool_fingerprint == fingerprint:
        return _pool
    if not create or threading.current_thread() is not threading.main_thread():
        return None
    if _pool_refused_pid == os.getpid():
        return None
    _drop_pool()
    if _pool_size() < 2:
        return None
    # fork: the children inherit Django's settings and the loaded parser, and start in
    # milliseconds; they never use the database connection they inherit.
    pool = ProcessPoolExecutor(
        _pool_size(), mp_context=multiprocessing.get_context("fork"), initializer=_pool_init
    )
    # The first task forks every process of the pool, here, in this thread. A Celery prefork
    # worker is a daemonic process, and multiprocessing refuses children to those lest they
    # outlive it; ours cannot (_pool_init: PR_SET_PDEATHSIG), so the flag is lifted meanwhile.
    current = multiprocessing.current_process()
    daemon = current._config.get("daemon")
    current._config["daemon"] = False
    try:
        pool.submit(int).result(timeout=60)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if daemon is not None:
            current._config["daemon"] = daemon
        else:
            current._config.pop("daemon", None)
    _pool, _pool_pid, _pool_fingerprint = pool, os.getpid(), fingerprint
    return _pool


def _drop_pool() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None and _pool_pid == os.getpid():
        pool.shutdown(wait=False, cancel_futures=True)


def _refuse_pool(exc: Exception) -> None:
    """A pool that cannot start here (no /dev/shm for its semaphores, no fork in a sandbox...)
    is not tried again by this process: it prepares in-process."""
    global _pool_refused_pid
    log.warning("parse pool unavailable, preparing in-process: %s", exc)
    _pool_refused_pid = os.getpid()
    _drop_pool()


def warm_pool() -> bool:
    """Start the pool's processes now. The sync calls this before its prefetch thread starts,
    so that no fork happens while another thread runs (fork copies no threads, only locks)."""
    try:
        return _get_pool() is not None
    except Exception as exc:  # noqa: BLE001 - no pool means in-process, never a failed sync
        _refuse_pool(exc)
        return False


def _prepare_in_pool(mailbox_id: int, items: list[Fetched]) -> list[_Prepared]:
    out = []
    for prepared in _prepare_many(mailbox_id, items, parse_message):
        # Only the fields the store reads travel back: not the raw bytes (the parent has them)
        # nor attachment payloads (written to storage already; the rows need their metadata).
        prepared.item = None
        if prepared.parsed is not None and prepared.parsed.attachments:
            prepared.parsed.attachments = [
                dataclasses.replace(a, payload=b"") for a in prepared.parsed.attachments
            ]
        out.append(prepared)
    return out


class PreparedBatch:
    """A batch being prepared: in the pool (started at once) or in-process (at `result()`,
    in the calling thread: the parse time limit needs the main thread's SIGALRM)."""

    def __init__(self, mailbox_id: int, items: Sequence[Fetched], parse=parse_message):
        self.mailbox_id, self.items, self.parse = mailbox_id, list(items), parse
        self.chunks: list[tuple[list[Fetched], Future | None]] = []
        if parse is not parse_message or len(self.items) < POOL_MIN_BATCH:
            return
        try:
            # In the sync's prefetch thread this is the pool warm_pool() started, or none.
            pool = _get_pool()
            if pool is None:
                return
            size = max(4, -(-len(self.items) // (_pool_size() * 4)))
            for start in range(0, len(self.items), size):
                chunk = self.items[start : start + size]
                self.chunks.append((chunk, pool.submit(_prepare_in_pool, mailbox_id, chunk)))
        except BrokenProcessPool as exc:  # a process died earlier: a new pool next folder
            log.warning("parse pool broken, preparing in-process: %s", exc)
            _drop_pool()
            self.chunks = []
        except Exception as exc:  # noqa: BLE001 - the pool cannot start here at all
            _refuse_pool(exc)
            self.chunks = []

    def result(self) -> list[_Prepared]:
        if not self.chunks:
            return _prepare_many(self.mailbox_id, self.items, self.parse)
        prepared: list[_Prepared] = []
        for chunk, future in self.chunks:
            try:
                done = future.result()
            except Exception as exc:  # noqa: BLE001 - a killed or broken pool process
                # Whatever went wrong there, do it here: the same code, so the same outcome
                # (an exception from _prepare itself is raised again, as without a pool).
                log.warning("parse pool failed (%s); preparing %d in-process", exc, len(chunk))
                _drop_pool()
                done = _prepare_many(self.mailbox_id, chunk, self.parse)
            for item, p in zip(chunk, done, strict=True):
                p.item = item
                prepared.append(p)
        return prepared


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
        _store(folder, uidvalidity, prepared, result)
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


def _store(folder: Folder, uidvalidity: int, prepared: list[_Prepared], result: BatchResult):
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

    new_messages: dict[str, tuple[Message, _Prepared]] = {}
    for p in prepared:
        if p.parsed is not None and p.digest not in existing and p.digest not in new_messages:
            new_messages[p.digest] = (_message_from(mailbox_id, p), p)
    # Threads are chosen before the insert, so each message goes in with its thread_id.
    to_create = [m for m, _ in new_messages.values()]
    touched_threads = (
        plan_threads(mailbox_id=mailbox_id, messages=to_create) if to_create else set()
    )
    created = _insert_messages(to_create)
    for message in created:
        existing[message.sha256] = message.pk
    _store_parts(new_messages.values())
    refresh_threads(thread_ids=touched_threads)
    result.new_message_ids.extend(m.pk for m in created)
    created_digests = {m.sha256 for m in created}

    locations, ledger_rows, seen_state = [], [], {}
    now = timezone.now()
    for p in prepared:
        item = p.item
        entry = ledger.get(item.uid) or LedgerEntry(
            mailbox_id=mailbox_id, folder=folder, uidvalidity=uidvalidity, uid=item.uid
        )
        if getattr(item, "gone", False):
            entry.outcome, entry.reason = LedgerEntry.Outcome.SKIPPED, item.error
            result.skipped += 1
        elif p.parsed is None:
            entry.attempts += 1
            entry.error = p.error
            entry.raw_file = p.raw_file or entry.raw_file
            if entry.attempts >= MAX_ATTEMPTS:
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


def _message_from(mailbox_id: int, p: _Prepared) -> Message:
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


def _store_parts(new_messages) -> None:
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
                update_fields=["outcome", "reason", "updated_at"],
            )
