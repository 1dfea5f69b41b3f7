"""Celery tasks: thin. They take ids, call one function, and own only retries and logging.

Tasks acknowledge late (settings): a worker killed mid-sync leaves its message to be
redelivered, which is harmless because the lease and the ledger make a sync idempotent (I-03).
"""

from __future__ import annotations

import logging

from celery import shared_task

from . import dispatch, sync

log = logging.getLogger(__name__)


@shared_task(name="relay.sync_mailbox", soft_time_limit=1800, time_limit=1900)
def sync_mailbox(mailbox_id: int) -> str:
    report = sync.sync_mailbox(mailbox_id)
    return report.summary()


@shared_task(name="relay.beat_tick", ignore_result=True)
def beat_tick() -> int:
    dispatched = dispatch.dispatch_due(enqueue=lambda pk: sync_mailbox.delay(pk))
    if dispatched:
        log.info("beat dispatched %s mailboxes", len(dispatched))
    return len(dispatched)
