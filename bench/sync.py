"""Initial sync throughput, bare baselines, the cost of a sync with nothing new, peak memory.

Run by hand, not in CI (bench/README.md has the figures):

    .venv/bin/python bench/sync.py                        # 10,000 messages, 50,000 for (e)
    .venv/bin/python bench/sync.py --messages 1000 --big 5000    # a quick run

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Dovecot installed. One run:
1. creates a throwaway database (``relay_bench``, dropped at the end), a throwaway data dir
   (raw mail, attachment blobs, the Celery filesystem broker) and a throwaway Dovecot;
2. writes the reproducible corpus of ``demo.corpus.generate(N, seed=1)`` straight into
   users' maildirs (``doveadm save`` one by one would take longer than the benchmark), then
   ``doveadm force-resync``: one user with all N messages (INBOX and Sent), one with the first
   N/2, one with ``--big`` messages in a single INBOX;
3. measures, each engine sync in its own worker process (``--worker``) so that its peak RSS is
   its own:
   (a) our initial sync of the N messages, end to end (IMAP, parse, raw and attachment files,
       PostgreSQL, threads, filing tasks enqueued);
   (b) baseline 1: imaplib ``UID FETCH BODY.PEEK[]`` of the same messages, parsing nothing;
   (c) baseline 2: the same fetch plus stdlib ``email`` parsing (``policy.default``: headers
       read, every leaf part decoded), storing nothing;
   (d) our ratio to each baseline;
   (e) a second sync, nothing new, of the ``--big`` folder: IMAP commands sent, SQL queries,
       milliseconds;
   (f) peak memory of the worker syncing N/2 and N messages (it must not grow with the mailbox).
"""

from __future__ import annotations

import argparse
import cProfile
import email
import email.policy
import imaplib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Named after the run's process: two runs side by side (a before and an after) must not drop
# each other's database. The worker processes get it through DATABASE_URL.
DB_NAME = os.environ.get("RELAY_BENCH_DB") or f"relay_bench_{os.getpid()}"
PG = "postgres://postgres@127.0.0.1:5432"
FETCH_BATCH = 200
TARGET_RATE = 2000
TARGET_RSS_MB = 300


# --- environment ----------------------------------------------------------------------------


def _environment(data_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "RELAY_DATA_DIR": str(data_dir),
        "MEDIA_ROOT": str(data_dir / "media"),
        "RELAY_ALLOWED_MAIL_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "crm.settings",
        "REDIS_URL": "",
    }


def _setup_django() -> None:
    import django

    django.setup()


def _admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


# --- the corpus in Dovecot ------------------------------------------------------------------

_FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}


def _maildir(server, user: str, folder: str) -> Path:
    # Let Dovecot create the folder and tell us where it lives (mail_location is its business).
    if folder != "INBOX":
        existing = server.doveadm("mailbox", "list", "-u", user).split()
        if folder not in existing:
            server.create_folder(user, folder)
    server.doveadm("mailbox", "status", "-u", user, "messages", folder)
    return Path(server.doveadm("mailbox", "path", "-u", user, folder).strip())


def _fill(server, user: str, messages, *, folder: str | None = None) -> int:
    return _fill_users(server, [(user, None)], messages, folder=folder)


def _fill_users(server, users, messages, *, folder: str | None = None) -> int:
    """Write messages as Maildir files (RFC-less but documented: cur/ with ":2,FLAGS"), owned
    by the mail user, INTERNALDATE = file mtime = the Date header; then force-resync.
    `users` is [(user, how many of the first messages it gets, None for all)]: the corpus is
    generated once, whoever gets it."""
    import pwd

    from tests.servers.dovecot import MAIL_USER

    mail_user = pwd.getpwnam(MAIL_USER)
    paths: dict[tuple[str, str], Path] = {}
    count = 0
    for count, message in enumerate(messages, 1):
        name = folder or message.folder
        flags = "".join(sorted(_FLAG_LETTERS[f] for f in message.flags if f in _FLAG_LETTERS))
        stamp = int(message.date.timestamp())
        data = message.raw.replace(b"\r\n", b"\n")
        for user, limit in users:
            if limit is not None and count > limit:
                continue
            if (user, name) not in paths:
                paths[user, name] = _maildir(server, user, name)
            path = paths[user, name] / "cur" / f"{stamp}.M{count}P{os.getpid()}.bench:2,{flags}"
            path.write_bytes(data)
            os.utime(path, (stamp, stamp))
            os.chown(path, mail_user.pw_uid, mail_user.pw_gid)
    for user, _limit in users:
        server.doveadm("force-resync", "-u", user, "*")
    return count


