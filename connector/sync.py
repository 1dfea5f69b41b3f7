"""Keep a mailbox in step with its IMAP server, both ways, losing nothing (SPEC 3).

One sync of one mailbox:
1. take the mailbox's lease (connector/lease.py); another holder means "already syncing";
2. log in; list folders (renames are recognised by an unchanged UIDVALIDITY, S-04);
3. write the changes people made in the CRM (read/unread, flag, move, delete) to the server;
4. per active folder: EXAMINE (read-only, so nothing we do can set \\Seen, S-17); on a new
   UIDVALIDITY drop that folder's locations and re-enumerate (messages re-attach by content
   hash, filings stay, S-01); retry earlier failures; fetch new UIDs in batches with
   BODY.PEEK[], each batch stored with its ledger outcomes and the cursor in one transaction
   (S-11, S-18); then pick up flag changes and expunges made elsewhere (CONDSTORE CHANGEDSINCE
   when offered, else a full FLAGS scan: one command either way, S-16, S-19);
5. drop locations of folders gone from the server; mark messages with no copy left
   "no longer on the server" (they stay filed, S-15);
6. record the outcome on the mailbox: active and next sync time, or error with back-off, or
   needs-reconnect when the login was refused (S-28: no retry storm, nothing overwritten).
A folder with nothing new costs a constant number of commands: EXAMINE, and with CONDSTORE
nothing else (S-10).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef
from django.utils import timezone

from inbox.models import Folder, LedgerEntry, Location, Mailbox, Message, PendingChange

from . import ingest
from . import lease as leases
from .errors import AuthenticationFailed, MailError, TemporaryFailure
from .imap import FolderInfo, _imap_date, open_session
from .ingest import BatchResult, Fetched, PreparedBatch, record_skipped, store_batch, warm_pool

log = logging.getLogger(__name__)

# A batch is at most BATCH_SIZE messages and BATCH_BYTES of raw source (one message larger
# than that is a batch of its own). Big batches make the initial sync fast (each batch costs
# a transaction, a lease check and a dozen queries whatever its size: 500 against 200 is
# +20% messages a second in bench/sync.py); the byte bound keeps the worker's memory flat
# on a mailbox of large messages (two batches are in memory at once: stored and prefetched).
BATCH_SIZE = 500
BATCH_BYTES = 24 * 1024 * 1024
PREFETCH = 2  # batches fetched ahead of the one being stored (memory: 3 x BATCH_BYTES at most)
DEFAULT_ACTIVE = ("inbox", "sent")
NEVER_BY_DEFAULT = ("trash", "junk")
MAX_BACKOFF = timedelta(hours=1)


@dataclass
class FolderReport:
    name: str
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    held: int = 0
    skipped: int = 0
    expunged: int = 0
    flags_changed: int = 0
    uidvalidity_reset: bool = False


@dataclass
class SyncReport:
    mailbox_id: int
    outcome: str = "completed"  # completed | busy | not_active | needs_reconnect | error
    error: str = ""
    changes_pushed: int = 0
    folders: list[FolderReport] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.outcome == "completed"

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.folders)

    def summary(self) -> str:
        if not self.completed:
            return f"{self.outcome}: {self.error}" if self.error else self.outcome
        names = ("stored", "duplicate", "skipped", "failed", "held", "expunged", "flags_changed")
        counts = ", ".join(f"{self.total(n)} {n.replace('_', ' ')}" for n in names)
        return f"completed: {counts}; {self.changes_pushed} changes written to the server"


def _connect(mailbox: Mailbox):
    return open_session(mailbox, timeout=getattr(settings, "RELAY_IMAP_TIMEOUT", 60))


def sync_mailbox(
    mailbox_id: int,
    *,
    connect: Callable = _connect,
    batch_size: int = BATCH_SIZE,
) -> SyncReport:
    report = SyncReport(mailbox_id=mailbox_id)
    mailbox = Mailbox.objects.get(pk=mailbox_id)
    if mailbox.state in (Mailbox.State.PAUSED, Mailbox.State.NEEDS_RECONNECT):
        report.outcome = "not_active"
        report.error = f"mailbox is {mailbox.get_state_display().lower()}"
        return report
    lease = leases.acquire(mailbox_id)
    if lease is None:
        report.outcome, report.error = "busy", "already syncing"
        return report
    try:
        Mailbox.objects.filter(pk=mailbox_id).update(
            state=Mailbox.State.SYNCING, last_sync_at=timezone.now(), sync_requested_at=None
        )
        with connect(mailbox) as session:
            _sync(mailbox, session, lease, report, batch_size)
    except AuthenticationFailed as exc:
        _record_failure(mailbox, report, exc, needs_reconnect=True)
    except (MailError, leases.LeaseLost) as exc:
        _record_failure(mailbox, report, exc, needs_reconnect=False)
    except (OSError, TimeoutError) as exc:  # anything the wrapper did not map is temporary
        _record_failure(mailbox, report, TemporaryFailure(str(exc)), needs_reconnect=False)
    else:
        now = timezone.now()
        Mailbox.objects.filter(pk=mailbox_id, lease_generation=lease.generation).update(
            state=Mailbox.State.ACTIVE,
            last_error="",
            consecutive_failures=0,
            last_success_at=now,
            next_sync_at=now + timedelta(seconds=mailbox.refresh_interval),
            first_sync_done=True,
        )
    finally:
        lease.release()
    log.info("sync mailbox=%s %s", mailbox_id, report.summary())
    return report


def _record_failure(mailbox: Mailbox, report: SyncReport, exc: Exception, *, needs_reconnect):
    report.outcome = "needs_reconnect" if needs_reconnect else "error"
    report.error = str(exc)[:2000]
    failures = mailbox.consecutive_failures + 1
    if needs_reconnect:
        # The server refused the login: stop until a person reconnects (no retry storm that
        # gets the account locked by the provider; the stored password is left as it was).
        Mailbox.objects.filter(pk=mailbox.pk).update(
            state=Mailbox.State.NEEDS_RECONNECT,
            last_error=report.error,
            consecutive_failures=failures,
            next_sync_at=None,
        )
    else:
        backoff = min(timedelta(seconds=30) * (2 ** min(failures - 1, 10)), MAX_BACKOFF)
        Mailbox.objects.filter(pk=mailbox.pk).update(
            state=Mailbox.State.ERROR,
            last_error=report.error,
            consecutive_failures=failures,
            next_sync_at=timezone.now() + backoff,
        )
    log.warning("sync mailbox=%s failed (%s): %s", mailbox.pk, report.outcome, report.error)


def _sync(mailbox: Mailbox, session, lease: leases.Lease, report: SyncReport, batch_size: int):
    folders = discover_folders(mailbox, session)
    report.changes_pushed = push_pending_changes(mailbox, session, folders)
    active = [f for f in folders if f.is_active and f.is_selectable and f.exists_on_server]
    initial = not mailbox.first_sync_done
    plans = {}
    if initial:
        # First sync: count what each folder will bring so the progress bar has a total.
        total = 0
        for folder in active:
            plans[folder.pk] = _plan_new_uids(mailbox, folder, session)
            total += len(plans[folder.pk][1])
        Mailbox.objects.filter(pk=mailbox.pk).update(progress_total=total, progress_done=0)
    for folder in active:
        folder_report = FolderReport(name=folder.name)
        report.folders.append(folder_report)
        sync_folder(
            mailbox,
            folder,
            session,
            lease,
            folder_report,
            batch_size=batch_size,
            initial=initial,
            plan=plans.get(folder.pk),
        )
        lease.renew()
    forget_vanished_folders(mailbox)


# --- folders --------------------------------------------------------------------------------


def discover_folders(mailbox: Mailbox, session) -> list[Folder]:
    infos: list[FolderInfo] = session.list_folders()
    known = {f.name: f for f in mailbox.folders.filter(is_local=False)}
    wanted = set(mailbox.active_folders or [])
    on_server = {info.name for info in infos}
    vanished = {name: f for name, f in known.items() if name not in on_server and f.uidvalidity}
    result = []
    for info in infos:
        folder = known.get(info.name)
        if folder is None and vanished and info.selectable:
            # Renamed by another client? Dovecot (and most servers) keep UIDVALIDITY across a
            # RENAME, so the same UIDVALIDITY under a new name is the same folder (S-04).
            status = session.status(info.name)
            renamed = next(
                (f for f in vanished.values() if f.uidvalidity == status.uidvalidity), None
            )
            if renamed is not None:
                del vanished[renamed.name]
                old_name = renamed.name
                renamed.name = info.name
                folder = renamed
                if old_name in wanted:
                    wanted.discard(old_name)
                    wanted.add(info.name)
                    Mailbox.objects.filter(pk=mailbox.pk).update(active_folders=sorted(wanted))
                    mailbox.active_folders = sorted(wanted)
                log.info("folder renamed mailbox=%s %r -> %r", mailbox.pk, old_name, info.name)
        if folder is None:
            folder = Folder(mailbox=mailbox, name=info.name)
        folder.delimiter = info.delimiter or ""
        folder.special_use = info.special_use or ""
        folder.is_selectable = info.selectable
        folder.exists_on_server = True
        if wanted:
            folder.is_active = info.name in wanted
        elif folder.pk is None:
            folder.is_active = folder.special_use in DEFAULT_ACTIVE or info.name.upper() == "INBOX"
        folder.save()
        result.append(folder)
    if not wanted:
        names = sorted(f.name for f in result if f.is_active)
        Mailbox.objects.filter(pk=mailbox.pk).update(active_folders=names)
        mailbox.active_folders = names
    Folder.objects.filter(pk__in=[f.pk for f in vanished.values()]).update(
        exists_on_server=False, is_active=False
    )
    return result


def forget_vanished_folders(mailbox: Mailbox) -> None:
    """Locations of folders deleted on the server go; their messages stay (S-03, S-15)."""
    gone = Location.objects.filter(folder__mailbox=mailbox, folder__exists_on_server=False)
    message_ids = list(gone.values_list("message_id", flat=True).distinct())
    if message_ids:
        with transaction.atomic():
            gone.delete()
            _mark_off_server(message_ids)


def _mark_off_server(message_ids: Iterable[int]) -> None:
    Message.objects.filter(pk__in=list(message_ids)).exclude(
        Exists(Location.objects.filter(message=OuterRef("pk")))
    ).update(on_server=False)


# --- one folder -----------------------------------------------------------------------------


def _plan_new_uids(mailbox: Mailbox, folder: Folder, session):
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
        if mailbox.sync_from and not folder.ledger.exists():
            wanted = set(session.search_uids(f"SINCE {_imap_date(mailbox.sync_from)}"))
            return sorted(wanted), sorted(set(every) - wanted)
        return sorted(every), []
    if status.uidnext is not None and status.uidnext <= folder.last_uid + 1:
        return [], []  # nothing new: no search at all (S-10)
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
        status, uids, skipped = _plan_new_uids(mailbox, folder, session)
    if folder.uidvalidity is not None and status.uidvalidity != folder.uidvalidity:
        _reset_uidvalidity(folder, status, lease)
        report.uidvalidity_reset = True
        uids, skipped = _new_uids(mailbox, folder, session, status)
    elif folder.uidvalidity is None:
        Folder.objects.filter(pk=folder.pk).update(uidvalidity=status.uidvalidity)
        folder.uidvalidity = status.uidvalidity
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

    chunks = _batches(session, uids, batch_size)
    batches = _fetched_batches(session, folder, chunks)
    # closing(): if storing fails, the prefetch is waited for before the session is closed.
    with closing(batches):
        for chunk, items, prepared in batches:
            result = store_batch(
                folder=folder,
                uidvalidity=uidvalidity,
                items=items,
                lease=lease,
                initial=initial,
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

    _sync_known(folder, session, lease, report, status)
    Folder.objects.filter(pk=folder.pk).update(
        uidnext=status.uidnext,
        messages_on_server=status.messages,
        last_synced_at=timezone.now(),
    )


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


def _fetched_batches(session, folder: Folder, chunks: list[list[int]]):
    """Yield (uids, fetched items, their PreparedBatch) per chunk, fetching the next chunk and
    starting its preparation in the parse pool while the caller stores this one: the network,
    the pool and PostgreSQL work at once. Only one thread uses the session at any time (the
    caller touches it only after this generator is done), and a failed fetch surfaces in the
    same order as without the thread: after every batch before it was stored."""

    def fetch(chunk):
        items = _fetch(session, chunk)
        return chunk, items, PreparedBatch(folder.mailbox_id, items)

    if len(chunks) <= 1:
        for chunk in chunks:
            yield fetch(chunk)
        return
    if max(map(len, chunks)) >= ingest.POOL_MIN_BATCH:
        warm_pool()  # fork before the thread starts, never beside it
    with ThreadPoolExecutor(1, thread_name_prefix="imap-prefetch") as prefetch:
        # PREFETCH batches ahead: the pool prepares the next ones while this one is stored,
        # and never waits for the network between two of them.
        pending = deque(prefetch.submit(fetch, chunk) for chunk in chunks[:PREFETCH])
        following = iter(chunks[PREFETCH:])
        try:
            while pending:
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
    """Fetch a batch; a UID the server left out is checked, never taken for deleted (S-13)."""
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


def _reset_uidvalidity(folder: Folder, status, lease: leases.Lease) -> None:
    """S-01: the folder's UIDs mean nothing any more. Its locations go (the messages and their
    filings stay, and re-attach by content hash as the folder is enumerated again)."""
    log.info(
        "uidvalidity changed mailbox=%s folder=%s %s -> %s",
        folder.mailbox_id,
        folder.pk,
        folder.uidvalidity,
        status.uidvalidity,
    )
    with transaction.atomic():
        lease.check()
        message_ids = list(folder.locations.values_list("message_id", flat=True))
        folder.locations.all().delete()
        Folder.objects.filter(pk=folder.pk).update(
            uidvalidity=status.uidvalidity, last_uid=0, highest_modseq=None, uidnext=None
        )
        _mark_off_server(message_ids)
    folder.uidvalidity, folder.last_uid, folder.highest_modseq = status.uidvalidity, 0, None


def _retry_failed(folder, session, lease, report, uidvalidity, initial) -> None:
    failed = list(
        LedgerEntry.objects.filter(
            folder=folder, uidvalidity=uidvalidity, outcome=LedgerEntry.Outcome.FAILED
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
    for start in range(0, len(present), BATCH_SIZE):
        chunk = present[start : start + BATCH_SIZE]
        result = store_batch(
            folder=folder,
            uidvalidity=uidvalidity,
            items=_fetch(session, chunk),
            lease=lease,
            advance_cursor=False,
            initial=initial,
        )
        _count(report, result)


def _sync_known(folder: Folder, session, lease: leases.Lease, report: FolderReport, status):
    """Flag changes and expunges made elsewhere, for the UIDs we already hold."""
    held = Location.objects.filter(folder=folder, uidvalidity=status.uidvalidity)
    if (
        status.highestmodseq is not None
        and folder.highest_modseq == status.highestmodseq
        and status.messages == held.count()
    ):
        # Nothing changed (RFC 7162: no new MODSEQ) and nothing was expunged: decided with a
        # COUNT, without loading every location of a 50,000-message folder (S-10).
        return
    known = dict(
        Location.objects.filter(folder=folder, uidvalidity=status.uidvalidity).values_list(
            "uid", "flags"
        )
    )
    condstore = status.highestmodseq is not None
    unchanged = (
        condstore
        and folder.highest_modseq == status.highestmodseq
        and status.messages == len(known)
    )
    if not known or unchanged:
        if condstore and folder.highest_modseq != status.highestmodseq:
            Folder.objects.filter(pk=folder.pk).update(highest_modseq=status.highestmodseq)
        return
    top = max(known)
    on_server = set(session.search_uids(f"UID 1:{top}"))
    gone = [uid for uid in known if uid not in on_server]
    changed = session.fetch_flags(
        f"1:{top}", changed_since=folder.highest_modseq if condstore else None
    )
    updates = []
    for uid, (flags, modseq) in changed.items():
        if uid in known and uid in on_server and sorted(flags) != sorted(known[uid]):
            updates.append((uid, sorted(flags), modseq))
    with transaction.atomic():
        lease.check()
        if gone:
            message_ids = list(
                Location.objects.filter(
                    folder=folder, uidvalidity=status.uidvalidity, uid__in=gone
                ).values_list("message_id", flat=True)
            )
            Location.objects.filter(
                folder=folder, uidvalidity=status.uidvalidity, uid__in=gone
            ).delete()
            _mark_off_server(message_ids)
            report.expunged += len(gone)
        if updates:
            locations = {
                loc.uid: loc
                for loc in Location.objects.filter(
                    folder=folder,
                    uidvalidity=status.uidvalidity,
                    uid__in=[u for u, _, _ in updates],
                )
            }
            for uid, flags, modseq in updates:
                loc = locations[uid]
                loc.flags, loc.modseq = flags, modseq or loc.modseq
            Location.objects.bulk_update(locations.values(), ["flags", "modseq"])
            _refresh_message_flags({loc.message_id for loc in locations.values()})
            report.flags_changed += len(updates)
        # The MODSEQ cursor moves in the same transaction as the changes it covers (S-18).
        Folder.objects.filter(pk=folder.pk).update(highest_modseq=status.highestmodseq)
        folder.highest_modseq = status.highestmodseq


def _refresh_message_flags(message_ids: set[int]) -> None:
    rows = Location.objects.filter(message_id__in=message_ids).values_list("message_id", "flags")
    seen: dict[int, bool] = {}
    flagged: dict[int, bool] = {}
    for message_id, flags in rows:
        seen[message_id] = seen.get(message_id, False) or "\\Seen" in flags
        flagged[message_id] = flagged.get(message_id, False) or "\\Flagged" in flags
    Message.objects.filter(pk__in=[m for m, v in seen.items() if v]).update(seen=True)
    Message.objects.filter(pk__in=[m for m, v in seen.items() if not v]).update(seen=False)
    Message.objects.filter(pk__in=[m for m, v in flagged.items() if v]).update(flagged=True)
    Message.objects.filter(pk__in=[m for m, v in flagged.items() if not v]).update(flagged=False)


# --- CRM -> server --------------------------------------------------------------------------

_FLAG_ACTIONS = {
    PendingChange.Action.MARK_READ: ("+", "\\Seen"),
    PendingChange.Action.MARK_UNREAD: ("-", "\\Seen"),
    PendingChange.Action.FLAG: ("+", "\\Flagged"),
    PendingChange.Action.UNFLAG: ("-", "\\Flagged"),
}


def push_pending_changes(mailbox: Mailbox, session, folders: list[Folder]) -> int:
    """Write what people did in the CRM to the server, as flag deltas (+FLAGS.SILENT /
    -FLAGS.SILENT: never a full FLAGS replace that would clobber other clients, S-16)."""
    pending = list(PendingChange.objects.filter(mailbox=mailbox, done_at__isnull=True))
    if not pending:
        return 0
    by_name = {f.name: f for f in folders}
    trash = next((f for f in folders if f.special_use == Folder.SpecialUse.TRASH), None)
    done = 0
    for folder_name in dict.fromkeys(p.folder_name for p in pending):
        changes = [p for p in pending if p.folder_name == folder_name]
        folder = by_name.get(folder_name)
        if folder is None:
            _finish(changes, error="the folder no longer exists on the server")
            continue
        status = session.select(folder_name, readonly=False)
        for change in changes:
            if change.uidvalidity != status.uidvalidity:
                _finish([change], error="the folder was reset on the server; change dropped")
                continue
            try:
                if change.action in _FLAG_ACTIONS:
                    sign, flag = _FLAG_ACTIONS[change.action]
                    session.store_flags([change.uid], sign, [flag])
                elif change.action == PendingChange.Action.MOVE:
                    if change.target_folder not in by_name:
                        _finish([change], error="the target folder does not exist")
                        continue
                    session.move([change.uid], change.target_folder)
                    _drop_location(folder, change)
                elif change.action == PendingChange.Action.DELETE:
                    if trash is not None and trash.name != folder_name:
                        session.move([change.uid], trash.name)
                    else:
                        session.store_flags([change.uid], "+", ["\\Deleted"])
                        session.expunge_uids([change.uid])
                    _drop_location(folder, change)
            except TemporaryFailure:
                raise
            except MailError as exc:
                _finish([change], error=str(exc))
                continue
            _finish([change])
            done += 1
    return done


def _drop_location(folder: Folder, change: PendingChange) -> None:
    with transaction.atomic():
        message_ids = list(
            Location.objects.filter(
                folder=folder, uidvalidity=change.uidvalidity, uid=change.uid
            ).values_list("message_id", flat=True)
        )
        Location.objects.filter(
            folder=folder, uidvalidity=change.uidvalidity, uid=change.uid
        ).delete()
        _mark_off_server(message_ids)


def _finish(changes: Sequence[PendingChange], *, error: str = "") -> None:
    PendingChange.objects.filter(pk__in=[c.pk for c in changes]).update(
        done_at=timezone.now(), error=error[:2000]
    )


# --- status ---------------------------------------------------------------------------------


def mailbox_status(mailbox: Mailbox) -> dict:
    """What `manage.py mailbox status --json` prints."""
    folders = mailbox.folders.annotate(stored=Count("locations")).order_by("name")
    ledger = dict(
        LedgerEntry.objects.filter(mailbox=mailbox)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    return {
        "id": mailbox.pk,
        "email": mailbox.email_address,
        "state": mailbox.state,
        "last_error": mailbox.last_error,
        "last_success_at": mailbox.last_success_at.isoformat() if mailbox.last_success_at else None,
        "next_sync_at": mailbox.next_sync_at.isoformat() if mailbox.next_sync_at else None,
        "progress": {"done": mailbox.progress_done, "total": mailbox.progress_total},
        "messages": mailbox.messages.count(),
        "folders": [
            {
                "name": f.name,
                "special_use": f.special_use,
                "active": f.is_active,
                "on_server": f.exists_on_server,
                "uidvalidity": f.uidvalidity,
                "last_uid": f.last_uid,
                "highest_modseq": f.highest_modseq,
                "messages": f.stored,
            }
            for f in folders
        ],
        "ledger": {o: ledger.get(o, 0) for o in LedgerEntry.Outcome.values},
    }
