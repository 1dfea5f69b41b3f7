"""The notification mail batch, run by the beat (CELERY_BEAT_SCHEDULE in crm/settings.py).
Thin: one call; the batch itself is idempotent (notifications/services.py send_digests)."""

from __future__ import annotations

import logging

from celery import shared_task

from .services import send_digests

log = logging.getLogger(__name__)


@shared_task(name="relay.send_notification_digests")
def send_notification_digests() -> str:
    report = send_digests()
    if report.digests or report.failed:
        log.info(
            "notification digests made=%s sent=%s failed=%s",
            report.digests,
            report.sent,
            report.failed,
        )
    return f"digests={report.digests} sent={report.sent} failed={report.failed}"
