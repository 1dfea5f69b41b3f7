"""Purge completed job records and old ledger entries (docs/product.md §8), as xTuple's
"purge jobs after" does.

After RELAY_PURGE_AFTER_DAYS days (0 turns purging off) these rows are deleted:
- outbox entries that were sent and have nothing left to do (no APPEND to Sent pending);
- pending changes the sync wrote to the server (done);
- triage entries a person or a later filing resolved;
- Email API requests answered (the reply is an outbox entry of its own);
- ledger entries that say a UID was stored, was a duplicate or was skipped;
- finished imports (done or stopped), with whatever of their uploaded files is still on disk
  (a worker removes them when it finishes; a job it never reached the end of may keep them).

Attachments uploaded into drafts that were never sent (a draft discarded or sent without
them, a file unticked) are purged too once their blob is older than the cutoff and nothing
refers to it any more: no message's attachment, no draft, no outbox entry. The row goes, then
its file under the data folder (docs/product.md §5.5, docs/reliability.md X-22).

Never purged: failed and held ledger entries (the health page lists them and the sync retries
them), imports waiting or running, outbox entries queued, retrying, failed or being verified,
open triage entries, and the mail itself. The ledger is an account of what the sync did, not
its memory: which UIDs it has seen is in Location rows and the folder cursor, so a purged
ledger never makes a sync fetch or store anything again. Raw files are left alone: a sent
entry's bytes are also the stored message's (content-addressed, shared).

Deletes run in batches of BATCH ids, each its own short transaction, so a purge of millions
of rows never holds long locks against the sync, and two purges at once (a second beat) only
find less to do.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from crm.selectors import purge_after_days
from inbox.models import (
    AttachmentBlob,
    Draft,
    EmailApiRequest,
    ImportJob,
    LedgerEntry,
    OutboxEntry,
    PendingChange,
    TriageEntry,
)

log = logging.getLogger(__name__)

BATCH = 5000
PURGEABLE_LEDGER = (
    LedgerEntry.Outcome.STORED,
    LedgerEntry.Outcome.DUPLICATE,
    LedgerEntry.Outcome.SKIPPED,
)


@dataclass
class PurgeReport:
    cutoff: object = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if self.cutoff is None:
            return "purging is off (purge after 0 days)"
        parts = ", ".join(f"{name}={n}" for name, n in self.counts.items())
        return f"before {self.cutoff:%Y-%m-%d %H:%M} UTC: {parts}"


def purgeable(cutoff) -> dict[str, object]:
    """The querysets of rows to delete, by name (what the command and the report print)."""
    return {
        "outbox_sent": OutboxEntry.objects.filter(
            Q(sent_at__lt=cutoff) | Q(sent_at__isnull=True, updated_at__lt=cutoff),
            state=OutboxEntry.State.SENT,
            next_attempt_at__isnull=True,
        ),
        "pending_changes_done": PendingChange.objects.filter(done_at__lt=cutoff),
        "triage_resolved": TriageEntry.objects.filter(resolved_at__lt=cutoff),
        "email_api_requests": EmailApiRequest.objects.filter(created_at__lt=cutoff),
        "ledger": LedgerEntry.objects.filter(outcome__in=PURGEABLE_LEDGER, updated_at__lt=cutoff),
        "import_jobs": ImportJob.objects.filter(
            state__in=(ImportJob.State.DONE, ImportJob.State.FAILED), finished_at__lt=cutoff
        ),
    }


def _remove_import_files(query) -> None:
    """The uploaded files of the imports about to be deleted, if any are left: the row is the
    only thing that says where they are."""
    media = Path(settings.MEDIA_ROOT).resolve()
    for directory in query.exclude(directory="").values_list("directory", flat=True):
        path = (media / directory).resolve()
        if path.is_relative_to(media) and path != media:
            shutil.rmtree(path, ignore_errors=True)


def purge(*, days: int | None = None, now=None, batch: int = BATCH, dry_run=False) -> PurgeReport:
    # The Site settings page's value, else RELAY_PURGE_AFTER_DAYS (docs/product.md §8.1).
    days = purge_after_days() if days is None else days
    if days <= 0:
        return PurgeReport()
    cutoff = (now or timezone.now()) - timedelta(days=days)
    report = PurgeReport(cutoff=cutoff)
    for name, query in purgeable(cutoff).items():
        if dry_run:
            report.counts[name] = query.count()
            continue
        deleted = 0
        while True:
            ids = list(query.order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            with transaction.atomic():
                if query.model is ImportJob:
                    _remove_import_files(query.filter(pk__in=ids))
                # Filter again by the same conditions: a row that changed since (an entry
                # queued again, a ledger entry that failed anew) is no longer purgeable.
                _, per_model = query.filter(pk__in=ids).delete()
            deleted += per_model.get(query.model._meta.label, 0)
            if len(ids) < batch:
                break
        report.counts[name] = deleted
    report.counts["unsent_attachments"] = purge_unsent_attachments(cutoff, dry_run=dry_run)
    if report.total:
        log.info("purged %s", report.summary())
    return report


def _referenced_blobs() -> set[str]:
    """The digests drafts and outbox entries refer to (JSON lists, read in Python: the same on
    SQLite and PostgreSQL)."""
    digests: set[str] = set()
    for model in (Draft, OutboxEntry):
        for rows in model.objects.exclude(attachments=[]).values_list("attachments", flat=True):
            digests.update(row.get("blob", "") for row in rows or () if isinstance(row, dict))
    return digests


def purge_unsent_attachments(cutoff, *, dry_run: bool = False) -> int:
    """Blobs stored before `cutoff` that no message, draft or outbox entry uses: attachments of
    drafts never sent. Storing a file again moves its blob's created_at to that moment
    (inbox/services/composing.py), and the delete checks age and use again in its own
    statement, so a blob a draft just took is kept."""
    from django.core.files.storage import default_storage

    candidates = AttachmentBlob.objects.filter(created_at__lt=cutoff, uses__isnull=True)
    referenced = _referenced_blobs()
    orphans = [
        (pk, digest, path)
        for pk, digest, path in candidates.values_list("pk", "sha256", "file")
        if digest not in referenced
    ]
    if dry_run or not orphans:
        return len(orphans)
    deleted = 0
    for start in range(0, len(orphans), BATCH):
        chunk = orphans[start : start + BATCH]
        with transaction.atomic():
            _, per_model = candidates.filter(pk__in=[pk for pk, _, _ in chunk]).delete()
        deleted += per_model.get(AttachmentBlob._meta.label, 0)
        still = set(
            AttachmentBlob.objects.filter(sha256__in=[d for _, d, _ in chunk]).values_list(
                "sha256", flat=True
            )
        )
        for _, digest, path in chunk:
            if digest not in still and path:
                # Content-addressed: the same bytes stored again meanwhile have a row again.
                default_storage.delete(path)
    return deleted
