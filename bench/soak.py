"""Soak by hand (docs/reliability.md I-09 and §8.6): mail arrives continuously on a few
mailboxes while faults are injected every 30 to 120 seconds; at the end, after the faults stop
and the mailboxes catch up, it prints the faults injected and the messages lost, duplicated and
phantom (all must be 0), and how much the workers' memory grew.

    .venv/bin/python bench/soak.py                    # about an hour
    .venv/bin/python bench/soak.py --minutes 5 --min-gap 10 --max-gap 30     # a short run

Everything is private and thrown away afterwards: a PostgreSQL started with pg_ctl on a free
port (restarting the shared one on 5432 is not allowed: docs/reliability.md §7), a redis-server on a
free port, a Dovecot, and the fault proxy of tests/servers/faultproxy.py between the workers
and Dovecot. Two `celery -A crm worker --concurrency 1` processes and one beat do the work.

Faults, drawn at random: the proxy cuts every live IMAP connection; a worker is SIGKILLed (and
started again, as a supervisor would); Redis is restarted; PostgreSQL is restarted; a folder's
UIDVALIDITY is reset. A killed worker's lease runs out by itself after five minutes
(connector/sync/lease.py), so the catch-up at the end may take that long.

Exit status 0 only when lost, duplicated and phantom are all 0.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infra import (  # noqa: E402
    ROOT,
    Celery,
    PrivatePostgres,
    PrivateRedis,
    admin_sql,
    make_message,
    remove,
    temp_root,
)

DB = "relay_soak"
FAULTS = ("proxy_cut", "worker_kill", "redis_restart", "postgres_restart", "uidvalidity_reset")
WARM_UP = 60.0  # seconds after a worker (re)starts before its memory counts as the baseline


def retry_db(call, *, attempts: int = 60):
    """This process's own reads ride out the PostgreSQL restarts it injects."""
    from django.db import InterfaceError, OperationalError, close_old_connections, connection

    for attempt in range(attempts):
        try:
            return call()
        except (OperationalError, InterfaceError):
            if attempt == attempts - 1:
                raise
            connection.close()
            close_old_connections()
            time.sleep(1)
    return None


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = temp_root("relay-soak-")
        self.pg = PrivatePostgres(self.root / "pg")
        self.redis = PrivateRedis(self.root / "redis")
        self.faults: Counter[str] = Counter()
        self.delivered = 0
        self.started: dict[str, float] = {}
        self.rss: dict[str, list[tuple[float, float]]] = {}
        self.dovecot = None
        self.proxy = None
        self.celery: Celery | None = None
        self.users = []

    # --- setup -------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "crm.settings",
            "DATABASE_URL": self.pg.url(DB),
            "REDIS_URL": self.redis.url,
            "RELAY_DATA_DIR": str(self.root / "data"),
            "MEDIA_ROOT": str(self.root / "data" / "media"),
            "DJANGO_SECRET_KEY": "bench-soak-only",
            "RELAY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "RELAY_TOKEN_KEY": "bench-soak-only",
            "RELAY_ALLOWED_MAIL_HOSTS": "127.0.0.1,localhost",
            "RELAY_BEAT_INTERVAL": "2",
            "RELAY_IMAP_TIMEOUT": "20",
            "DB_CONN_MAX_AGE": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }

    def setup(self) -> None:
        self.pg.start()
        self.redis.start()
        env = self.environment()
        os.environ.update(env)
        admin_sql(f"postgres://postgres@127.0.0.1:{self.pg.port}", f"CREATE DATABASE {DB}")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        import django

        django.setup()
        from django.contrib.auth import get_user_model

        from inbox.crypto import encrypt
        from inbox.models import Mailbox
        from tests.servers.dovecot import make_certificate, start_dovecot
        from tests.servers.faultproxy import FaultProxy
        from tests.servers.fixtures import ImapUser

        self.dovecot = start_dovecot(make_certificate())
        self.proxy = FaultProxy(self.dovecot.host, self.dovecot.port).start()
        owner = get_user_model().objects.create(username="soak")
        for _ in range(self.args.mailboxes):
            user = ImapUser(self.dovecot, self.dovecot.create_user())
            self.dovecot.deliver_many(user, [make_message(i, to=user) for i in range(20)])
            self.delivered += 20
            Mailbox.objects.create(
                owner=owner,
                email_address=user.login,
                login=user.login,
                password_encrypted=encrypt(user.password),
                imap_host=self.proxy.host,
                imap_port=self.proxy.port,  # every IMAP byte passes the fault proxy
                imap_security="none",
                refresh_interval=5,
            )
            self.users.append(user)
        self.celery = Celery(self.root / "celery", env)
        for i in range(self.args.workers):
            self.start_worker(f"w{i + 1}")
        self.celery.beat()

    def start_worker(self, name: str) -> None:
        self.celery.worker(name)
        self.started[name] = time.monotonic()
        self.rss[name] = []

    # --- faults ------------------------------------------------------------------------------
    def inject(self, kind: str) -> str:
        if kind == "proxy_cut":
            self.proxy.cut_all()
            return "cut every IMAP connection"
        if kind == "worker_kill":
            name = self.rng.choice(sorted(n for n in self.celery.procs if n.startswith("w")))
            self.celery.kill(name)
            self.start_worker(name)
            return f"SIGKILL {name}, started again"
        if kind == "redis_restart":
            self.redis.restart()
            return "redis restarted"
        if kind == "postgres_restart":
            self.pg.restart()
            return "postgresql restarted"
        user = self.rng.choice(self.users)
        new = self.dovecot.reset_uidvalidity(user, "INBOX")
        return f"UIDVALIDITY of {user.login} INBOX is now {new}"

    def sample_memory(self) -> None:
        now = time.monotonic()
        for name in list(self.rss):
            if now - self.started[name] >= WARM_UP:
                self.rss[name].append((now, self.celery.rss_mb(name)))

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        args = self.args
        end = time.monotonic() + args.minutes * 60
        next_fault = time.monotonic() + self.rng.uniform(args.min_gap, args.max_gap)
        next_sample = time.monotonic() + WARM_UP
        print(f"soak: {args.minutes} min, {args.mailboxes} mailboxes, {args.workers} workers")
        while time.monotonic() < end:
            user = self.rng.choice(self.users)
            self.dovecot.deliver_many(user, [make_message(self.delivered, to=user)])
            self.delivered += 1
            now = time.monotonic()
            if now >= next_fault:
                kind = self.rng.choice(FAULTS)
                what = self.inject(kind)
                self.faults[kind] += 1
                elapsed = args.minutes * 60 - (end - now)
                print(f"[{elapsed:6.0f} s] fault {sum(self.faults.values())}: {what}", flush=True)
                next_fault = now + self.rng.uniform(args.min_gap, args.max_gap)
            if now >= next_sample:
                self.sample_memory()
                next_sample = now + 30
            time.sleep(self.rng.uniform(0.2, 1.5))
        self.sample_memory()

    def converge(self, timeout: float) -> float:
        """Wait until every mailbox has synced completely after the last delivery and fault."""
        from django.utils import timezone

        from inbox.models import Mailbox

        mark = timezone.now()
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            done = retry_db(lambda: Mailbox.objects.filter(last_success_at__gt=mark).count())
            if done == len(self.users) and not self.oracle()["lost"]:
                return time.monotonic() - began
            time.sleep(2)
        return float("nan")

    def oracle(self) -> dict[str, int]:
        """docs/reliability.md §8.1 over every mailbox: server truth against the database."""
        from django.db.models import Count

        from inbox.models import Mailbox, Message
        from tests.connector.synckit import db_truth, server_truth

        figures = Counter(lost=0, phantom=0, duplicated=0)
        for user in self.users:
            mailbox = retry_db(lambda user=user: Mailbox.objects.get(email_address=user.login))
            active = set(
                retry_db(
                    lambda mailbox=mailbox: list(
                        mailbox.folders.filter(is_active=True).values_list("name", flat=True)
                    )
                )
            )
            server = {s[:4] for s in server_truth(user, active)}
            db = {d[:4] for d in retry_db(lambda mailbox=mailbox: db_truth(mailbox))}
            figures["lost"] += len(server - db)
            figures["phantom"] += len(db - server)
            figures["duplicated"] += retry_db(
                lambda mailbox=mailbox: (
                    Message.objects.filter(mailbox=mailbox)
                    .values("sha256")
                    .annotate(n=Count("pk"))
                    .filter(n__gt=1)
                    .count()
                )
            )
        return dict(figures)

    def report(self, convergence: float) -> int:
        figures = self.oracle()
        print("\n=== soak figures ===")
        print(f"faults injected: {sum(self.faults.values())} ({dict(sorted(self.faults.items()))})")
        print(f"messages delivered: {self.delivered}")
        print(f"lost: {figures['lost']}")
        print(f"duplicated: {figures['duplicated']}")
        print(f"phantom: {figures['phantom']}")
        print(f"catch-up after the last fault: {convergence:.0f} s")
        for name, samples in sorted(self.rss.items()):
            if len(samples) >= 2:
                first, last = samples[0][1], samples[-1][1]
                span = (samples[-1][0] - samples[0][0]) / 60
                print(
                    f"worker {name} RSS: {first:.0f} MB after warm-up -> {last:.0f} MB "
                    f"{span:.0f} min later ({(last - first) / first * 100:+.1f} %)"
                )
            else:
                print(f"worker {name}: restarted too recently for a memory figure")
        return 0 if not any(figures.values()) else 1

    def teardown(self) -> None:
        from django.db import connections

        connections.close_all()
        if self.celery is not None:
            self.celery.stop_all()
        if self.proxy is not None:
            self.proxy.stop()
        if self.dovecot is not None:
            from tests.servers.dovecot import stop_dovecot

            stop_dovecot(self.dovecot)
        self.redis.stop()
        self.pg.stop()
        remove(self.root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--mailboxes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-gap", type=float, default=30, help="seconds between faults, least")
    parser.add_argument("--max-gap", type=float, default=120, help="seconds between faults, most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--catch-up", type=float, default=720, help="seconds allowed to converge at the end"
    )
    args = parser.parse_args()
    soak = Soak(args)
    try:
        soak.setup()
        soak.run()
        convergence = soak.converge(args.catch_up)
        return soak.report(convergence)
    finally:
        soak.teardown()


if __name__ == "__main__":
    sys.exit(main())
