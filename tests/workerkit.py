"""Real Celery processes for the scale-out tests: workers and beats started as
`celery -A crm ...` subprocesses against Redis and the test database, each in its own process
group so a test can SIGKILL one whole worker (its pool child included) as an OOM killer or a
dying container would, and so none outlives the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

CELERY = str(Path(sys.executable).with_name("celery"))


def redis_url() -> str:
    """The test run's Redis database (REDIS_URL, which bin/test points at a database for the
    suite, one per pytest-xdist worker: tests/workerenv.py); its broker queue is flushed before
    and after, and no other database of the shared Redis is touched. Without REDIS_URL, db 13."""
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process: the test database (pytest-django's, by name), the
    dedicated Redis db, the same encryption keys (the mailbox passwords were encrypted here)."""
    db = connection.settings_dict
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="crm.settings",
        DATABASE_URL=(
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        REDIS_URL=redis_url(),
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        RELAY_ENCRYPTION_KEYS=",".join(settings.RELAY_ENCRYPTION_KEYS),
        RELAY_TOKEN_KEY=settings.RELAY_TOKEN_KEY,
        RELAY_DATA_DIR=str(tmp_path / "data"),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        RELAY_ALLOWED_MAIL_HOSTS="127.0.0.1,localhost",
        RELAY_BEAT_INTERVAL="1",
        CELERY_TASK_ALWAYS_EAGER="false",
        LOG_LEVEL="INFO",
        RELAY_WORKER_LOG_LEVEL="INFO",  # what the tests read in the workers' logs
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Processes:
    tmp_path: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def _start(
        self, name: str, args: list[str], *, command: list[str] | None = None, env=None
    ) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [*(command or [CELERY, "-A", "crm"]), *args],
            cwd=settings.BASE_DIR,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: killpg reaches the pool child too
        )
        proc.log_file = log
        self.procs[name] = proc
        return proc

    def worker(self, name: str) -> subprocess.Popen:
        return self._start(
            name,
            [
                "worker",
                "--concurrency",
                "1",
                "-Q",
                "celery,push",  # the push gateway's targeted syncs too (docs/product.md §3.11)
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        )

    def gateway(self, name: str = "gateway", **env: str) -> subprocess.Popen:
        """`manage.py push_gateway`, with settings such as RELAY_PUSH_WATCHDOG in ``env``."""
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        return self._start(
            name, ["push_gateway", "--name", name], command=[sys.executable, manage], env=env
        )

    def beat(self, name: str = "beat") -> subprocess.Popen:
        return self._start(
            name,
            ["beat", "--schedule", str(self.tmp_path / f"{name}-schedule"), "--loglevel", "INFO"],
        )

    def pids(self, name: str) -> set[int]:
        """The process and its children (the prefork pool), read from /proc."""
        root = self.procs[name].pid
        found = {root}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid in found or ppid == root:
                found.add(int(entry.name))
        return found

    def kill(self, name: str) -> set[int]:
        """SIGKILL the whole worker at once: no warm shutdown, no ack, no lease release."""
        pids = self.pids(name)
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.log_file.close()
        return pids

    def stop(self, name: str) -> None:
        """SIGTERM to the main process, as `docker stop` does: a worker ends the task it is
        running (its warm shutdown), then stops its pool."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)
        try:  # a pool child its main process left behind, if any
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.log_file.close()

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
            if not proc.log_file.closed:
                proc.log_file.close()


@pytest.fixture
def celery_processes(tmp_path, settings):
    """Start workers and beats with `.worker(name)` / `.beat(name)`; all are stopped (and the
    Redis db flushed) at the end, whatever happened."""
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need a database they can share (PostgreSQL)")
    client = redis.Redis.from_url(redis_url())
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {redis_url()}")
    client.flushdb()
    settings.MEDIA_ROOT = tmp_path / "media"
    processes = Processes(tmp_path, worker_env(tmp_path))
    try:
        yield processes
    finally:
        processes.stop_all()
        client.flushdb()
        client.close()


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
