"""Preparing fetched messages for the store, without the database: hash the bytes, write the raw
source (connector/ingest/storage.py), parse (connector/ingest/mime.py) under a time limit, write
the attachments. The raw source is written before the parse, so a message that cannot be parsed
keeps its bytes (docs/reliability.md S-29). connector/ingest/pool.py runs this on every core.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from connector.ingest import storage
from connector.ingest.mime import MessageUnparseable, ParsedMessage

PARSE_TIME_LIMIT = 10.0  # seconds a parse may take (docs/reliability.md P-07)


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
class Prepared:
    item: Fetched
    digest: str = ""
    raw_file: str = ""
    parsed: ParsedMessage | None = None
    blobs: list[tuple[str, str, int]] = field(default_factory=list)  # (sha, path, size)
    error: str = ""
    # The failure came from outside the message (the server, the network, the storage): it is
    # retried for as long as it lasts and never holds the message (docs/reliability.md S-29).
    transient: bool = False
    unreadable: str = ""
    size: int = 0


def prepare(mailbox_id: int, item: Fetched, parse: Callable[..., ParsedMessage]) -> Prepared:
    return prepare_many(mailbox_id, [item], parse)[0]


def prepare_many(
    mailbox_id: int, items: Sequence[Fetched], parse: Callable[..., ParsedMessage]
) -> list[Prepared]:
    """Hash, store the raw sources (one pack for the lot: connector/ingest/storage.py), then
    parse each message and store its attachments. The raw source is stored before the parse, so
    a message that cannot be parsed keeps its bytes (docs/reliability.md S-29)."""
    out = [Prepared(item=item) for item in items]
    to_store: list[Prepared] = []
    for prepared in out:
        item = prepared.item
        if item.raw is None:
            prepared.error = item.error or "the server did not return the message"
            prepared.transient = True
            continue
        prepared.digest = storage.sha256(item.raw)
        prepared.size = len(item.raw)
        if item.size is not None and item.size != len(item.raw):
            # RFC822.SIZE disagrees with what arrived: a truncated download is never stored as
            # a complete message (docs/reliability.md P-10).
            prepared.error = f"truncated download: {len(item.raw)} of {item.size} bytes"
            prepared.transient = True
            continue
        to_store.append(prepared)
    if not to_store:
        return out
    try:
        names = storage.save_raws(
            mailbox_id=mailbox_id, raws=[(p.digest, p.item.raw) for p in to_store]
        )
    except OSError as exc:  # storage full (docs/reliability.md I-05): nothing points at it yet
        for prepared in to_store:
            prepared.error = f"storage error: {exc}"[:2000]
            prepared.transient = True
        return out
    for prepared, name in zip(to_store, names, strict=True):
        prepared.raw_file = name
        _parse_into(prepared, parse)
    return out


def _parse_into(prepared: Prepared, parse: Callable[..., ParsedMessage]) -> None:
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
        # and hold it for a person to look at (docs/reliability.md S-29, P-01).
        prepared.unreadable = f"unreadable message: {exc}"
        prepared.parsed = ParsedMessage(
            snippet="(This message could not be read; its raw source is kept.)",
            date=item.internal_date,
            defects=[str(exc)[:500]],
        )
    except (ParseTimeout, RecursionError, MemoryError, ValueError, LookupError, TypeError) as exc:
        prepared.error = f"{type(exc).__name__}: {exc}"[:2000]
    except OSError as exc:  # storage full (docs/reliability.md I-05): nothing points at it yet
        prepared.parsed, prepared.blobs = None, []
        prepared.error = f"storage error: {exc}"[:2000]
        prepared.transient = True
