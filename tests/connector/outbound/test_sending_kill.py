"""A worker process really killed while sending (docs/reliability.md S-23, S-24): the send runs in a
child Python process against the same test database, Dovecot and aiosmtpd, and dies with
os._exit() at a named step of connector/outbound/ (no rollback handler, no SMTP QUIT, no IMAP
LOGOUT: what SIGKILL leaves). The parent then does what the beat tick does after a restart.
Expected every time: no loss, no second delivery, no duplicate in Sent, the sync in step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from connector.ingest import storage
from connector.outbound import outbox as sending
from connector.sync import mailbox as sync
from inbox import ports
from inbox.models import Location, Mailbox, Message, OutboxEntry
from inbox.services.composing import outbox_compose
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.synckit import assert_in_step, make_mailbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]

CHILD = r"""
import os, sys
import django

django.setup()
from connector.outbound import outbox as sending, states

entry_id, step = int(sys.argv[1]), sys.argv[2]


def die(name, entry):
    if name == step:
        os._exit(137)  # the worker is gone, mid-step


states.STEP_HOOK = die
sending.process_entry(entry_id)
os._exit(0)
"""


def run_worker_dying_at(entry: OutboxEntry, step: str) -> int:
    db = connection.settings_dict
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="crm.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        RELAY_ENCRYPTION_KEYS=",".join(settings.RELAY_ENCRYPTION_KEYS),
        RELAY_TOKEN_KEY=settings.RELAY_TOKEN_KEY,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        RELAY_ALLOWED_MAIL_HOSTS="127.0.0.1,localhost",
        CELERY_TASK_ALWAYS_EAGER="true",
    )
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(entry.pk), step],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        timeout=120,
    )
    return result.returncode


def queued_entry(imap_user, smtp_server, monkeypatch) -> tuple[Mailbox, OutboxEntry]:
    """An entry queued but not sent in this process (the port's "send soon" is unplugged)."""
    staff = f.UserFactory()
    mailbox = make_mailbox(
        imap_user,
        owner=staff,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    smtp_server.user, smtp_server.password = imap_user.login, imap_user.password
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()
    with monkeypatch.context() as patch:
        patch.setattr(ports.mail(), "send_soon", lambda entry_id: None)
        entry = outbox_compose(
            user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
        )
    return mailbox, entry


def restart(entry: OutboxEntry) -> None:
    """After the restart: the dead worker's claim has run out, the tick runs (twice: a
    second tick must change nothing)."""
    now = timezone.now()
    OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=now, finishing_until=now)
    sending.dispatch_due(enqueue=sending.process_entry)
    OutboxEntry.objects.filter(pk=entry.pk, next_attempt_at__isnull=False).update(
        next_attempt_at=timezone.now()
    )
    sending.dispatch_due(enqueue=sending.process_entry)


def sent_copies(imap_user) -> list[str]:
    return [m.sha256 for m in imap_user.server.server_truth(imap_user.login) if m.folder == "Sent"]


@pytest.mark.parametrize("step", ["sent_committed", "stored", "appended"])
def test_killed_after_the_server_accepted_and_before_sent_was_recorded_in_full(
    imap_user, smtp_server, step, monkeypatch
):
    mailbox, entry = queued_entry(imap_user, smtp_server, monkeypatch)
    assert run_worker_dying_at(entry, step) == 137
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT  # committed right after the 250
    assert len(smtp_server.received) == 1

    restart(entry)

    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT and entry.appended_to_sent
    assert len(smtp_server.received) == 1, "sent twice"
    raw = storage.read_raw(entry.raw_file)
    assert sent_copies(imap_user) == [storage.sha256(raw)], "not exactly one copy in Sent"
    assert Location.objects.filter(message=entry.sent_message, folder__name="Sent").count() == 1
    assert sync.sync_mailbox(mailbox.pk).completed
    assert_in_step(mailbox, imap_user)
    assert Message.objects.filter(mailbox=mailbox, message_id=entry.message_id).count() == 1


def test_killed_between_the_servers_250_and_the_commit(imap_user, smtp_server, monkeypatch):
    """docs/reliability.md S-24: the outcome was never written down. The entry is not sent again by
    itself: it is "verify" (the Sent folder has no copy: this server does not file SMTP mail
    there)."""
    mailbox, entry = queued_entry(imap_user, smtp_server, monkeypatch)
    assert run_worker_dying_at(entry, "smtp_accepted") == 137
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENDING
    assert len(smtp_server.received) == 1

    restart(entry)

    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.VERIFY
    assert len(smtp_server.received) == 1 and smtp_server.attempts == 1
    assert sent_copies(imap_user) == []


def test_killed_before_the_transaction_started(imap_user, smtp_server, monkeypatch):
    """Died while claiming (rolled back): the entry is still queued and goes out once."""
    mailbox, entry = queued_entry(imap_user, smtp_server, monkeypatch)
    assert run_worker_dying_at(entry, "built") == 137
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.QUEUED and smtp_server.attempts == 0

    restart(entry)

    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT and entry.appended_to_sent
    assert len(smtp_server.received) == 1
    assert len(sent_copies(imap_user)) == 1
