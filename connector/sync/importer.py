"""Import .mbox and .eml files into a mailbox: uploaded on the mailbox's settings page (an
ImportJob, run by the `relay.import_files` task: docs/product.md §3.10) or from the command
line (`manage.py mailbox import`).

Imported mail goes to a local folder (never synced with a server) with its own UID sequence,
through the same ingest as synced mail, so it is parsed, stored, threaded and filed the same
way. Importing the same file twice adds nothing: content already in the mailbox is skipped, and
so is a message that could not be read the first time (docs/reliability.md I-12). Files are
read one message at a time, never whole (docs/reliability.md I-11)."""

from __future__ import annotations

import logging
import mailbox as mbox_lib
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from connector.ingest import storage
from connector.ingest.prepare import Fetched
from connector.ingest.store import BatchResult, store_batch
from inbox.models import Folder, ImportJob, LedgerEntry, Mailbox, Message

log = logging.getLogger(__name__)

LOCAL_UIDVALIDITY = 1
BATCH = 200
# A batch is also cut at this many bytes of raw source, so memory stays bounded however large
# the messages are (the sync's own bound: connector/sync/newmail.py).
BATCH_BYTES = 16 * 1024 * 1024
MBOX_SUFFIXES = (".mbox", ".mbx")
# At most this many messages' errors are kept on an ImportJob (the health page has them all).
MAX_ERRORS = 200
# A running job whose worker showed no progress for this long is taken over (one batch of
# BATCH messages takes seconds).
QUIET = timedelta(minutes=15)


class ImportFileError(Exception):
    pass


def is_mbox(path: Path) -> bool:
    """An .mbox by its name, or anything whose first line is an mbox "From " line."""
    if path.suffix.lower() in MBOX_SUFFIXES:
        return True
    if path.suffix.lower() == ".eml":
        return False
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


def read_messages(path: Path) -> Iterator[bytes]:
    """Raw messages of one .eml or .mbox file, one at a time: an mbox is scanned once for
    where its messages start, then each is read on its own (never the whole file)."""
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    if path.suffix.lower() == ".eml":
        yield path.read_bytes()
        return
    if path.suffix.lower() in (*MBOX_SUFFIXES, "") or path.is_file():
        box = mbox_lib.mbox(str(path), create=False)
        try:
            for key in box.iterkeys():
                yield box.get_bytes(key)
        finally:
            box.close()
        return
    raise ImportFileError(f"{path}: not an .mbox or .eml file")


def count_messages(path: Path) -> int:
    if not is_mbox(path):
        return 1
    box = mbox_lib.mbox(str(path), create=False)
    try:
        return len(box)
    finally:
        box.close()


def local_folder(mailbox: Mailbox, name: str) -> Folder:
    folder, created = Folder.objects.get_or_create(
        mailbox=mailbox,
        name=name,
        defaults={
            "is_local": True,
            "exists_on_server": False,
            "is_active": False,
            "uidvalidity": LOCAL_UIDVALIDITY,
            "special_use": {"inbox": "inbox", "sent": "sent"}.get(name.lower(), ""),
        },
    )
    if not created and not folder.is_local:
        raise ImportFileError(f"{name} is a folder on the server; import into another name.")
    return folder


@dataclass
class Trouble:
    """A message of an import that could not be read: where it was and why, in words."""

    where: str
    error: str


def _unread_digests(folder: Folder) -> set[str]:
    """The content hashes of the messages this local folder could not read before: their raw
    sources are kept (connector/ingest/prepare.py), so a second import knows them."""
    digests = set()
    entries = LedgerEntry.objects.filter(folder=folder, message__isnull=True).exclude(raw_file="")
    for raw_file in entries.values_list("raw_file", flat=True):
        try:
            digests.add(storage.sha256(storage.read_raw(raw_file)))
        except OSError:
            continue
    return digests


def _plain(entry: LedgerEntry) -> str:
    """A ledger error in the words a person reads on the import's page."""
    if entry.message_id is not None:
        return (
            "this is not an email (it has no headers); it is kept as it is and listed on the "
            "mailbox's health page"
        )
    reason = (entry.error or "").split(":", 1)[-1].strip()[:200] or "unknown error"
    return (
        f"it could not be read ({reason}); its raw source is kept and listed on the mailbox's "
        "health page"
    )


