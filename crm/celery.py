"""The Celery application. Tasks live in connector/scheduling/tasks.py (and the notification
mail batch in notifications/tasks.py); the beat schedule is
data in settings (CELERY_BEAT_SCHEDULE) so that one place says what runs when."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

app = Celery("relay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["connector.scheduling", "notifications"])
