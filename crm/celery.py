"""The Celery application. Tasks live in connector/scheduling/tasks.py (and the notification
mail batch in notifications/tasks.py); the beat schedule is
data in settings (CELERY_BEAT_SCHEDULE) so that one place says what runs when."""

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

app = Celery("relay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["connector.scheduling", "notifications"])


@after_setup_logger.connect
@after_setup_task_logger.connect
def _worker_log_level(logger, **kwargs):
    """Workers and beat log at RELAY_WORKER_LOG_LEVEL (WARNING by default), whatever
    `--loglevel` says: a line per task and per tick buries the errors (README, Logs)."""
    from django.conf import settings

    level = logging.getLevelName(settings.RELAY_WORKER_LOG_LEVEL)
    if isinstance(level, int):
        logger.setLevel(level)
        for name in ("celery", "celery.task", "celery.beat", "celery.worker"):
            logging.getLogger(name).setLevel(level)
