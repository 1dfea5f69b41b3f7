"""Scale-out by hand: how long N mailboxes of M messages take to sync with 1, 2 and 4
worker processes, and what one beat tick costs when nothing is due.

    .venv/bin/python bench/scale.py                                   # 1,000 x 100, workers 1 2 4
    .venv/bin/python bench/scale.py --mailboxes 200 --messages 50     # a quicker run

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), redis-server and Dovecot installed.
One run:
1. a throwaway database (migrated once as a template, copied fresh for each worker count), a
   private redis-server on a free port and a throwaway Dovecot whose N users get M messages
   each, written straight into their maildirs;
2. per worker count W: N mailbox rows (all due), W `celery -A crm worker --concurrency 1`
   processes and one `celery beat` (1 s interval); the clock starts with the beat and stops
   when every mailbox has finished its first sync and when every message has been filed;
   then every mailbox is made due again with nothing new (the steady-state cost per
   refresh interval) and timed until all have synced;
3. the beat tick (connector.scheduling.dispatch.dispatch_due) timed in this process: nothing due
   among N rows, nothing due among --tick-rows rows (default 100,000: the README's question), and N
   due (the per-mailbox claim cost);
4. rows per mailbox in each table, to size the database at 100,000 mailboxes.
It prints the figures and how they grow with W; bench/README.md records a run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infra import (  # noqa: E402
    ROOT,
    Celery,
    PrivateRedis,
    admin_sql,
    fill_inbox,
    make_message,
    remove,
    temp_root,
    wait_for,
)

PG = "postgres://postgres@127.0.0.1:5432"
TEMPLATE_DB = "relay_bench_scale_tpl"
RUN_DB = "relay_bench_scale"


def environment(root: Path, redis: PrivateRedis) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crm.settings",
        "DATABASE_URL": f"{PG}/{RUN_DB}",
        "REDIS_URL": redis.url,
        "RELAY_DATA_DIR": str(root / "data"),
        "MEDIA_ROOT": str(root / "data" / "media"),
        "DJANGO_SECRET_KEY": "bench-scale-only",
        "RELAY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "RELAY_TOKEN_KEY": "bench-scale-only",
        "RELAY_ALLOWED_MAIL_HOSTS": "127.0.0.1,localhost",
        "RELAY_BEAT_INTERVAL": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def migrate_template(env: dict[str, str]) -> None:
    admin_sql(PG, f"DROP DATABASE IF EXISTS {RUN_DB}", f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
    admin_sql(PG, f"CREATE DATABASE {TEMPLATE_DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": f"{PG}/{TEMPLATE_DB}"},
        check=True,
    )


def fresh_database() -> None:
    from django.db import connections

    connections.close_all()
    admin_sql(
        PG, f"DROP DATABASE IF EXISTS {RUN_DB}", f"CREATE DATABASE {RUN_DB} TEMPLATE {TEMPLATE_DB}"
    )


def create_mailboxes(dovecot, users: list[str], refresh: int) -> None:
    from django.contrib.auth import get_user_model

    from inbox.crypto import encrypt
    from inbox.models import Mailbox

    owner = get_user_model().objects.create(username="bench")
    Mailbox.objects.bulk_create(
        Mailbox(
            owner=owner,
            email_address=user,
            login=user,
            password_encrypted=encrypt(dovecot.password(user)),
            imap_host=dovecot.host,
            imap_port=dovecot.port,
            imap_security="none",
            refresh_interval=refresh,
        )
        for user in users
    )


def run_workers(env, root: Path, redis: PrivateRedis, workers: int, n: int) -> dict:
    import redis as redis_client
    from django.db import connection

    from inbox.models import Mailbox, Message

    redis_client.Redis.from_url(redis.url).flushdb()
    celery = Celery(root / f"celery-{workers}", env)
    try:
        for i in range(workers):
            celery.worker(f"w{i + 1}")
        wait_for(
            lambda: all(
                "ready." in (celery.root / f"w{i + 1}.log").read_text(errors="replace")
                for i in range(workers)
            ),
            timeout=120,
            what="workers ready",
        )
        started = time.monotonic()
        celery.beat()
        synced_at = None
        while True:
            done = Mailbox.objects.filter(first_sync_done=True).count()
            if done >= n and synced_at is None:
                synced_at = time.monotonic() - started
            if synced_at is not None and not Message.objects.filter(filed_at=None).exists():
                filed_at = time.monotonic() - started
                break
            if time.monotonic() - started > 7200:
                raise RuntimeError(f"not synced after two hours: {done}/{n}")
            time.sleep(0.5)
        messages = Message.objects.count()
        # Steady state: every mailbox due again with nothing new on the server. This is the
        # cost that repeats every refresh interval, whatever the size of the mailboxes.
        from django.utils import timezone

        mark = timezone.now()
        began = time.monotonic()
        Mailbox.objects.update(next_sync_at=None)
        wait_for(
            lambda: Mailbox.objects.filter(last_success_at__gt=mark).count() >= n,
            timeout=7200,
            interval=0.5,
            what="the idle resync",
        )
        resync = time.monotonic() - began
        rss = {name: celery.rss_mb(name) for name in celery.procs if name.startswith("w")}
    finally:
        celery.stop_all()
    connection.close()
    return {
        "synced": synced_at,
        "filed": filed_at,
        "resync": resync,
        "messages": messages,
        "rss": rss,
    }


def time_tick(repeat: int = 15) -> tuple[float, int]:
    """Median milliseconds and SQL queries of one dispatch_due with a do-nothing enqueue."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from connector.scheduling import dispatch

    times, queries = [], 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            began = time.perf_counter()
            dispatch.dispatch_due(enqueue=lambda pk: None)
            times.append((time.perf_counter() - began) * 1000)
        queries = len(ctx.captured_queries)
    return statistics.median(times), queries


