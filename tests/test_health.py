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


def checks(response) -> dict:
    """The checks that decide 200 or 503 (the rest of the answer reports, e.g. "push")."""
    return {k: v for k, v in response.json().items() if k in ("database", "broker")}


def test_healthy_with_redis_broker(client, settings):
    settings.CELERY_BROKER_URL = REDIS_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

    response = client.get("/healthz")

    assert response.status_code == 200
    assert checks(response) == {"database": "ok", "broker": "ok"}
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
    assert checks(response) == {"database": "ok", "broker": "ok"}


def test_missing_filesystem_broker_folder_is_a_failure(client, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    missing = str(tmp_path / "gone")
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": missing,
        "data_folder_out": missing,
    }

    response = client.get("/healthz")

    assert response.status_code == 503
    assert checks(response) == {"database": "ok", "broker": "failed"}


def test_broker_on_a_closed_port_gives_503_quickly(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{refused_port()}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert checks(response) == {"database": "ok", "broker": "failed"}
    # A load balancer's probe times out after a few seconds; the check must answer first.
    assert elapsed < 2 * health.BROKER_TIMEOUT + 1


def test_database_failure_is_named(client, settings, monkeypatch):
    settings.CELERY_BROKER_URL = REDIS_URL

    def broken_database():
        raise OperationalError("connection refused")

    monkeypatch.setitem(health.CHECKS, "database", broken_database)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert checks(response) == {"database": "failed", "broker": "ok"}


def test_open_to_anonymous_callers_but_read_only(client, settings):
    settings.CELERY_BROKER_URL = REDIS_URL

    assert client.get("/healthz").status_code == 200  # no redirect to the login page
    assert client.post("/healthz").status_code == 405


def test_healthz_shows_the_push_gateways_heartbeat_and_the_watches_by_state(client, settings):
    """docs/product.md §3.11: operators see whether mail is pushed or polled, and whether each
    gateway is alive; no address or host name goes to an anonymous caller."""
    import datetime as dt

    from django.utils import timezone

    from connector.sync import watches
    from inbox.models import PushGateway, WatchState
    from tests import factories as f

    settings.CELERY_BROKER_URL = REDIS_URL
    live, reconnecting, polled = (f.MailboxFactory(first_sync_done=True) for _ in range(3))
    gateway = watches.register("gateway-host-1:push")
    watches.claim(gateway.pk, 2)
    watches.set_state(gateway.pk, live.pk, WatchState.LIVE)
    watches.set_state(gateway.pk, reconnecting.pk, WatchState.RECONNECTING, "lost")
    dead = PushGateway.objects.create(
        name="dead", heartbeat_at=timezone.now(), expires_at=timezone.now() - dt.timedelta(1)
    )

    body = client.get("/healthz").json()

    assert body["push"]["watches"] == {
        "polling": 1,
        "connecting": 0,
        "live": 1,
        "reconnecting": 1,
    }
    alive = {g["id"]: g["alive"] for g in body["push"]["gateways"]}
    assert alive == {gateway.pk: True, dead.pk: False}
    assert "gateway-host-1" not in str(body) and live.email_address not in str(body)