def _make_mailbox(server, user: str) -> int:
    from inbox.models import Mailbox

    mailbox = Mailbox.objects.create(
        kind=Mailbox.Kind.SHARED,
        email_address=f"{user}@relay.example",
        login=user,
        imap_host=server.host,
        imap_port=server.port,
        imap_security="none",
        active_folders=[],
    )
    mailbox.set_password(server.password(user))
    mailbox.save()
    return mailbox.pk


# --- the engine, in a worker process --------------------------------------------------------


def _children_peak_kb() -> int:
    """Largest peak RSS among live child processes (a parsing pool) and reaped ones."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    me = str(os.getpid())
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]))
    return peak


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu() -> float:
    """CPU seconds of this connection's PostgreSQL backend (same machine: /proc/PID/stat)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_count() -> int:
    me = str(os.getpid())
    n = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{me}\n" in status.read_text():
                n += 1
        except OSError:
            continue
    return n


def worker(mailbox_id: int) -> None:
    """One sync_mailbox() as a Celery worker would run it; prints one JSON line."""
    _setup_django()
    from django.db import connection

    from connector.sync.mailbox import sync_mailbox

    commands: list[str] = []
    original = imaplib.IMAP4._command

    def counting(self, name, *args):
        commands.append(name)
        return original(self, name, *args)

    imaplib.IMAP4._command = counting
    queries = [0]

    def count_query(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    stages = _time_stages() if os.environ.get("RELAY_BENCH_STAGES") else None
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pg_before = _backend_cpu()
    cpu_before = _cpu(resource.RUSAGE_SELF)
    # RELAY_BENCH_PROFILE=DIR: a cProfile of each worker's main thread (the store side of the
    # pipeline) in DIR/sync-<mailbox>.prof, for `python -m pstats`.
    profile_dir = os.environ.get("RELAY_BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_dir else None
    with connection.execute_wrapper(count_query):
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report = sync_mailbox(mailbox_id)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.path.join(profile_dir, f"sync-{mailbox_id}.prof"))
        seconds = time.perf_counter() - started
    cpu_self = _cpu(resource.RUSAGE_SELF) - cpu_before
    pg_cpu = _backend_cpu() - pg_before
    children, children_peak = _children_count(), _children_peak_kb()
    from connector.ingest import pool as ingest

    if ingest._pool is not None:  # reaped, the pool's CPU time shows in RUSAGE_CHILDREN
        ingest._pool.shutdown(wait=True)
    result = {
        "seconds": seconds,
        "outcome": report.outcome,
        "error": report.error,
        "stored": report.total("stored"),
        "duplicate": report.total("duplicate"),
        "failed": report.total("failed"),
        "held": report.total("held"),
        "skipped": report.total("skipped"),
        "commands": len(commands),
        "command_names": sorted(set(commands)),
        "queries": queries[0],
        "rss_start_kb": rss_before,
        "rss_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children": children,
        "children_peak_kb": children_peak,
        "cpu_self": cpu_self,
        "cpu_pool": _cpu(resource.RUSAGE_CHILDREN),
        "cpu_postgres": pg_cpu,
    }
    if stages is not None:
        result["stages"] = {name: round(seconds, 3) for name, seconds in stages.items()}
    print("RESULT " + json.dumps(result), flush=True)


def _time_stages() -> dict[str, float]:
    """RELAY_BENCH_STAGES=1: wall seconds the sync's main thread spends in each stage of the
    store, printed with the worker's result (where the time goes, without a profiler's cost)."""
    from connector.ingest import pool, store
    from connector.ingest import threads as threader
    from connector.sync import newmail
    from inbox.models import LedgerEntry, Location, Thread

    spent: dict[str, float] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    for name in (
        "plan_threads",
        "refresh_threads",
        "_insert_messages",
        "store_parts",
        "_insert_locations_and_ledger",
        "message_from",
        "_store",
        "note_new_mail",
    ):
        setattr(store, name, timed(name, getattr(store, name)))
    threader._adopt_earlier_replies = timed(
        "_adopt_earlier_replies", threader._adopt_earlier_replies
    )
    pool.PreparedBatch.result = timed("wait for the pool", pool.PreparedBatch.result)
    newmail.store_batch = timed("store_batch", newmail.store_batch)
    for model in (Location, LedgerEntry, Thread):
        manager = model.objects
        manager.bulk_create = timed(f"{model.__name__} bulk_create", manager.bulk_create)
    return spent


def _run_worker(mailbox_id: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", str(mailbox_id)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            if result["outcome"] != "completed":
                raise SystemExit(f"sync did not complete: {result}\n{out.stderr[-3000:]}")
            return result
    raise SystemExit(f"worker failed ({out.returncode}):\n{out.stderr[-5000:]}")


# --- the bare baselines ---------------------------------------------------------------------


def _stdlib_parse(raw: bytes) -> int:
    """What a bare fetch-and-parse does: every header a CRM shows, every leaf part decoded."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("subject", "from", "to", "cc", "date", "message-id", "in-reply-to"):
        message.get(name)
    parts = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        try:
            part.get_content()
        except (LookupError, ValueError, AssertionError, KeyError):
            part.get_payload(decode=True)
        parts += 1
    return parts


def baseline(server, user: str, *, parse: bool) -> dict:
    """imaplib alone: EXAMINE, UID SEARCH ALL, UID FETCH BODY.PEEK[] in batches."""
    started = time.perf_counter()
    client = imaplib.IMAP4(server.host, server.port)
    client.login(user, server.password(user))
    count = size = 0
    for folder in ("INBOX", "Sent"):
        typ, _ = client.select(folder, readonly=True)
        if typ != "OK":
            continue
        typ, data = client.uid("SEARCH", "ALL")
        uids = data[0].split()
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = b",".join(uids[start : start + FETCH_BATCH]).decode()
            typ, data = client.uid("FETCH", chunk, "(BODY.PEEK[])")
            for item in data:
                if isinstance(item, tuple):
                    count += 1
                    size += len(item[1])
                    if parse:
                        _stdlib_parse(item[1])
    client.logout()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "messages": count, "bytes": size}


# --- django-mailbox, the usual Django answer, in a virtual environment of its own -------------

DJM_DB = f"relay_bench_djm_{os.getpid()}"
DJM_REQUIREMENTS = ("django-mailbox==4.10.1", "Django>=4.2,<5.2", "psycopg[binary]")
DJM_SETTINGS = """
SECRET_KEY = "bench"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_mailbox"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": "{db}",
    "HOST": "127.0.0.1", "PORT": 5432, "USER": "postgres"}}}}