def import_messages(
    mailbox: Mailbox,
    raws: Iterable[bytes] | Iterable[tuple[str, bytes]],
    *,
    folder_name: str = "Imported",
    flags: Iterable[str] = ("\\Seen",),
    history: bool = False,
    on_batch: Callable[[BatchResult, int, list[Trouble]], None] | None = None,
) -> BatchResult:
    """Store `raws` (bytes, or (where, bytes) pairs naming each message for error reports) in
    the local folder `folder_name`. `history`: the mail is an archive, filed but never
    answered, ticketed or put in triage (docs/product.md §3.5, §3.10). `on_batch(result,
    messages_read, troubles)` follows the progress after each batch's commit."""
    folder = local_folder(mailbox, folder_name)
    total = BatchResult()
    batch: list[tuple[str, bytes]] = []
    unread: set[str] | None = None

    def flush() -> None:
        nonlocal unread
        if unread is None:
            unread = _unread_digests(folder)
        digests: dict[str, tuple[str, bytes]] = {}
        for where, raw in batch:
            digests.setdefault(storage.sha256(raw), (where, raw))
        have = set(
            Message.objects.filter(mailbox=mailbox, sha256__in=digests).values_list(
                "sha256", flat=True
            )
        )
        fresh = [
            (digest, where, raw)
            for digest, (where, raw) in digests.items()
            if digest not in have and digest not in unread
        ]
        result = BatchResult(unchanged=len(batch) - len(fresh))
        troubles: list[Trouble] = []
        with transaction.atomic():
            # Two imports into one folder at once take their UIDs one after the other.
            folder.last_uid = (
                Folder.objects.select_for_update()
                .values_list("last_uid", flat=True)
                .get(pk=folder.pk)
            )
            items = [
                Fetched(uid=folder.last_uid + i + 1, raw=raw, flags=tuple(flags))
                for i, (_digest, _where, raw) in enumerate(fresh)
            ]
            result.add(
                store_batch(
                    folder=folder,
                    uidvalidity=LOCAL_UIDVALIDITY,
                    items=items,
                    lease=None,
                    initial=history,
                )
            )
            if result.failed or result.held:
                troubles = _troubles(folder, items, [where for _d, where, _r in fresh])
        unread.update(d for d, _w, _r in fresh if d not in have)
        total.add(result)
        if on_batch is not None:
            on_batch(result, len(batch), troubles)
        batch.clear()

    size = 0
    for raw in raws:
        batch.append(raw if isinstance(raw, tuple) else ("", raw))
        size += len(batch[-1][1])
        if len(batch) >= BATCH or size >= BATCH_BYTES:
            flush()
            size = 0
    if batch:
        flush()
    return total


def _troubles(folder: Folder, items: list[Fetched], wheres: list[str]) -> list[Trouble]:
    """The batch's messages that could not be read. A local folder is never fetched again, so
    a failed one is held at once (shown on the health page) rather than left "will retry"."""
    by_uid = dict(zip((item.uid for item in items), wheres, strict=True))
    entries = list(
        LedgerEntry.objects.filter(
            folder=folder,
            uidvalidity=LOCAL_UIDVALIDITY,
            uid__in=by_uid,
            outcome__in=(LedgerEntry.Outcome.FAILED, LedgerEntry.Outcome.HELD),
        ).order_by("uid")
    )
    LedgerEntry.objects.filter(
        pk__in=[e.pk for e in entries if e.outcome == LedgerEntry.Outcome.FAILED]
    ).update(outcome=LedgerEntry.Outcome.HELD, reason="could not be read (imported file)")
    return [Trouble(where=by_uid[e.uid], error=_plain(e)) for e in entries]


def retry_held(entry_id: int) -> LedgerEntry:
    """Import one held message of a local folder again from its kept raw source (the health
    page's Retry, docs/product.md §3.10): a local folder is never fetched, so "fetch it on the
    next sync" would never come. Stored now, or held again with the new reason."""
    entry = LedgerEntry.objects.select_related("folder").get(pk=entry_id)
    if not entry.folder.is_local or entry.message_id is not None or not entry.raw_file:
        return entry
    try:
        raw = storage.read_raw(entry.raw_file)
    except OSError as exc:
        LedgerEntry.objects.filter(pk=entry.pk).update(
            outcome=LedgerEntry.Outcome.HELD,
            reason="its raw source could not be read",
            error=str(exc),
        )
    else:
        with transaction.atomic():
            result = store_batch(
                folder=entry.folder,
                uidvalidity=entry.uidvalidity,
                items=[Fetched(uid=entry.uid, raw=raw, flags=("\\Seen",))],
                lease=None,
                advance_cursor=False,
                initial=True,
            )
            if result.failed or result.held:
                _troubles(entry.folder, [Fetched(uid=entry.uid, raw=b"")], [""])
    entry.refresh_from_db()
    log.info("imported message retried entry=%s outcome=%s", entry.pk, entry.outcome)
    return entry


