"""An uploaded import's job (connector/sync/importer.py): one worker at a time, a lost task
enqueued again by the beat, a killed worker's job taken over once it has gone quiet
(docs/reliability.md I-13). PostgreSQL and the files on disk are real."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from connector.sync import importer
from inbox.models import ImportJob, Message
from tests.connector.synckit import make_raw

pytestmark = pytest.mark.django_db


def job_with_files(mailbox, raws: list[bytes], **fields) -> ImportJob:
    relative = f"imports/test-{mailbox.pk}-{len(raws)}"
    directory = Path(settings.MEDIA_ROOT) / relative
    directory.mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(raws):
        (directory / f"{i}-eml.eml").write_bytes(raw)
    return ImportJob.objects.create(
        mailbox=mailbox,
        file_names=[f"m{i}.eml" for i in range(len(raws))],
        directory=relative,
        **fields,
    )


def test_a_second_delivery_of_a_running_job_does_nothing_and_a_quiet_one_is_taken_over(
    personal_mailbox,
):
    now = timezone.now()
    job = job_with_files(
        personal_mailbox,
        [make_raw("one"), make_raw("two")],
        state=ImportJob.State.RUNNING,
        heartbeat_at=now,
    )
    # Its worker is alive (progress a moment ago): a redelivered task leaves it alone.
    assert importer.run_import_job(job.pk).state == ImportJob.State.RUNNING
    assert not Message.objects.exists()
    # Its worker went quiet (killed): the redelivered task takes it over and finishes it.
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=now - timedelta(hours=1))
    done = importer.run_import_job(job.pk)
    assert done.state == ImportJob.State.DONE and done.stored == 2 == done.total
    # Finished: a late delivery changes nothing.
    assert importer.run_import_job(job.pk).stored == 2
    assert Message.objects.count() == 2


def test_a_lost_task_is_enqueued_again_once_a_minute_never_twice_at_once(personal_mailbox):
    old = timezone.now() - timedelta(minutes=5)
    waiting = job_with_files(personal_mailbox, [make_raw("w")])
    fresh = job_with_files(personal_mailbox, [make_raw("a"), make_raw("b")])
    ImportJob.objects.filter(pk=waiting.pk).update(created_at=old)
    enqueued: list[int] = []
    # Two beats by mistake at the same moment: the job is enqueued once.
    for _ in range(2):
        importer.dispatch_waiting(enqueue=enqueued.append, older_than=timedelta(minutes=1))
    assert enqueued == [waiting.pk]  # the fresh upload's own task is still on its way
    ImportJob.objects.filter(pk=waiting.pk).update(enqueued_at=old)
    importer.dispatch_waiting(enqueue=enqueued.append, older_than=timedelta(minutes=1))
    assert enqueued == [waiting.pk, waiting.pk]
    assert fresh.pk not in enqueued
