"""New mail in one folder: which UIDs are new, fetched in batches with BODY.PEEK[] while the
previous batch is stored, each batch stored with its ledger outcomes and the cursor in one
transaction (connector/ingest/store.py; docs/reliability.md S-11, S-18). A new UIDVALIDITY
drops the folder's locations first (S-01), and earlier failures are retried.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from connector.ingest.pool import POOL_MIN_BATCH, PreparedBatch, warm_pool
from connector.ingest.prepare import Fetched
from connector.ingest.store import BatchResult, record_skipped, store_batch
from connector.sync import lease as leases
from connector.sync.changes import sync_known
from connector.sync.folders import mark_off_server
from connector.sync.reports import FolderReport
from connector.transport.imap import imap_date
from inbox.models import Folder, LedgerEntry, Mailbox

log = logging.getLogger(__name__)

# A batch is at most BATCH_SIZE messages and BATCH_BYTES of raw source (one message larger
# than that is a batch of its own). Big batches make the initial sync fast (each batch costs
# a transaction, a lease check and a dozen queries whatever its size: 500 against 200 is
# +20% messages a second in bench/sync.py); the byte bound keeps the worker's memory flat
# on a mailbox of large messages (two batches are in memory at once: stored and prefetched).
BATCH_SIZE = 500
BATCH_BYTES = 24 * 1024 * 1024
PREFETCH = 2  # batches fetched ahead of the one being stored (memory: 3 x BATCH_BYTES at most)


def plan_new_uids(mailbox: Mailbox, folder: Folder, session):
    """(status, UIDs to fetch, UIDs skipped by the sync-from date) for this pass."""
    status = session.select(folder.name)
    if folder.uidvalidity is not None and status.uidvalidity != folder.uidvalidity:
        return status, None, []  # decided in sync_folder after the reset
    return status, *_new_uids(mailbox, folder, session, status)


def _new_uids(mailbox: Mailbox, folder: Folder, session, status) -> tuple[list[int], list[int]]:
    if (
        folder.last_uid == 0
        and folder.uidvalidity in (None, status.uidvalidity)
        and not (folder.locations.exists())
    ):
        if status.messages == 0:
            return [], []
        every = session.search_uids("ALL")
        # The sync-from date holds for every enumeration of the folder, the first one and the
        # one after a UIDVALIDITY reset alike: years-old mail never arrives as new
        # (docs/reliability.md S-01).
        if mailbox.sync_from:
            wanted = set(session.search_uids(f"SINCE {imap_date(mailbox.sync_from)}"))
            return sorted(wanted & set(every)), sorted(set(every) - wanted)
        return sorted(every), []
    if status.uidnext is not None and status.uidnext <= folder.last_uid + 1:
        return [], []  # nothing new: no search at all (docs/reliability.md S-10)
    # `UID SEARCH UID n:*` (like FETCH) always includes the highest UID even when n is past
    # it (RFC 3501 §6.4.8): keep only what is really new.
    found = session.search_uids(f"UID {folder.last_uid + 1}:*")
    return sorted(u for u in found if u > folder.last_uid), []


def sync_folder(
    mailbox: Mailbox,
    folder: Folder,
    session,
    lease: leases.Lease,
    report: FolderReport,
    *,
    batch_size: int = BATCH_SIZE,
    initial: bool = False,
    plan=None,
) -> None:
    if plan is not None:
        session.select(folder.name)  # the planning pass left another folder selected
        status, uids, skipped = plan
    else:
        status, uids, skipped = plan_new_uids(mailbox, folder, session)
    if folder.uidvalidity is not None and status.uidvalidity != folder.uidvalidity:
        _reset_uidvalidity(folder, status, session, lease)
        report.uidvalidity_reset = True
        uids, skipped = _new_uids(mailbox, folder, session, status)
    elif folder.uidvalidity is None:
        mark = {}
        if not initial and mailbox.first_sync_done:
            # A folder enumerated for the first time after the first sync (Trash and Junk,
            # which the first sync leaves out, or a folder ticked later): what it holds now is
            # history like the first sync's, filed but never opening a ticket or answered
            # (docs/product.md §3.5). Only mail arriving from now on is new.
            mark["history_below_uid"] = _history_mark(status, session)
        Folder.objects.filter(pk=folder.pk).update(uidvalidity=status.uidvalidity, **mark)
        folder.uidvalidity = status.uidvalidity
        if mark:
            folder.history_below_uid = mark["history_below_uid"]
    uidvalidity = status.uidvalidity

    if skipped:
        record_skipped(
            folder=folder,
            uidvalidity=uidvalidity,
            uids=skipped,
            reason="before the sync-from date",
            lease=lease,
        )
        report.skipped += len(skipped)

    _retry_failed(folder, session, lease, report, uidvalidity, initial)

    # Mail found again after a UIDVALIDITY reset is history, whatever its bytes: it is filed
    # but opens no ticket and is answered by nobody (docs/reliability.md S-01). The batches
    # are cut at that mark so each one is either history or new mail.
    below, above = _split_history(folder, uids)
    chunks = _batches(session, below, batch_size) + _batches(session, above, batch_size)
    batches = _fetched_batches(session, folder, chunks, keep_alive=lease.renew)
    # closing(): if storing fails, the prefetch is waited for before the session is closed.
    with closing(batches):
        for chunk, items, prepared in batches:
            result = store_batch(
                folder=folder,
                uidvalidity=uidvalidity,
                items=items,
                lease=lease,
                initial=initial or _is_history(folder, chunk),
                prepared=prepared,
            )
            _count(report, result)
            lease.renew()
            if initial:
                Mailbox.objects.filter(pk=mailbox.pk).update(
                    progress_done=F("progress_done") + len(chunk)
                )
    if skipped and max(skipped) > folder.last_uid:
        Folder.objects.filter(pk=folder.pk, last_uid__lt=max(skipped)).update(last_uid=max(skipped))
        folder.last_uid = max(skipped)

    sync_known(folder, session, lease, report, status)
    Folder.objects.filter(pk=folder.pk).update(
        uidnext=status.uidnext,
        messages_on_server=status.messages,
        last_synced_at=timezone.now(),
    )


def _split_history(folder: Folder, uids: list[int]) -> tuple[list[int], list[int]]:
    """(UIDs found again after a UIDVALIDITY reset, the others); see Folder.history_below_uid."""
    mark = folder.history_below_uid or 0
    return [u for u in uids if u < mark], [u for u in uids if u >= mark]


def _is_history(folder: Folder, chunk: Sequence[int]) -> bool:
    return bool(chunk) and max(chunk) < (folder.history_below_uid or 0)


def _batches(session, uids: list[int], batch_size: int) -> list[list[int]]:
    """Cut the new UIDs into batches of at most `batch_size` messages and BATCH_BYTES bytes,
    by their RFC822.SIZE (one FETCH for them all, only when there is more than one message).
    A UID the server gives no size for (expunged meanwhile) counts as empty: its fetch will
    say what became of it."""
    if len(uids) <= 1:
        return [uids] if uids else []
    sizes = session.fetch_sizes(uids)
    chunks: list[list[int]] = []
    chunk: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if chunk and (len(chunk) >= batch_size or total + size > BATCH_BYTES):
            chunks.append(chunk)
            chunk, total = [], 0
        chunk.append(uid)
        total += size
    chunks.append(chunk)
    return chunks


def _fetched_batches(
    session, folder: Folder, chunks: list[list[int]], keep_alive: Callable[[], None]
):
    """Yield (uids, fetched items, their PreparedBatch) per chunk, fetching the next chunk and
    starting its preparation in the parse pool while the caller stores this one: the network,
    the pool and PostgreSQL work at once. Only one thread uses the session at any time (the
    caller touches it only after this generator is done), and a failed fetch surfaces in the
    same order as without the thread: after every batch before it was stored. While it waits
    for a fetch (up to BATCH_BYTES from a slow server), `keep_alive` is called every third of
    the lease's life: the lease lapses only if this worker dies (connector/sync/lease.py)."""

    def fetch(chunk):
        items = _fetch(session, chunk)
        return chunk, items, PreparedBatch(folder.mailbox_id, items)

    if len(chunks) == 1 and len(chunks[0]) == 1:
        yield fetch(chunks[0])  # one message: fetched here, no thread for it
        return
    if not chunks:
        return
    if max(map(len, chunks)) >= POOL_MIN_BATCH:
        warm_pool()  # fork before the thread starts, never beside it
    every = max(leases.lease_ttl().total_seconds() / 3, 0.1)
    with ThreadPoolExecutor(1, thread_name_prefix="imap-prefetch") as prefetch:
        # PREFETCH batches ahead: the pool prepares the next ones while this one is stored,
        # and never waits for the network between two of them.
        pending = deque(prefetch.submit(fetch, chunk) for chunk in chunks[:PREFETCH])
        following = iter(chunks[PREFETCH:])
        try:
            while pending:
                while not wait([pending[0]], timeout=every).done:
                    keep_alive()
                batch = pending.popleft().result()
                chunk = next(following, None)
                if chunk is not None:
                    pending.append(prefetch.submit(fetch, chunk))
                yield batch
        finally:
            if pending:  # the caller stopped early: let the fetches end first
                wait(pending)


