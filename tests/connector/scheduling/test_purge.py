"""Purging completed job records and old ledger entries (docs/product.md §8): what is old and done
goes, everything still needed stays, and the sync does not notice a purged ledger."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from connector.scheduling import purge, tasks
from connector.sync import mailbox as sync
from inbox.models import (
    EmailApiRequest,
    ImportJob,
    LedgerEntry,
    Location,
    Message,
    OutboxEntry,
    PendingChange,
    TriageEntry,
)
from tests import factories as f
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw, row_counts

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - dt.timedelta(days=31)
RECENT = NOW - dt.timedelta(days=29)


def outbox(state, *, sent_at=None, next_attempt_at=None, updated_at=OLD) -> OutboxEntry:
    entry = f.OutboxEntryFactory(state=state, sent_at=sent_at, next_attempt_at=next_attempt_at)
    OutboxEntry.objects.filter(pk=entry.pk).update(updated_at=updated_at)
    return entry


def ledger(outcome, *, updated_at) -> LedgerEntry:
    entry = f.LedgerEntryFactory(outcome=outcome)
    LedgerEntry.objects.filter(pk=entry.pk).update(updated_at=updated_at)
    return entry


def pending(*, done_at) -> PendingChange:
    mailbox = f.MailboxFactory()
    return PendingChange.objects.create(
        mailbox=mailbox,
        folder_name="INBOX",
        uidvalidity=1,
        uid=1,
        action="mark_read",
        done_at=done_at,
    )


def alive(*rows) -> list[bool]:
    return [type(r).objects.filter(pk=r.pk).exists() for r in rows]


def test_old_completed_records_go_and_everything_still_needed_stays(settings):
    settings.RELAY_PURGE_AFTER_DAYS = 30
    sent_old = outbox("sent", sent_at=OLD)
    sent_recent = outbox("sent", sent_at=RECENT)
    sent_append_pending = outbox("sent", sent_at=OLD, next_attempt_at=OLD)
    unfinished = [outbox(s) for s in ("queued", "retrying", "failed", "verify", "sending")]

    done_old, done_recent, not_done = (
        pending(done_at=OLD),
        pending(done_at=RECENT),
        pending(done_at=None),
    )
    resolved_old = f.TriageEntryFactory(resolved_at=OLD)
    resolved_recent = f.TriageEntryFactory(resolved_at=RECENT)
    open_old = f.TriageEntryFactory(resolved_at=None)
    TriageEntry.objects.filter(pk=open_old.pk).update(created_at=OLD)

    answered_old = EmailApiRequest.objects.create(
        message=f.MessageFactory(),
        mailbox=f.MailboxFactory(),
        sender="a@b.example",
        outcome="applied",
    )
    EmailApiRequest.objects.filter(pk=answered_old.pk).update(created_at=OLD)
    answered_recent = EmailApiRequest.objects.create(
        message=f.MessageFactory(),
        mailbox=f.MailboxFactory(),
        sender="a@b.example",
        outcome="applied",
    )
    old_done_ledger = [ledger(o, updated_at=OLD) for o in ("stored", "duplicate", "skipped")]
    old_trouble = [ledger(o, updated_at=OLD) for o in ("failed", "held")]
    recent_ledger = ledger("stored", updated_at=RECENT)
    messages = Message.objects.count()

    report = purge.purge(now=NOW)

    assert alive(sent_old, done_old, resolved_old, answered_old, *old_done_ledger) == [False] * 7
    assert alive(answered_recent) == [True]
    assert all(alive(sent_recent, sent_append_pending, *unfinished))
    assert all(alive(done_recent, not_done, resolved_recent, open_old))
    assert all(alive(*old_trouble, recent_ledger))
    assert Message.objects.count() == messages  # mail is never purged
    assert report.counts == {
        "outbox_sent": 1,
        "pending_changes_done": 1,
        "triage_resolved": 1,
        "email_api_requests": 1,
        "ledger": 3,
        "import_jobs": 0,
        "unsent_attachments": 0,
    }


def import_job(state, *, finished_at=None) -> tuple[ImportJob, Path]:
    """An import with an uploaded file still in its folder under MEDIA_ROOT."""
    job = ImportJob.objects.create(mailbox=f.MailboxFactory(), state=state, file_names=["a.eml"])
    job.directory = f"imports/purge-test-{job.pk}"
    job.finished_at = finished_at
    job.save(update_fields=["directory", "finished_at"])
    folder = Path(django_settings.MEDIA_ROOT) / job.directory
    folder.mkdir(parents=True)
    (folder / "0-a.eml").write_bytes(b"Subject: kept until purged\r\n\r\nBody\r\n")
    return job, folder


def test_finished_imports_and_their_files_go_after_the_purge_days(settings):
    settings.RELAY_PURGE_AFTER_DAYS = 30
    done_old, done_old_files = import_job("done", finished_at=OLD)
    stopped_old, stopped_old_files = import_job("failed", finished_at=OLD)
    done_recent, done_recent_files = import_job("done", finished_at=RECENT)
    waiting, waiting_files = import_job("queued")
    running, running_files = import_job("running")
    ImportJob.objects.filter(pk__in=[waiting.pk, running.pk]).update(created_at=OLD)

    report = purge.purge(now=NOW)

    assert report.counts["import_jobs"] == 2
    assert alive(done_old, stopped_old) == [False, False]
    assert not done_old_files.exists() and not stopped_old_files.exists()
    assert alive(done_recent, waiting, running) == [True, True, True]
    assert done_recent_files.exists() and waiting_files.exists() and running_files.exists()


def test_attachments_of_drafts_never_sent_are_purged_files_included(settings, owner):
    """docs/reliability.md X-22: files uploaded into drafts that were discarded (or sent
    without them) are deleted after the purge days, row and file; what a draft, an outbox
    entry or a message still uses stays, and a file stored again is young again."""
    from django.core.files.storage import default_storage

    from inbox.models import AttachmentBlob, Draft
    from inbox.services.composing import _attachment_rows
    from inbox.services.drafts import draft_discard

    settings.RELAY_PURGE_AFTER_DAYS = 30

    def upload(name: bytes) -> dict:
        (row,) = _attachment_rows([(name.decode() + ".txt", "text/plain", name * 100)])
        return row

    discarded, kept_by_draft, kept_by_entry, kept_by_message, again = (
        upload(n) for n in (b"discarded", b"draft", b"entry", b"message", b"again")
    )
    draft = Draft.objects.create(user=owner, attachments=[discarded])
    draft_discard(user=owner, draft=draft)
    Draft.objects.create(user=owner, attachments=[kept_by_draft])
    f.OutboxEntryFactory(attachments=[kept_by_entry])
    blob = AttachmentBlob.objects.get(sha256=kept_by_message["blob"])
    f.AttachmentFactory(blob=blob)
    AttachmentBlob.objects.update(created_at=OLD)
    upload(b"again")  # the same file attached again today: not an old orphan
    paths = dict(AttachmentBlob.objects.values_list("sha256", "file"))
    assert all(default_storage.exists(p) for p in paths.values())

    assert purge.purge(now=NOW, dry_run=True).counts["unsent_attachments"] == 1
    assert default_storage.exists(paths[discarded["blob"]])
    report = purge.purge(now=NOW)

    assert report.counts["unsent_attachments"] == 1
    assert not AttachmentBlob.objects.filter(sha256=discarded["blob"]).exists()
    assert not default_storage.exists(paths[discarded["blob"]])  # gone from the data folder
    for row in (kept_by_draft, kept_by_entry, kept_by_message, again):
        assert AttachmentBlob.objects.filter(sha256=row["blob"]).exists()
        assert default_storage.exists(paths[row["blob"]])


def test_the_number_of_days_is_a_setting_and_zero_turns_purging_off(settings):
    entry = ledger("stored", updated_at=NOW - dt.timedelta(days=8))
    settings.RELAY_PURGE_AFTER_DAYS = 0
    assert purge.purge(now=NOW).summary().startswith("purging is off")
    assert alive(entry) == [True]
    settings.RELAY_PURGE_AFTER_DAYS = 10
    purge.purge(now=NOW)
    assert alive(entry) == [True]
    settings.RELAY_PURGE_AFTER_DAYS = 7
    purge.purge(now=NOW)
    assert alive(entry) == [False]


def test_many_rows_are_purged_in_batches():
    folder = f.FolderFactory()
    LedgerEntry.objects.bulk_create(
        LedgerEntry(mailbox=folder.mailbox, folder=folder, uidvalidity=1, uid=uid, outcome="stored")
        for uid in range(1, 26)
    )
    LedgerEntry.objects.update(updated_at=OLD)
    report = purge.purge(days=30, now=NOW, batch=4)
    assert report.counts["ledger"] == 25 and not LedgerEntry.objects.exists()


def test_command_prints_what_it_deleted_and_dry_run_deletes_nothing():
    entries = [ledger("skipped", updated_at=OLD) for _ in range(3)]
    out = StringIO()
    call_command("purge_jobs", "--days", "30", "--dry-run", stdout=out)
    assert "Would delete rows older than" in out.getvalue()
    assert "  ledger: 3" in out.getvalue()
    assert all(alive(*entries))

    out = StringIO()
    call_command("purge_jobs", "--days", "30", stdout=out)
    assert "Deleted rows older than" in out.getvalue() and "  ledger: 3" in out.getvalue()
    assert not any(alive(*entries))


def test_beat_runs_the_purge_every_day(settings):
    entry = ledger("stored", updated_at=timezone.now() - dt.timedelta(days=400))
    schedule = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "relay.purge"]
    assert schedule == [{"task": "relay.purge", "schedule": 86400.0}]
    assert "ledger=1" in tasks.purge()
    assert alive(entry) == [False]


@pytest.mark.django_db(transaction=True)
def test_a_purged_ledger_makes_the_sync_do_nothing_again(imap_user):
    for n in range(5):
        imap_user.server.deliver(imap_user, make_raw(f"Message {n}"))
    mailbox = make_mailbox(imap_user)
    assert sync.sync_mailbox(mailbox.pk).completed
    before = row_counts(mailbox)
    assert before["ledger"] >= 5

    purge.purge(days=1, now=timezone.now() + dt.timedelta(days=2))
    assert not LedgerEntry.objects.filter(mailbox=mailbox).exists()

    imap_user.server.deliver(imap_user, make_raw("After the purge"))
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed and report.total("stored") == 1, report.summary()
    assert Message.objects.filter(mailbox=mailbox).count() == before["messages"] + 1
    assert Location.objects.filter(message__mailbox=mailbox).count() == before["locations"] + 1
    assert_in_step(mailbox, imap_user)
