"""Beat must run once; a second beat started by mistake doubles no work (docs/product.md §3.1). The
claim in connector/scheduling/dispatch.py (one conditional UPDATE per due mailbox) and the sync
lease (connector/sync/lease.py) are what guarantee it; these tests run the guarantee in real,
separate processes, since a single process cannot overlap two database transactions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from inbox.models import Mailbox, Message
from tests import factories as f
from tests.connector.synckit import assert_in_step, make_mailbox, make_raw
from tests.workerkit import celery_processes, wait_for, worker_env  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

TICK = r"""
import json, sys, time
import django

django.setup()
from connector.scheduling import dispatch

print("ready", flush=True)
sys.stdin.readline()  # "go": both processes are set up, they start together
began = time.time()
# Each enqueue takes a while, as a broker round trip does: the two ticks' claims interleave.
got = dispatch.dispatch_due(enqueue=lambda pk: time.sleep(0.05))
print(json.dumps({"began": began, "ended": time.time(), "dispatched": got}))
"""

SYNC_TASK = r"""
import sys, time
import django

django.setup()
from connector.scheduling import tasks

print("ready", flush=True)
sys.stdin.readline()  # "go": both processes are set up, they start together
print(tasks.sync_mailbox(int(sys.argv[1])))  # the task body, as a worker runs it
"""


def run_in_parallel(tmp_path, code: str, *args_per_process: list[str]) -> list[str]:
    """Start the processes, wait until each has set Django up and says "ready", then tell them
    all to go at once. (A start time a few seconds ahead was not enough on a loaded machine:
    one process was still starting when the other had finished.)"""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=settings.BASE_DIR,
            env=worker_env(tmp_path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in args_per_process
    ]
    for proc in procs:
        ready = proc.stdout.readline().strip()
        assert ready == "ready", (ready, proc.stderr.read() if proc.poll() is not None else "")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip().splitlines()[-1])
    return outputs


def needs_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("needs a database two processes can share")


def test_two_beat_ticks_at_once_dispatch_each_due_mailbox_once(tmp_path):
    needs_postgresql()
    mailboxes = [f.MailboxFactory(next_sync_at=None) for _ in range(20)]
    expected = sorted(m.pk for m in mailboxes)
    for _round in range(2):
        Mailbox.objects.update(next_sync_at=None)
        first, second = (json.loads(o) for o in run_in_parallel(tmp_path, TICK, [], []))
        # The two ticks really ran at the same time (each takes a second)...
        assert first["began"] < second["ended"] and second["began"] < first["ended"]
        # ...and still each mailbox was dispatched exactly once, by one tick or the other.
        assert sorted(first["dispatched"] + second["dispatched"]) == expected
        assert not set(first["dispatched"]) & set(second["dispatched"])


def test_two_sync_tasks_for_one_mailbox_at_once_one_is_already_syncing(tmp_path, imap_user):
    needs_postgresql()
    imap_user.server.deliver_many(imap_user, [make_raw(f"Question {n}") for n in range(40)])
    mailbox = make_mailbox(imap_user)
    outputs = run_in_parallel(tmp_path, SYNC_TASK, [str(mailbox.pk)], [str(mailbox.pk)])
    assert sorted(o.split(":")[0] for o in outputs) == ["busy", "completed"], outputs
    assert "busy: already syncing" in outputs
    assert Message.objects.filter(mailbox=mailbox).count() == 40
    assert_in_step(mailbox, imap_user)


def test_two_real_beats_and_workers_sync_every_mailbox_exactly_once(
    dovecot,
    celery_processes,  # noqa: F811
):
    """Two `celery beat` processes tick every second for a while; every mailbox is synced once
    (one lease taken: lease_generation 1) and its mail stored once."""
    needs_postgresql()
    users = []
    for n in range(20):
        user = dovecot.create_user()
        dovecot.deliver_many(user, [make_raw(f"Mailbox {n} message {i}") for i in range(2)])
        users.append(user)
    mailboxes = [
        make_mailbox(_user(dovecot, user), refresh_interval=3600, next_sync_at=None)
        for user in users
    ]
    celery_processes.worker("w1")
    celery_processes.worker("w2")
    celery_processes.beat("beat1")
    celery_processes.beat("beat2")  # started by mistake

    wait_for(
        lambda: Mailbox.objects.filter(last_success_at__isnull=False).count() == 20,
        timeout=75,
        what="the first sync of all 20 mailboxes",
    )

    def ticks() -> int:  # a "received" and a "succeeded" line per tick, from either beat
        return sum(celery_processes.log(w).count("relay.beat_tick") for w in ("w1", "w2"))

    # Several more ticks of both beats (each ticks every second): nothing is due, nothing may
    # run. Waited for, not slept: as long as the ticks take on a loaded machine.
    ticks_when_synced = ticks()
    wait_for(
        lambda: ticks() >= ticks_when_synced + 8,
        timeout=60,
        what="four more ticks after every mailbox was synced",
    )
    assert celery_processes.alive("beat1") and celery_processes.alive("beat2")
    generations = dict(Mailbox.objects.values_list("pk", "lease_generation"))
    assert generations == {m.pk: 1 for m in mailboxes}
    for mailbox, user in zip(mailboxes, users, strict=True):
        assert_in_step(mailbox, _user(dovecot, user))
        assert Message.objects.filter(mailbox=mailbox).count() == 2


def _user(dovecot, login):
    from tests.servers.fixtures import ImapUser

    return ImapUser(dovecot, login)
