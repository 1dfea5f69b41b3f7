"""/healthz against the real database and a real Redis broker (and a port where none listens)."""

from __future__ import annotations

import os
import time

import pytest
from django.db import OperationalError

from crm import health
from tests.servers.certs import refused_port

pytestmark = pytest.mark.django_db

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def test_healthy_with_redis_broker(client, settings):
    settings.CELERY_BROKER_URL = REDIS_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthy_with_embedded_filesystem_broker(client, settings, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
    }

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_missing_filesystem_broker_folder_is_a_failure(client, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    missing = str(tmp_path / "gone")
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": missing,
        "data_folder_out": missing,
    }

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "failed"}


def test_broker_on_a_closed_port_gives_503_quickly(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{refused_port()}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "failed"}
    # A load balancer's probe times out after a few seconds; the check must answer first.
    assert elapsed < 2 * health.BROKER_TIMEOUT + 1


def test_database_failure_is_named(client, settings, monkeypatch):
    settings.CELERY_BROKER_URL = REDIS_URL

    def broken_database():
        raise OperationalError("connection refused")

    monkeypatch.setitem(health.CHECKS, "database", broken_database)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "failed", "broker": "ok"}


def test_open_to_anonymous_callers_but_read_only(client, settings):
    settings.CELERY_BROKER_URL = REDIS_URL

    assert client.get("/healthz").status_code == 200  # no redirect to the login page
    assert client.post("/healthz").status_code == 405
