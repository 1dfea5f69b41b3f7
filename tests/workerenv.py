"""Each pytest-xdist worker gets a Redis database and a data folder of its own (loaded with
``-p tests.workerenv`` from pyproject.toml, before pytest-django reads crm/settings.py).

``pytest -n 4`` starts workers gw0..gw3. pytest-django already gives each its own PostgreSQL
test database (``test_<name>_gw0``...). What it cannot know about is set here, in the
environment, so that crm/settings.py and every subprocess a test starts (Celery workers and
beats of tests/workerkit.py, ``manage.py`` runs) see the same values:

- ``REDIS_URL``: the database number of ``REDIS_URL`` plus the worker's index (``/0`` becomes
  ``/0``..``/3``); the suite flushes only that database.
- ``RELAY_DATA_DIR``: a ``gw<N>`` folder under the one given (media, secrets, broker folders).

Servers (Dovecot, aiosmtpd, the OAuth and fault-proxy fakes, live_server) never use a fixed
port: they bind a free one and report it. Without xdist (``pytest`` alone) nothing changes.
"""

from __future__ import annotations

import os
import re

import pytest

REDIS_DATABASES = 16  # Redis' default `databases`


def worker_index() -> int | None:
    """0 for gw0, 1 for gw1... None outside pytest-xdist (or in its controller)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    match = re.fullmatch(r"gw(\d+)", worker)
    return int(match.group(1)) if match else None


def redis_url_for_worker(url: str, index: int) -> str:
    """``redis://host:6379/3`` for worker 2 of ``redis://host:6379/1``; no number means 0."""
    match = re.fullmatch(r"(?P<base>rediss?://[^/?#]*)(?:/(?P<db>\d*))?(?P<rest>[?#].*)?", url)
    if not match:
        raise pytest.UsageError(f"REDIS_URL {url!r} is not a redis:// URL")
    number = int(match.group("db") or 0) + index
    if number >= REDIS_DATABASES:
        raise pytest.UsageError(
            f"pytest-xdist worker {index} would use Redis database {number} of {url!r}: "
            f"fewer workers (-n) or a lower database number in REDIS_URL"
        )
    return f"{match.group('base')}/{number}{match.group('rest') or ''}"


def apply(index: int) -> None:
    name = f"gw{index}"
    if os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = redis_url_for_worker(os.environ["REDIS_URL"], index)
    if os.environ.get("RELAY_DATA_DIR"):
        data = os.path.join(os.environ["RELAY_DATA_DIR"], name)
        os.makedirs(data, exist_ok=True)
        os.environ["RELAY_DATA_DIR"] = data


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # Before pytest-django's own hook, which imports the settings (they read the environment).
    index = worker_index()
    if index is not None and not os.environ.get("RELAY_WORKER_ENV_APPLIED"):
        apply(index)
        os.environ["RELAY_WORKER_ENV_APPLIED"] = os.environ["PYTEST_XDIST_WORKER"]
    return (yield)