def tick_costs(n: int, tick_rows: int, dovecot) -> dict:
    from django.db import connection
    from django.utils import timezone

    from connector.scheduling import dispatch
    from inbox.models import Mailbox

    later = timezone.now() + dt.timedelta(days=1)
    Mailbox.objects.update(next_sync_at=later)
    result = {"idle_n": time_tick()}
    # All N due: one SELECT and one claiming UPDATE per 1,000 (connector/scheduling/dispatch.py).
    timings = []
    for _ in range(3):
        Mailbox.objects.update(next_sync_at=None)
        began = time.perf_counter()
        claimed = len(dispatch.dispatch_due(enqueue=lambda pk: None))
        timings.append((time.perf_counter() - began) * 1000)
    result["due_n"] = (statistics.median(timings), claimed)
    Mailbox.objects.update(next_sync_at=later)
    extra = tick_rows - Mailbox.objects.count()
    if extra > 0:
        owner_id = Mailbox.objects.values_list("owner_id", flat=True).first()
        batch = 10_000
        for start in range(0, extra, batch):
            Mailbox.objects.bulk_create(
                Mailbox(
                    owner_id=owner_id,
                    email_address=f"filler{start + i}@relay.test",
                    imap_host=dovecot.host,
                    imap_port=dovecot.port,
                    next_sync_at=later,
                )
                for i in range(min(batch, extra - start))
            )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE inbox_mailbox")
    result["idle_rows"] = (Mailbox.objects.count(), *time_tick())
    return result


def rows_per_mailbox(n: int) -> dict[str, float]:
    from django.db import connection

    tables = [
        "inbox_mailbox",
        "inbox_folder",
        "inbox_message",
        "inbox_messageaddress",
        "inbox_location",
        "inbox_ledgerentry",
        "inbox_thread",
        "inbox_filing",
        "inbox_attachment",
    ]
    counts = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
            counts[table] = cursor.fetchone()[0] / n
        cursor.execute("SELECT pg_database_size(current_database())")
        counts["database bytes"] = cursor.fetchone()[0] / n
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tick-rows", type=int, default=100_000)
    args = parser.parse_args()
    n, m = args.mailboxes, args.messages

    root = temp_root("relay-scale-")
    redis = PrivateRedis(root / "redis").start()
    env = environment(root, redis)
    os.environ.update(env)
    dovecot = None
    try:
        import django

        django.setup()
        from tests.servers.dovecot import make_certificate, start_dovecot, stop_dovecot

        print(f"scale: {n} mailboxes x {m} messages = {n * m:,} messages; workers {args.workers}")
        began = time.monotonic()
        migrate_template(env)
        dovecot = start_dovecot(make_certificate())
        users = [dovecot.create_user(f"box{i}@relay.test", f"pw{i}") for i in range(n)]
        counter = 0
        for user in users:
            fill_inbox(dovecot, user, (make_message(counter + j, to=user) for j in range(m)))
            counter += m
        print(f"setup: Dovecot filled in {time.monotonic() - began:.0f} s")

        runs = {}
        for workers in args.workers:
            fresh_database()
            create_mailboxes(dovecot, users, refresh=86400)
            runs[workers] = run_workers(env, root, redis, workers, n)
            r = runs[workers]
            print(
                f"workers={workers}: all synced in {r['synced']:.1f} s "
                f"({r['messages'] / r['synced']:.0f} msg/s, {n / r['synced']:.1f} mailboxes/s), "
                f"all filed in {r['filed']:.1f} s; idle resync of all in {r['resync']:.1f} s; "
                "worker RSS " + ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss"].items()),
                flush=True,
            )
            assert r["messages"] == n * m, f"stored {r['messages']} of {n * m}"

        rows = rows_per_mailbox(n)
        ticks = tick_costs(n, args.tick_rows, dovecot)

        first = args.workers[0]
        print("\n=== figures ===")
        print(f"mailboxes {n}, messages per mailbox {m}, total {n * m:,}")
        print(
            f"{'workers':>8} {'synced s':>9} {'msg/s':>7} {'speed-up':>9} {'filed s':>8} "
            f"{'idle resync s':>14} {'ms/idle sync/worker':>20}"
        )
        for workers, r in runs.items():
            print(
                f"{workers:>8} {r['synced']:>9.1f} {r['messages'] / r['synced']:>7.0f} "
                f"{runs[first]['synced'] / r['synced']:>8.2f}x {r['filed']:>8.1f} "
                f"{r['resync']:>14.1f} {r['resync'] * workers / n * 1000:>20.0f}"
            )
        ms, q = ticks["idle_n"]
        print(f"beat tick, nothing due, {n} mailbox rows: {ms:.2f} ms, {q} queries")
        rows_n, ms_rows, q_rows = ticks["idle_rows"]
        print(
            f"beat tick, nothing due, {rows_n:,} mailbox rows: {ms_rows:.2f} ms, {q_rows} queries"
        )
        ms_due, claimed = ticks["due_n"]
        print(
            f"beat tick, {claimed} due (claimed 1,000 to an UPDATE): {ms_due:.0f} ms, "
            f"{ms_due / max(claimed, 1):.3f} ms per mailbox claimed"
        )
        print("rows per mailbox after the first sync:")
        for table, value in rows.items():
            print(f"  {table}: {value:,.1f}")
        print(f"total time {time.monotonic() - began:.0f} s")
    finally:
        from django.db import connections

        connections.close_all()
        if dovecot is not None:
            stop_dovecot(dovecot)
        redis.stop()
        admin_sql(PG, f"DROP DATABASE IF EXISTS {RUN_DB}", f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        remove(root)


if __name__ == "__main__":
    main()
