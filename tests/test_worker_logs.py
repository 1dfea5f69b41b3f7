"""`make run` starts the worker with embedded beat quietly, at RELAY_WORKER_LOG_LEVEL (WARNING by
default): a line per task and per tick would bury the errors someone must read, and the
address and login bin/run prints would not stay the last lines on screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from inbox.models import Mailbox
from tests import factories as f
from tests.workerkit import celery_processes, wait_for  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_bin_run_starts_the_worker_quiet_and_at_the_setting():
    run = (Path(settings.BASE_DIR) / "bin" / "run").read_text()
    line = next(line for line in run.splitlines() if "celery -A crm" in line)
    assert "--quiet" in line and "--loglevel" not in line
    # The address and login come last: after the worker and web server are started.
    assert run.index("Sign in as: demo / demo") > run.index("celery -A crm")


def test_the_worker_and_its_beat_write_no_info_lines_by_default(
    celery_processes,  # noqa: F811
    tmp_path,
):
    celery_processes.env.pop("RELAY_WORKER_LOG_LEVEL")
    # Due at once; nothing listens on its port, so every sync fails fast.
    mailbox = f.MailboxFactory(email_address="quiet@relay.test", imap_port=9, smtp_port=9)
    Mailbox.objects.filter(pk=mailbox.pk).update(state="active", next_sync_at=None)
    celery_processes._start(
        "run",
        ["--quiet", "worker", "-B", "--concurrency", "1", "--schedule", str(tmp_path / "beat")],
    )
    # The beat ticked, the worker ran the sync task: both were busy while we watched.
    wait_for(
        lambda: Mailbox.objects.filter(pk=mailbox.pk, last_sync_at__isnull=False).exists(),
        timeout=90,
        what="a sync run by the worker",
    )
    log = celery_processes.log("run")
    assert "level=INFO" not in log and "celery@" not in log  # no banner, no "ready"
    assert "Received task" not in log and "succeeded in" not in log