# --- an uploaded import (inbox/services/imports.py starts it) ---------------------------------


def job_files(job: ImportJob) -> list[tuple[str, Path]]:
    """(name as uploaded, path) of the job's files, in upload order."""
    directory = Path(settings.MEDIA_ROOT) / job.directory
    stored = {p.name.split("-", 1)[0]: p for p in directory.iterdir()} if directory.is_dir() else {}
    return [(name, stored[str(i)]) for i, name in enumerate(job.file_names) if str(i) in stored]


def run_import_job(job_id: int) -> ImportJob:
    """Import an uploaded job's files into the mailbox's "Imported" folder, counting as it
    goes. A redelivered task runs it again harmlessly: what is stored is found again."""
    now = timezone.now()
    # One worker at a time: a waiting job, or one whose worker went quiet (killed: the task is
    # redelivered, docs/reliability.md I-03); a second delivery of a running job does nothing.
    claimed = ImportJob.objects.filter(
        Q(state=ImportJob.State.QUEUED)
        | Q(state=ImportJob.State.RUNNING, heartbeat_at__lt=now - QUIET),
        pk=job_id,
    ).update(
        state=ImportJob.State.RUNNING,
        started_at=now,
        heartbeat_at=now,
        done=0,
        stored=0,
        duplicates=0,
        failed=0,
        errors=[],
    )
    job = ImportJob.objects.select_related("mailbox").get(pk=job_id)
    if not claimed:
        return job
    try:
        files = job_files(job)
        job.total = sum(count_messages(path) for _name, path in files)
        job.save(update_fields=["total"])

        def messages() -> Iterator[tuple[str, bytes]]:
            for name, path in files:
                if is_mbox(path):
                    for number, raw in enumerate(read_messages(path), 1):
                        yield f"Message {number} of {name}", raw
                else:
                    yield name, path.read_bytes()

        def progress(result: BatchResult, read: int, troubles: list[Trouble]) -> None:
            ImportJob.objects.filter(pk=job.pk).update(
                heartbeat_at=timezone.now(),
                done=F("done") + read,
                stored=F("stored") + result.stored,
                duplicates=F("duplicates") + result.duplicate + result.unchanged,
                failed=F("failed") + result.failed + result.held,
            )
            if troubles and len(job.errors) < MAX_ERRORS:
                job.errors.extend(
                    {"where": t.where, "error": t.error} for t in troubles[:MAX_ERRORS]
                )
                del job.errors[MAX_ERRORS:]
                ImportJob.objects.filter(pk=job.pk).update(errors=job.errors)

        import_messages(job.mailbox, messages(), history=True, on_batch=progress)
    except Exception as exc:
        log.exception("import failed job=%s mailbox=%s", job.pk, job.mailbox_id)
        ImportJob.objects.filter(pk=job.pk).update(
            state=ImportJob.State.FAILED,
            finished_at=timezone.now(),
            error=f"The import stopped: {type(exc).__name__}: {exc}"[:2000],
        )
    else:
        ImportJob.objects.filter(pk=job.pk).update(
            state=ImportJob.State.DONE, finished_at=timezone.now()
        )
    _remove_files(job)
    job.refresh_from_db()
    log.info(
        "import done job=%s mailbox=%s stored=%s duplicates=%s failed=%s",
        job.pk,
        job.mailbox_id,
        job.stored,
        job.duplicates,
        job.failed,
    )
    return job


def _remove_files(job: ImportJob) -> None:
    if job.directory:
        shutil.rmtree(Path(settings.MEDIA_ROOT) / job.directory, ignore_errors=True)


def dispatch_waiting(*, enqueue: Callable[[int], object], older_than: timedelta) -> list[int]:
    """The beat's safety net: a job whose task was lost (broker restarted before a worker took
    it) is enqueued again, at most once per `older_than` (docs/architecture.md: a lost event
    delays, never drops)."""
    now = timezone.now()
    waiting = ImportJob.objects.filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - older_than),
        state=ImportJob.State.QUEUED,
        created_at__lt=now - older_than,
    )
    ids = []
    for pk in waiting.values_list("pk", flat=True)[:20]:
        # The same conditional UPDATE claims it for one beat only (tests/test_beat_twice.py).
        if (
            ImportJob.objects.filter(pk=pk, state=ImportJob.State.QUEUED)
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - older_than))
            .update(enqueued_at=now)
        ):
            enqueue(pk)
            ids.append(pk)
    return ids
