"""Celery tasks: thin. They take ids, call one function, and own only retries and logging.

Tasks acknowledge late (settings): a worker killed mid-sync leaves its message to be
redelivered, which is harmless because the lease and the ledger make a sync idempotent
(docs/reliability.md I-03).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError

from connector.emailapi import intake
from connector.filing import refile
from connector.outbound import outbox
from connector.sync import importer, watches
from connector.sync import mailbox as sync
from connector.transport import oauth
from inbox.services import conversations
from inbox.services import mailboxes as mailbox_services

from . import dispatch
from . import purge as purging

log = logging.getLogger(__name__)


@shared_task(bind=True, name="relay.sync_mailbox", soft_time_limit=1800, time_limit=1900)
def sync_mailbox(self, mailbox_id: int) -> str:
    # oauth.connect_imap refreshes a Google/Microsoft access token before it expires
    # (docs/reliability.md C-10) and opens a plain session for every other mailbox. The task's
    # id lets a redelivery take over the lease a dead first attempt left (connector/sync/lease.py).
    report = sync.sync_mailbox(
        mailbox_id, connect=oauth.connect_imap, task_id=self.request.id or ""
    )
    _run_requested_meanwhile(report)
    return report.summary()


# A database that went away (restart, failover) is worth retrying; filing and syncing are
# idempotent (the ledger, docs/reliability.md I-03).
DB_RETRY = dict(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)


@shared_task(bind=True, name="relay.push_sync", soft_time_limit=1800, time_limit=1900, **DB_RETRY)
def push_sync(self, mailbox_id: int, folders: list[str]) -> str:
    """The push gateway's targeted sync of the folders a server said changed, on the `push`
    queue (settings CELERY_TASK_ROUTES) so it never waits behind first syncs
    (connector/scheduling/gateway.py, docs/product.md §3.11). Retried while the database is
    away: a watched mailbox is next polled only by the hourly safety net, so a push sync lost
    to an outage would leave its mail waiting for it (docs/reliability.md P-27). A retry takes over
    the lease an attempt cut off from the database could not release (connector/sync/lease.py)."""
    report = sync.sync_mailbox(
        mailbox_id, connect=oauth.connect_imap, folders=folders, task_id=self.request.id or ""
    )
    _run_requested_meanwhile(report)
    return report.summary()


def _run_requested_meanwhile(report) -> list[int]:
    """A sync that found this one busy asked for another: claim and enqueue it now, through the
    beat's own claim so it runs once (docs/reliability.md S-36)."""
    if not report.requested_meanwhile:
        return []
    return dispatch.dispatch_due(enqueue=lambda pk: sync_mailbox.delay(pk), only=report.mailbox_id)


@shared_task(name="relay.beat_tick", ignore_result=True)
def beat_tick() -> int:
    # Dead push gateways first: their mailboxes become due now (docs/reliability.md P-14).
    released = watches.reap()
    if released:
        log.warning("push gateway lease expired: %s mailboxes back to polling", released)
    dispatched = dispatch.dispatch_due(enqueue=lambda pk: sync_mailbox.delay(pk))
    # An upload whose task was lost waits no longer than a minute (docs/product.md §3.10).
    importer.dispatch_waiting(
        enqueue=lambda pk: import_files.delay(pk), older_than=timedelta(minutes=1)
    )
    if dispatched:
        log.info("beat dispatched %s mailboxes", len(dispatched))
    return len(dispatched)


@shared_task(name="relay.file_messages", soft_time_limit=600, time_limit=660, **DB_RETRY)
def file_messages(message_ids: list[int], initial: bool = False) -> str:
    report = intake.file_new_mail(message_ids=message_ids, initial=initial)
    return report.summary()


@shared_task(name="relay.refile_for_addresses", soft_time_limit=3600, time_limit=3700, **DB_RETRY)
def refile_for_addresses(emails: list[str] | None = None, domains: list[str] | None = None) -> str:
    report = refile.refile_for_addresses(emails=emails or (), domains=domains or ())
    if report.filings:
        log.info("refiled for %s %s: %s", emails, domains, report.summary())
    return report.summary()


@shared_task(name="relay.import_files", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def import_files(job_id: int) -> str:
    job = importer.run_import_job(job_id)
    return f"{job.get_state_display()}: {job.stored} stored, {job.failed} failed"


@shared_task(name="relay.import_retry", soft_time_limit=300, time_limit=330)
def import_retry(entry_id: int) -> str:
    return importer.retry_held(entry_id).outcome


@shared_task(name="relay.send_outbox_entry", soft_time_limit=300, time_limit=330)
def send_outbox_entry(entry_id: int) -> str:
    # No Celery retries: the entry's state and next_attempt_at are the retry schedule, and a
    # redelivered task finds the entry claimed or done (connector/outbound/outbox.py).
    return outbox.process_entry(entry_id).summary()


@shared_task(name="relay.outbox_tick", ignore_result=True)
def outbox_tick() -> int:
    dispatched = outbox.dispatch_due(enqueue=lambda pk: send_outbox_entry.delay(pk))
    if dispatched:
        log.info("outbox tick dispatched %s entries", len(dispatched))
    return len(dispatched)


@shared_task(name="relay.file_pending", ignore_result=True)
def file_pending() -> int:
    """Beat: file messages whose filing task was lost (connector/emailapi/intake.py)."""
    count = intake.file_pending()
    if count:
        log.info("filed %s messages whose filing task had been lost", count)
    return count


@shared_task(name="relay.purge", ignore_result=True, soft_time_limit=3600, time_limit=3700)
def purge() -> str:
    """Beat, daily: completed job records and old ledger entries (connector/scheduling/purge.py)."""

    return purging.purge().summary()


@shared_task(name="relay.wake_snoozed", ignore_result=True)
def wake_snoozed() -> int:
    """Beat, every minute: snoozed conversations whose time came go back to Open
    (inbox/services/conversations.py)."""
    woke = conversations.wake_snoozed()
    if woke:
        log.info("woke %s snoozed conversations", woke)
    return woke


@shared_task(name="relay.warn_expiring_grants", ignore_result=True)
def warn_expiring_grants() -> int:
    # A week before a Google or Microsoft sign-in dies (docs/product.md §2.9).
    return len(mailbox_services.warn_expiring_grants())