MEDIA_ROOT = "{media}"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {{"version": 1, "disable_existing_loggers": True}}
"""


def _djm_python(venv: Path) -> Path:
    """django-mailbox lives in a virtual environment of its own (never a dependency of
    Relay's): made on first use from the package index, kept for later runs."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DJM_REQUIREMENTS], check=True)
    return python


def django_mailbox_baseline(server, user: str, count: int, venv: Path, work: Path) -> dict:
    """`manage.py getmail` of django-mailbox 4.10 (IMAP, one UID FETCH RFC822 a message,
    stdlib parse, rows and attachment files in PostgreSQL and MEDIA_ROOT), timed with its
    process's CPU (wait4). It deletes what it fetched from the server: its user is its own."""
    from urllib.parse import quote

    python = _djm_python(venv)
    project = work / "djm"
    (project / "media").mkdir(parents=True, exist_ok=True)
    (project / "djm_settings.py").write_text(
        DJM_SETTINGS.format(db=DJM_DB, media=project / "media")
    )
    _admin_sql(f"DROP DATABASE IF EXISTS {DJM_DB} WITH (FORCE)", f"CREATE DATABASE {DJM_DB}")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(project),
        "DJANGO_SETTINGS_MODULE": "djm_settings",
    }

    def manage(*args: str, **kwargs):
        return subprocess.run(
            [str(python), "-m", "django", *args], env=env, cwd=project, check=True, **kwargs
        )

    try:
        manage("migrate", "-v", "0")
        login, secret = quote(user, safe=""), quote(server.password(user), safe="")
        uri = f"imap://{login}:{secret}@{server.host}:{server.port}"
        create = "from django_mailbox.models import Mailbox as M; M.objects.create(uri={!r})"
        manage("shell", "-c", create.format(uri))
        # Its log (a line a message) goes to a file: a pipe nobody reads until the end fills
        # up and stops getmail in the middle.
        log_path = project / "getmail.log"
        started = time.perf_counter()
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [str(python), "-m", "django", "getmail"],
                env=env,
                cwd=project,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if status != 0:
            tail = log_path.read_bytes()[-3000:]
            raise SystemExit(f"django-mailbox getmail failed: {tail!r}")
        out = manage(
            "shell",
            "-c",
            "from django_mailbox.models import Message; print(Message.objects.count())",
            capture_output=True,
            text=True,
        )
        stored = int(out.stdout.strip().splitlines()[-1])
    finally:
        _admin_sql(f"DROP DATABASE IF EXISTS {DJM_DB} WITH (FORCE)")
        shutil.rmtree(project, ignore_errors=True)
    if stored != count:
        print(f"django-mailbox stored {stored} of {count} messages", flush=True)
    return {
        "seconds": seconds,
        "messages": stored,
        "cpu": usage.ru_utime + usage.ru_stime,
    }