def _count(report: FolderReport, result: BatchResult) -> None:
    report.stored += result.stored
    report.duplicate += result.duplicate
    report.failed += result.failed
    report.held += result.held
    report.skipped += result.skipped


def _fetch(session, uids: Sequence[int]) -> list[Fetched]:
    """Fetch a batch; a UID the server left out is checked, never taken for deleted
    (docs/reliability.md S-13)."""
    wanted = set(uids)
    got = {f.uid: f for f in session.fetch(uids) if f.uid in wanted}
    missing = [uid for uid in uids if uid not in got]
    still_there = (
        set(session.search_uids("UID " + ",".join(map(str, missing)))) if missing else set()
    )
    items = []
    for uid in uids:
        if uid in got:
            items.append(got[uid])
        elif uid in still_there:
            items.append(Fetched(uid=uid, raw=None, error="the server omitted it from FETCH"))
        else:
            items.append(
                Fetched(uid=uid, raw=None, error="expunged before it could be fetched", gone=True)
            )
    return items


def _history_mark(status, session) -> int:
    """The first UID that is new mail: everything on the server now is below it."""
    if status.uidnext is not None:
        return status.uidnext
    # RFC 3501 requires UIDNEXT; a server that omits it is asked.
    return max(session.search_uids("ALL"), default=0) + 1


