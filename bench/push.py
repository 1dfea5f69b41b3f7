"""The push gateway's figures (docs/product.md §3.11). Run by hand; two modes.

    .venv/bin/python bench/push.py sessions --sessions 10000 [--tls] [--stock-buffers]
    .venv/bin/python bench/push.py dovecot --mailboxes 1000 --deliveries 300

``sessions``: one process holds N sessions of connector/transport/idle.py (logged in, in IDLE)
against bench/fakeimap.py running in a process of its own; prints RSS per session and the CPU
of the idle process over --idle seconds. ``--stock-buffers`` keeps asyncio's 256 KiB TLS read
buffer, for comparison.

``dovecot``: N users on a Dovecot of tests/servers/, N mailboxes in a PostgreSQL database of its
own (relay_bench_push, dropped first), one gateway and two Celery workers (Redis at $REDIS_URL
or 127.0.0.1:6379/14); deliveries at random (doveadm) to random mailboxes; prints p50/p99 from
delivery to stored (Message.created_at), to filed (Message.filed_at) and to the browser's event
(a subscriber on the live-update stream, docs/product.md §7.14, of Relay served by uvicorn as
`make run` serves it, signed in as the mailboxes' owner), the gateway's RSS per session,
its idle CPU, and the fall-back time after SIGKILL of the gateway (until a delivery
made after the kill is stored by polling, with the beat ticking every RELAY_BEAT_INTERVAL).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# --- sessions mode ------------------------------------------------------------------------------


def sessions_mode(args) -> None:
    data = Path(tempfile.mkdtemp(prefix="relay-bench-push-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="crm.settings",
        RELAY_DATA_DIR=str(data),
        RELAY_ALLOWED_MAIL_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from connector.transport.idle import IdleClient, Timing, limit_tls_buffers
    from connector.transport.imap import ImapSettings
    from tests.servers.certs import make_self_signed

    command = [sys.executable, str(ROOT / "bench" / "fakeimap.py")]
    if args.tls:
        cert = make_self_signed(data)
        command += ["--tls", str(cert.cert_path), str(cert.key_path)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[1])
    if not args.stock_buffers:
        limit_tls_buffers()
    settings = ImapSettings(
        host="127.0.0.1",
        port=port,
        security="ssl" if args.tls else "none",
        login="bench",
        password="bench",
        allow_insecure_cert=True,
    )

    async def run() -> None:
        live = 0
        all_live = asyncio.Event()
        gate = asyncio.Semaphore(200)
        clients = []

        def went_live(_mode):
            nonlocal live
            live += 1
            if live == args.sessions:
                all_live.set()

        async def one():
            async with gate:
                client = await IdleClient.connect(settings)
            clients.append(client)
            await client.watch(
                ["INBOX"], on_change=lambda f: None, timing=Timing(), on_live=went_live
            )

        await asyncio.sleep(0.5)
        before = rss_kib()
        started = time.monotonic()
        tasks = [asyncio.create_task(one()) for _ in range(args.sessions)]
        waiter = asyncio.create_task(all_live.wait())
        done, _ = await asyncio.wait(
            [waiter, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=600
        )
        for task in done:
            if task is not waiter and task.exception():
                raise task.exception()
        if waiter not in done:
            raise SystemExit(f"only {live} of {args.sessions} sessions went live")
        opened = time.monotonic() - started
        await asyncio.sleep(2)
        after = rss_kib()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = usage.ru_utime + usage.ru_stime
        await asyncio.sleep(args.idle)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        idle_cpu = usage.ru_utime + usage.ru_stime - cpu_before
        print(
            f"sessions: {args.sessions} ({'TLS' if args.tls else 'plain'}), "
            f"{'stock 256 KiB' if args.stock_buffers else '16 KiB'} TLS read buffer"
        )
        print(f"opened and in IDLE after {opened:.1f} s")
        print(
            f"RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: "
            f"{(after - before) / args.sessions:.1f} KiB per session"
        )
        print(f"idle CPU over {args.idle:.0f} s: {100 * idle_cpu / args.idle:.2f} % of a core")
        for task in tasks:
            task.cancel()
        for client in clients:
            client.abort()

    try:
        asyncio.run(run())
    finally:
        server.terminate()


# --- the browser's side: a subscriber on the live-update stream ---------------------------------


class StreamListener:
    """What an open page's EventSource receives (inbox/views/events.py), read line by line over
    HTTP: the arrival time of every "mail" event, by mailbox id."""

    def __init__(self, port: int, cookie: str):
        import http.client
        import threading

        self.arrivals: dict[int, list[float]] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.conn.request("GET", "/inbox/events/", headers={"Cookie": f"sessionid={cookie}"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise SystemExit(f"the live-update stream answered {self.response.status}")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import json

        kind = ""
        try:
            while line := self.response.readline():
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "mail":
                    mailbox = json.loads(line[5:])["mailbox"]
                    self.arrivals.setdefault(mailbox, []).append(time.time())
        except Exception:  # noqa: BLE001 - the bench ended and closed the connection
            return

    def first_after(self, mailbox: int, at: float) -> float | None:
        return next((t for t in self.arrivals.get(mailbox, []) if t >= at), None)


# --- dovecot mode -------------------------------------------------------------------------------


def dovecot_mode(args) -> None:
    db_name = "relay_bench_push"
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db_name}"],
        check=True,
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db_name}"],
        check=True,
    )
    data = Path(tempfile.mkdtemp(prefix="relay-bench-push-"))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="crm.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        RELAY_DATA_DIR=str(data),
        RELAY_ALLOWED_MAIL_HOSTS="127.0.0.1",
        RELAY_BEAT_INTERVAL="10",
        RELAY_PARSE_WORKERS="0",
        LOG_LEVEL="WARNING",
        RELAY_PUSH_CONNECT_RATE="200",
        RELAY_PUSH_CONNECT_RATE_PER_HOST="200",
    )
    os.environ.update(env)
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()

    from django.utils import timezone

    from inbox.models import Folder, Mailbox, Message, WatchState
    from tests import factories as f
    from tests.servers.dovecot import make_certificate, start_dovecot, stop_dovecot

    # Dovecot's IDLE learns of new mail through inotify, one instance per imap process, all
    # under its one mail user: past fs.inotify.max_user_instances (128 by default) it falls back
    # to checking every 30 s (mailbox_idle_check_interval), which the latencies then show.
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    if limit < args.mailboxes + 64:
        raise SystemExit(
            f"fs.inotify.max_user_instances is {limit}: Dovecot would poll most of the "
            f"{args.mailboxes} mailboxes every 30 s instead of being told at once. Raise it: "
            f"sysctl -w fs.inotify.max_user_instances={max(8192, args.mailboxes * 2)}"
        )
    # One IMAP session per watched mailbox plus the syncs' own: above the suite's 64.
    dovecot = start_dovecot(make_certificate(), connections=args.mailboxes * 2 + 64)
    owner = f.UserFactory()
    users, boxes = [], []
    later = timezone.now() + timezone.timedelta(days=1)
    print(f"creating {args.mailboxes} users and mailboxes...", flush=True)
    for _ in range(args.mailboxes):
        user = dovecot.create_user()
        box = f.MailboxFactory(
            owner=owner,
            email_address=user,
            login=user,
            imap_host="127.0.0.1",
            imap_port=dovecot.port,
            imap_security="none",
            password=dovecot.password(user),
            first_sync_done=True,
            next_sync_at=later,
        )
        Folder.objects.create(mailbox=box, name="INBOX", special_use="inbox", is_active=True)
        users.append(user)
        boxes.append(box)
    manage = [sys.executable, str(ROOT / "manage.py")]
    logs = data / "logs"
    logs.mkdir()
    procs = {}

    def start(name, command):
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - for the process's life
        procs[name] = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    celery = str(Path(sys.executable).with_name("celery"))
    for n in (1, 2):
        start(
            f"w{n}",
            [
                celery,
                "-A",
                "crm",
                "worker",
                "-Q",
                "celery,push",
                "-c",
                "1",
                "-n",
                f"w{n}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        )
    start("gateway", [*manage, "push_gateway", "--name", "bench"])
    # Relay's web server as `make run` starts it (bin/run), and one open page of the owner's.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    start(
        "web", [uvicorn, "crm.asgi:application", "--port", str(web_port), "--log-level", "warning"]
    )
    from django.test import Client

    client = Client()
    client.force_login(owner)
    cookie = client.cookies["sessionid"].value
    try:
        for _ in range(100):
            try:
                listener = StreamListener(web_port, cookie)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the web server did not start")
        started = time.monotonic()
        while Mailbox.objects.filter(watch_state=WatchState.LIVE).count() < len(boxes):
            if time.monotonic() - started > 900:
                raise SystemExit("not every mailbox went live in 15 minutes")
            time.sleep(1)
        print(f"all {len(boxes)} watches live after {time.monotonic() - started:.1f} s")
        # Going live enqueues one catch-up sync per mailbox (connector/scheduling/gateway.py
        # _went_live): 1,000 of them at once. Measure steady state, after they have drained
        # (the push queue empty for 3 s), and say how long that took.
        queue = redis.Redis.from_url(env["REDIS_URL"])
        drained, quiet_since = time.monotonic(), None
        while True:
            if queue.llen("push") or queue.llen("celery"):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 3:
                break
            if time.monotonic() - drained > 900:
                raise SystemExit("the catch-up syncs did not drain in 15 minutes")
            time.sleep(0.5)
        print(
            f"the {len(boxes)} catch-up syncs of going live drained "
            f"{quiet_since - drained:.1f} s after the last watch went live"
        )
        gateway_pid = procs["gateway"].pid
        rss = rss_kib(gateway_pid)
        cpu0 = cpu_seconds(gateway_pid)
        time.sleep(args.idle)
        idle = (cpu_seconds(gateway_pid) - cpu0) / args.idle
        print(
            f"gateway RSS {rss / 1024:.1f} MiB: {rss / len(boxes):.1f} KiB per session "
            f"(interpreter and Django included); idle CPU {100 * idle:.2f} % of a core"
        )

        sent: dict[str, tuple[int, float]] = {}
        for n in range(args.deliveries):
            i = random.randrange(len(boxes))
            subject = f"bench push {n}"
            raw = (
                f"From: ana@customer.example\r\nTo: {users[i]}\r\nSubject: {subject}\r\n"
                f"Message-ID: <bench-{n}@customer.example>\r\n\r\nhello\r\n"
            ).encode()
            dovecot.doveadm("save", "-u", users[i], "-m", "INBOX", input=raw)
            # Delivered once doveadm returns (its own start-up is not the gateway's latency).
            sent[subject] = (boxes[i].pk, time.time())
            time.sleep(random.expovariate(args.rate))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            filed = Message.objects.filter(
                subject__startswith="bench push ", filed_at__isnull=False
            ).count()
            if filed >= len(sent):
                break
            time.sleep(1)
        rows = Message.objects.filter(subject__startswith="bench push ").values_list(
            "subject", "created_at", "filed_at"
        )
        to_stored, to_filed, to_browser = [], [], []
        for subject, created, filed in rows:
            at = sent[subject][1]
            to_stored.append(created.timestamp() - at)
            if filed:
                to_filed.append(filed.timestamp() - at)
        time.sleep(2)  # the last events on their way to the page
        for mailbox_pk, at in sent.values():
            arrived = listener.first_after(mailbox_pk, at)
            if arrived is not None:
                to_browser.append(arrived - at)
        print(
            f"{len(sent)} deliveries, {len(to_stored)} stored, {len(to_filed)} filed, "
            f"{len(to_browser)} announced to the open page"
        )
        for label, values in (
            ("stored", to_stored),
            ("filed", to_filed),
            ("browser event", to_browser),
        ):
            if values:
                print(
                    f"delivery -> {label}: p50 {statistics.median(values):.2f} s, "
                    f"p99 {percentile(values, 99):.2f} s, max {max(values):.2f} s"
                )

        # Fall-back: kill the gateway, deliver, let the beat reap and poll.
        os.killpg(gateway_pid, signal.SIGKILL)
        killed = time.time()
        start("beat", [celery, "-A", "crm", "beat", "-s", str(data / "beat-schedule")])
        i = random.randrange(len(boxes))
        raw = (
            b"From: ana@customer.example\r\nSubject: after the kill\r\n"
            b"Message-ID: <bench-after@customer.example>\r\n\r\nhello\r\n"
        )
        dovecot.doveadm("save", "-u", users[i], "-m", "INBOX", input=raw)
        while not Message.objects.filter(subject="after the kill").exists():
            if time.time() - killed > 600:
                raise SystemExit("polling never took over")
            time.sleep(0.5)
        print(
            f"fall-back: a delivery after SIGKILL of the gateway stored by polling "
            f"{time.time() - killed:.1f} s after the kill "
            f"(RELAY_PUSH_LEASE_TTL={os.environ.get('RELAY_PUSH_LEASE_TTL', '60')}, "
            f"beat every 10 s)"
        )
    finally:
        for proc in procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stop_dovecot(dovecot)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("sessions")
    s.add_argument("--sessions", type=int, default=10_000)
    s.add_argument("--tls", action="store_true")
    s.add_argument("--stock-buffers", action="store_true")
    s.add_argument("--idle", type=float, default=30.0)
    d = sub.add_parser("dovecot")
    d.add_argument("--mailboxes", type=int, default=1000)
    d.add_argument("--deliveries", type=int, default=300)
    d.add_argument("--rate", type=float, default=5.0, help="deliveries per second (Poisson)")
    d.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    (sessions_mode if args.mode == "sessions" else dovecot_mode)(args)