# --- the run --------------------------------------------------------------------------------


def _mb(kb: int) -> float:
    return kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=50_000, help="folder size for (e)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--corpus",
        choices=("realistic", "demo"),
        default="realistic",
        help="realistic: bench/realistic.py, ~77 KB a message (issue #17); demo: "
        "demo.corpus.generate, ~16 KB (the figures before 2026-12)",
    )
    parser.add_argument(
        "--django-mailbox",
        type=int,
        default=None,
        metavar="N",
        help="messages for django-mailbox's getmail (default: all; 0 skips it)",
    )
    parser.add_argument(
        "--django-mailbox-venv",
        default=str(Path.home() / ".cache" / "relay-bench" / "django-mailbox"),
        help="its own virtual environment, made on first use",
    )
    parser.add_argument("--skip-stdlib", action="store_true", help="skip baseline 2 (slow)")
    parser.add_argument(
        "--tmpfs",
        default="/dev/shm",
        help="also sync with raw mail and attachments on this tmpfs, to separate the cost of "
        "the disk's file creation from the engine's ('' to skip)",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker(args.worker)
        return

    data_dir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    env = {**_environment(data_dir), "RELAY_BENCH_DB": DB_NAME}
    os.environ.update(env)
    _admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", f"CREATE DATABASE {DB_NAME}")
    server = None
    try:
        _setup_django()
        from django.core.management import call_command

        from bench import realistic
        from demo.corpus import generate as demo_generate
        from tests.servers.dovecot import make_certificate, start_dovecot, stop_dovecot

        call_command("migrate", verbosity=0)
        certificate = make_certificate()
        server = start_dovecot(certificate)
        n, half = args.messages, args.messages // 2

        t = time.perf_counter()
        full_user, half_user, big_user, djm_user = (server.create_user() for _ in range(4))
        generate = realistic.generate if args.corpus == "realistic" else demo_generate
        djm = n if args.django_mailbox is None else min(args.django_mailbox, n)
        _fill_users(
            server,
            [(full_user, None), (half_user, half)] + ([(djm_user, djm)] if djm else []),
            generate(n, seed=args.seed),
        )
        # The big folder is about how a sync with nothing new scales, not about parsing: small
        # attachments keep its setup and first sync short; every message goes to one INBOX.
        big = _fill(
            server,
            big_user,
            demo_generate(args.big, seed=args.seed + 1, attachment_max_bytes=20_000),
            folder="INBOX",
        )
        print(f"corpus written to Dovecot in {time.perf_counter() - t:.1f} s", flush=True)
        full_id, half_id, big_id = (
            _make_mailbox(server, u) for u in (full_user, half_user, big_user)
        )

        raw = baseline(server, full_user, parse=False)
        print(f"(b) raw fetch: {raw['messages'] / raw['seconds']:.0f} msg/s", flush=True)
        ours = _run_worker(full_id, env)
        print(
            f"(a) our sync: {n / ours['seconds']:.0f} msg/s; CPU ms/msg worker "
            f"{1000 * ours['cpu_self'] / n:.2f}, pool {1000 * ours['cpu_pool'] / n:.2f}, "
            f"PostgreSQL {1000 * ours['cpu_postgres'] / n:.2f}",
            flush=True,
        )
        if "stages" in ours:
            print(f"    stages (s of {ours['seconds']:.1f}): {ours['stages']}", flush=True)
        stdlib = None
        if not args.skip_stdlib:
            stdlib = baseline(server, full_user, parse=True)
            print(f"(c) stdlib: {stdlib['messages'] / stdlib['seconds']:.0f} msg/s", flush=True)
        tmpfs = None
        if args.tmpfs and Path(args.tmpfs).is_dir():
            again_id = _make_mailbox(server, full_user)
            media = Path(tempfile.mkdtemp(prefix="relay-bench-media-", dir=args.tmpfs))
            try:
                tmpfs = _run_worker(again_id, {**env, "MEDIA_ROOT": str(media)})
            finally:
                shutil.rmtree(media, ignore_errors=True)
            print(f"(a') our sync, files on tmpfs: {n / tmpfs['seconds']:.0f} msg/s", flush=True)
        djm_result = None
        if djm:
            djm_result = django_mailbox_baseline(
                server, djm_user, djm, Path(args.django_mailbox_venv), data_dir
            )
            print(
                f"django-mailbox getmail: "
                f"{djm_result['messages'] / djm_result['seconds']:.0f} msg/s",
                flush=True,
            )
        halfrun = _run_worker(half_id, env)
        big_first = _run_worker(big_id, env)
        print(f"big folder first sync: {big / big_first['seconds']:.0f} msg/s", flush=True)
        if "stages" in big_first:
            print(
                f"    stages (s of {big_first['seconds']:.1f}): {big_first['stages']}", flush=True
            )
        big_again = _run_worker(big_id, env)
        files = sum(1 for p in (data_dir / "media").rglob("*") if p.is_file())
        _report(
            args,
            n,
            half,
            big,
            raw,
            ours,
            tmpfs,
            stdlib,
            djm_result,
            halfrun,
            big_first,
            big_again,
            files,
        )
    finally:
        if server is not None:
            stop_dovecot(server)
            shutil.rmtree(server.certificate.cert_path.parent, ignore_errors=True)
        from django.db import connections

        connections.close_all()
        _admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        shutil.rmtree(data_dir, ignore_errors=True)


def _report(
    args, n, half, big, raw, ours, tmpfs, stdlib, djm, halfrun, big_first, big_again, files
):
    ours_rate = n / ours["seconds"]
    raw_rate = raw["messages"] / raw["seconds"]
    cpu_total = ours["cpu_self"] + ours["cpu_pool"] + ours["cpu_postgres"]
    rows = [
        ("(a) our initial sync, end to end", f"{ours_rate:,.0f} msg/s", f"{ours['seconds']:.1f} s"),
        (
            "    stored / duplicate / failed / held",
            f"{ours['stored']}/{ours['duplicate']}/{ours['failed']}/{ours['held']}",
            "",
        ),
        ("    SQL queries, IMAP commands", f"{ours['queries']:,}", f"{ours['commands']:,}"),
        (
            "    CPU ms/msg: worker + pool (client), + PostgreSQL",
            f"{1000 * (ours['cpu_self'] + ours['cpu_pool']) / n:.2f}",
            f"{1000 * cpu_total / n:.2f}",
        ),
        (
            "    CPU ms/msg: worker, pool, PostgreSQL",
            f"{1000 * ours['cpu_self'] / n:.2f}",
            f"{1000 * ours['cpu_pool'] / n:.2f}, {1000 * ours['cpu_postgres'] / n:.2f}",
        ),
        (
            "    if the 2 cores were ours (CPU-bound estimate)",
            f"{n / max(cpu_total / (os.cpu_count() or 1), ours['cpu_self']):,.0f} msg/s",
            "Dovecot's CPU not counted",
        ),
        ("    files written (raw + attachments, all runs)", f"{files:,}", ""),
    ]
    if tmpfs is not None:
        rows.append(
            (
                "(a') the same, raw and attachment files on tmpfs",
                f"{n / tmpfs['seconds']:,.0f} msg/s",
                f"{tmpfs['seconds']:.1f} s; CPU ms/msg {1000 * tmpfs['cpu_self'] / n:.2f}, "
                f"{1000 * tmpfs['cpu_pool'] / n:.2f}, {1000 * tmpfs['cpu_postgres'] / n:.2f}",
            )
        )
    rows += [
        (
            "(b) baseline 1: imaplib raw fetch",
            f"{raw_rate:,.0f} msg/s",
            f"{raw['seconds']:.2f} s; {raw['messages']:,} msgs, {raw['bytes'] / 1e6:,.0f} MB",
        ),
    ]
    if stdlib is not None:
        stdlib_rate = stdlib["messages"] / stdlib["seconds"]
        rows.append(
            (
                "(c) baseline 2: imaplib + stdlib email",
                f"{stdlib_rate:,.0f} msg/s",
                f"{stdlib['seconds']:.1f} s",
            )
        )
    if djm is not None:
        djm_rate = djm["messages"] / djm["seconds"]
        rows.append(
            (
                "(g) django-mailbox getmail (own venv)",
                f"{djm_rate:,.0f} msg/s",
                f"{djm['seconds']:.1f} s for {djm['messages']:,}; "
                f"client CPU {1000 * djm['cpu'] / max(djm['messages'], 1):.2f} ms/msg",
            )
        )
    rows.append(("(d) ours / raw fetch", f"{ours_rate / raw_rate:.2f}x", ""))
    if stdlib is not None:
        rows.append(("    ours / stdlib fetch+parse", f"{ours_rate / stdlib_rate:.1f}x", ""))
    if djm is not None:
        rows.append(("    ours / django-mailbox", f"{ours_rate / djm_rate:.1f}x", "goal >= 20x"))
    rows += [
        (
            f"(e) big folder ({big:,}) first sync",
            f"{big / big_first['seconds']:,.0f} msg/s",
            f"{big_first['seconds']:.1f} s",
        ),
        (
            "    second sync, nothing new: IMAP commands",
            f"{big_again['commands']}",
            " ".join(big_again["command_names"]),
        ),
        ("    second sync, nothing new: SQL queries", f"{big_again['queries']}", ""),
        ("    second sync, nothing new: time", f"{big_again['seconds'] * 1000:.0f} ms", ""),
    ]
    for label, run in ((f"{half:,}", halfrun), (f"{n:,}", ours)):
        rows.append(
            (
                f"(f) worker peak RSS syncing {label} msgs",
                f"{_mb(run['rss_peak_kb']):.0f} MB",
                f"pool: {run['children']} x <= {_mb(run['children_peak_kb']):.0f} MB"
                if run["children"]
                else "no pool",
            )
        )
    rows.append(
        (
            "    growth from N/2 to N messages",
            f"{_mb(ours['rss_peak_kb'] - halfrun['rss_peak_kb']):+.0f} MB",
            "",
        )
    )
    width = max(len(r[0]) for r in rows)
    print()
    print(f"Relay sync benchmark: {n:,} messages (seed {args.seed}), {os.cpu_count()} CPUs")
    print("-" * (width + 40))
    for label, value, extra in rows:
        print(f"{label:<{width}}  {value:>14}  {extra}")
    print("-" * (width + 40))
    speed = "OK" if ours_rate >= TARGET_RATE else "BELOW"
    verdict = [
        f"throughput {speed} (target {TARGET_RATE:,} msg/s)",
        f"memory {'OK' if _mb(ours['rss_peak_kb']) < TARGET_RSS_MB else 'OVER'} "
        f"(target < {TARGET_RSS_MB} MB)",
    ]
    print("; ".join(verdict))


if __name__ == "__main__":
    main()