def _reset_uidvalidity(folder: Folder, status, session, lease: leases.Lease) -> None:
    """docs/reliability.md S-01: the folder's UIDs mean nothing any more. Its locations go (the
    messages and their filings stay, and re-attach by content hash as the folder is enumerated
    again). Every UID on the server now is mail found again, not new mail: the mark saved with
    the reset (in the same transaction, so a sync that dies half-way through the enumeration
    resumes with it) makes the store file it as history."""
    log.info(
        "uidvalidity changed mailbox=%s folder=%s %s -> %s",
        folder.mailbox_id,
        folder.pk,
        folder.uidvalidity,
        status.uidvalidity,
    )
    history_below = _history_mark(status, session)
    with transaction.atomic():
        lease.check()
        message_ids = list(folder.locations.values_list("message_id", flat=True))
        folder.locations.all().delete()
        Folder.objects.filter(pk=folder.pk).update(
            uidvalidity=status.uidvalidity,
            last_uid=0,
            highest_modseq=None,
            uidnext=None,
            history_below_uid=history_below,
        )
        mark_off_server(message_ids)
    folder.uidvalidity, folder.last_uid, folder.highest_modseq = status.uidvalidity, 0, None
    folder.history_below_uid = history_below


def _retry_failed(folder, session, lease, report, uidvalidity, initial) -> None:
    """Fetch again what failed before: a failed parse at every sync (three hold it), a
    transient failure once its back-off is over (connector/ingest/store.py retry_delay)."""
    failed = list(
        LedgerEntry.objects.filter(
            Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=timezone.now()),
            folder=folder,
            uidvalidity=uidvalidity,
            outcome=LedgerEntry.Outcome.FAILED,
        ).values_list("uid", flat=True)
    )
    if not failed:
        return
    on_server = set(session.search_uids("UID " + ",".join(map(str, failed))))
    present = [u for u in failed if u in on_server]
    gone = [u for u in failed if u not in on_server]
    if gone:
        record_skipped(
            folder=folder,
            uidvalidity=uidvalidity,
            uids=gone,
            reason="expunged on the server before it could be stored",
            lease=lease,
        )
        report.skipped += len(gone)
    for part in _split_history(folder, present):
        for start in range(0, len(part), BATCH_SIZE):
            chunk = part[start : start + BATCH_SIZE]
            result = store_batch(
                folder=folder,
                uidvalidity=uidvalidity,
                items=_fetch(session, chunk),
                lease=lease,
                advance_cursor=False,
                initial=initial or _is_history(folder, chunk),
            )
            _count(report, result)
