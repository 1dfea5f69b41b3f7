"""Soak by hand (docs/reliability.md I-09 and §8.6): mail arrives continuously on a few
mailboxes watched by the push gateway, mail is sent continuously through the outbox, every
message is to or from a contact of the CRM, while faults are injected every --min-gap to
--max-gap seconds across sync, push, sending and filing (bench/soakfaults.py lists them). At the
end, after the faults stop and everything catches up, it prints the faults injected; the
messages delivered, stored, lost, duplicated and phantom; the sends (each queued message
accepted by the SMTP server exactly once, or still queued, or visibly failed with its error;
each sent copy in Sent once); the filings (each stored message filed once, on its contact); the
latency from delivery to stored, during faults and quiet, with push live and polling; and how
much the workers' and the gateway's memory grew.

    .venv/bin/python bench/soak.py                    # about an hour, a fault every 30-120 s
    .venv/bin/python bench/soak.py --minutes 55 --faults 520 --min-gap 3 --max-gap 7   # >= 500
    .venv/bin/python bench/soak.py --minutes 5 --min-gap 5 --max-gap 15     # a short run

Everything is private and thrown away afterwards: a PostgreSQL started with pg_ctl on a free
port (restarting the shared one on 5432 is not allowed: docs/reliability.md §7), a redis-server
on a free port, a Dovecot, the fault proxy of tests/servers/faultproxy.py between Dovecot and
both the workers and the gateway, and the aiosmtpd server of tests/servers/smtp.py. Two
`celery -A crm worker --concurrency 1 -Q celery,push` processes, one beat and one
`manage.py push_gateway` do the work, with the product's default timings (beat every 2 s).

A killed worker's sync lease runs out by itself after two minutes (RELAY_SYNC_LEASE_TTL,
connector/sync/lease.py) and its mailbox is synced at the next beat tick; an entry left
"sending" by a killed worker becomes "verify" after ten (connector/outbound/states.py),
so the catch-up at the end may take that long.

Exit status 0 only when lost, duplicated, phantom, sends lost or doubled (or their Sent copy
missing or doubled) and messages unfiled or misfiled are all 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import statistics
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
    process_tree,
    remove,
    rss_mb,
    temp_root,
)
from soakfaults import AREA_OF, FAULTS, Injector, Missed  # noqa: E402

DB = "relay_soak"
WARM_UP = 60.0  # seconds after a worker (re)starts before its memory counts as the baseline
CUSTOMERS = 97  # make_message writes from customer{n % 97}@customer.example
RECENT = 60.0  # a delivery "during faults": a fault from 60 s before it until it was stored
NUMBER = re.compile(r"(\d+)$")


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


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Soak:
    retry_db = staticmethod(retry_db)

    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = temp_root("relay-soak-")
        self.pg = PrivatePostgres(self.root / "pg")
        self.redis = PrivateRedis(self.root / "redis")
        self.faults: Counter[str] = Counter()
        self.missed: Counter[str] = Counter()
        self.fault_times: list[float] = []  # wall clock
        self.delivered = 0
        self.deliveries: dict[int, tuple[int, float, str]] = {}  # n -> (mailbox, at, push/poll)
        self.sends = 0
        self.started: dict[str, float] = {}
        self.log_offset: dict[str, int] = {}
        self.rss: dict[str, list[tuple[float, float]]] = {}
        self.dovecot = None
        self.proxy = None
        self.smtp = None
        self.smtp_controller = None
        self.celery: Celery | None = None
        self.users = []
        self.mailboxes = []
        self.injector = Injector(self)

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
            # A line per task: how bench/soakfaults.py sees which worker holds which task.
            "RELAY_WORKER_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }

    def setup(self) -> None:
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
        if limit < 1000:
            raise SystemExit(
                f"fs.inotify.max_user_instances is {limit}: Dovecot's IDLE would poll every 30 s. "
                "Raise it: sysctl -w fs.inotify.max_user_instances=8192"
            )
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
        # aiosmtpd's line per SMTP command, in this process, would bury the soak's own lines.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        from django.contrib.auth import get_user_model

        from crm.models import Contact
        from crm.services import contact_set_emails
        from inbox.crypto import encrypt
        from inbox.models import Mailbox
        from tests.servers.dovecot import make_certificate, start_dovecot
        from tests.servers.faultproxy import FaultProxy
        from tests.servers.fixtures import ImapUser
        from tests.servers.smtp import start_smtp

        self.dovecot = start_dovecot(make_certificate())
        self.proxy = FaultProxy(self.dovecot.host, self.dovecot.port).start()
        self.smtp_controller, self.smtp = start_smtp()
        self.owner = get_user_model().objects.create(username="soak")
        self.contacts = []
        for k in range(CUSTOMERS):
            contact = Contact.objects.create(first_name="Customer", last_name=str(k))
            contact_set_emails(contact=contact, emails=[f"customer{k}@customer.example"])
            self.contacts.append(contact.pk)
        for _ in range(self.args.mailboxes):
            user = ImapUser(self.dovecot, self.dovecot.create_user())
            self.dovecot.deliver_many(
                user, [make_message(self.delivered + i, to=user) for i in range(20)]
            )
            self.delivered += 20
            mailbox = Mailbox(
                owner=self.owner,
                email_address=user.login,
                login=user.login,
                password_encrypted=encrypt(user.password),
                imap_host=self.proxy.host,
                imap_port=self.proxy.port,  # every IMAP byte passes the fault proxy
                imap_security="none",
                smtp_host=self.smtp.host,
                smtp_port=self.smtp.port,
                smtp_security="none",
                smtp_auth="separate",
                smtp_login=self.smtp.user,
                refresh_interval=5,
            )
            mailbox.set_smtp_password(self.smtp.password)
            mailbox.save()
            self.users.append(user)
            self.mailboxes.append(mailbox)
        self.celery = Celery(self.root / "celery", env)
        for i in range(self.args.workers):
            self.start_worker(f"w{i + 1}")
        self.celery.beat()
        self.start_gateway()
        began = time.monotonic()
        while retry_db(lambda: Mailbox.objects.filter(watch_state="live").count()) < len(
            self.users
        ):
            if time.monotonic() - began > 300:
                raise SystemExit("the gateway did not watch every mailbox within 5 minutes")
            time.sleep(1)
        print(f"every mailbox watched live after {time.monotonic() - began:.0f} s", flush=True)

    def _started(self, name: str) -> None:
        self.started[name] = time.monotonic()
        self.rss[name] = []
        path = self.celery.root / f"{name}.log"
        self.log_offset[name] = path.stat().st_size if path.exists() else 0

    def start_worker(self, name: str) -> None:
        self.celery.worker(name, queues="celery,push")
        self._started(name)

    def start_gateway(self) -> None:
        self.celery.gateway("gateway")
        self._started("gateway")

    def worker_names(self) -> list[str]:
        return sorted(n for n in self.celery.procs if n.startswith("w"))

    def worker_log(self, name: str) -> str:
        """What the worker logged since it last started."""
        path = self.celery.root / f"{name}.log"
        with open(path, "rb") as f:
            f.seek(self.log_offset[name])
            return f.read().decode(errors="replace")

    def stop_smtp(self) -> None:
        self.smtp_controller.stop()
        self.smtp_controller = None

    def start_smtp(self) -> None:
        from tests.servers.smtp import start_smtp

        if self.smtp_controller is None:
            self.smtp_controller, _ = start_smtp(server=self.smtp)

    # --- the traffic -------------------------------------------------------------------------
    def mode_of(self, mailbox_pk: int) -> str:
        """ "push" when the mailbox's watch is live (its gateway's lease running), else "poll"."""
        from connector.sync.watches import live_q
        from inbox.models import Mailbox

        live = retry_db(lambda: Mailbox.objects.filter(live_q(), pk=mailbox_pk).exists())
        return "push" if live else "poll"

    def deliver_one(self) -> None:
        i = self.rng.randrange(len(self.users))
        user = self.users[i]
        n = self.delivered
        self.dovecot.deliver_many(user, [make_message(n, to=user)])
        self.deliveries[n] = (self.mailboxes[i].pk, time.time(), self.mode_of(self.mailboxes[i].pk))
        self.delivered += 1

    def send_one(self) -> None:
        """The composer's own service (inbox/services/composing.py): queued, then sent by a
        worker through connector/outbound/outbox.py."""
        from inbox.models import OutboxEntry
        from inbox.services.composing import outbox_compose

        n = self.sends
        self.sends += 1
        subject = f"Soak send {n}"
        mailbox = self.mailboxes[self.rng.randrange(len(self.mailboxes))]

        def compose():
            # A PostgreSQL restart may have cut the answer to a commit that happened.
            if not OutboxEntry.objects.filter(subject=subject).exists():
                outbox_compose(
                    user=self.owner,
                    mailbox=mailbox,
                    to=[f"Customer {n % CUSTOMERS} <customer{n % CUSTOMERS}@customer.example>"],
                    subject=subject,
                    text_body=f"Hello, this is our message {n}.\n",
                )

        retry_db(compose)

    # --- faults ------------------------------------------------------------------------------
    def sample_memory(self) -> None:
        now = time.monotonic()
        for name in list(self.rss):
            if now - self.started[name] >= WARM_UP:
                proc = self.celery.procs[name]
                self.rss[name].append((now, rss_mb(process_tree(proc.pid))))

    def run(self) -> None:
        args = self.args
        begin = time.monotonic()
        end = begin + args.minutes * 60
        next_fault = begin + self.rng.uniform(args.min_gap, args.max_gap)
        next_send = begin + self.rng.uniform(args.min_send, args.max_send)
        next_sample = begin + WARM_UP
        print(
            f"soak: {args.minutes} min, {args.mailboxes} mailboxes, {args.workers} workers, "
            f"a fault every {args.min_gap}-{args.max_gap} s",
            flush=True,
        )
        while time.monotonic() < end and sum(self.faults.values()) < args.faults:
            self.deliver_one()
            now = time.monotonic()
            self.injector.run_due()
            if now >= next_send:
                self.send_one()
                next_send = now + self.rng.uniform(args.min_send, args.max_send)
            if now >= next_fault:
                kind = self.rng.choice(FAULTS)
                try:
                    what = self.injector.inject(kind)
                except Missed as exc:
                    self.missed[kind] += 1
                    what = f"missed {kind}: {exc}"
                except Exception as exc:  # noqa: BLE001 - the harness's own trouble, not Relay's
                    self.missed[f"{kind} (harness error)"] += 1
                    what = f"could not inject {kind}: {type(exc).__name__}: {exc}"
                else:
                    self.faults[kind] += 1
                    self.fault_times.append(time.time())
                print(
                    f"[{now - begin:6.0f} s] fault {sum(self.faults.values())}: {what}", flush=True
                )
                next_fault = time.monotonic() + self.rng.uniform(args.min_gap, args.max_gap)
            if now >= next_sample:
                self.sample_memory()
                next_sample = now + 30
            time.sleep(self.rng.uniform(0.2, 1.5))
        self.injector.run_due(everything=True)
        self.sample_memory()
        self.ran = time.monotonic() - begin

    # --- the end -----------------------------------------------------------------------------
    def converge(self, timeout: float) -> float:
        """After the last fault: one more delivery per mailbox, then wait until every message
        is stored and filed and the outbox has nothing left to do."""
        for i, user in enumerate(self.users):
            n = self.delivered
            self.dovecot.deliver_many(user, [make_message(n, to=user)])
            self.deliveries[n] = (self.mailboxes[i].pk, time.time(), "closing")
            self.delivered += 1
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if (
                not retry_db(self.outbox_busy)
                and not self.oracle()["lost"]
                and not retry_db(self.unfiled)
            ):
                return time.monotonic() - began
            time.sleep(3)
        return float("nan")

    def outbox_busy(self) -> int:
        from inbox.models import OutboxEntry

        busy = OutboxEntry.objects.filter(state__in=("queued", "retrying", "sending", "scheduled"))
        finishing = OutboxEntry.objects.filter(state="sent", sent_message__isnull=True)
        return busy.count() + finishing.count()

    def unfiled(self) -> int:
        from inbox.models import Message

        return Message.objects.filter(filed_at__isnull=True).count()

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

    def sending_figures(self) -> Counter:
        """Each entry against what the SMTP server accepted and what Sent holds."""
        from email import message_from_bytes

        from inbox.models import OutboxEntry

        received = Counter(
            (message_from_bytes(m.raw)["Message-ID"] or "").strip("<> ")
            for m in list(self.smtp.received)
        )
        in_sent: Counter[str] = Counter()
        for user in self.users:
            client = self.dovecot.imap(user.login)
            try:
                client.select('"Sent"', readonly=True)
                _typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                for item in data:
                    if isinstance(item, tuple):
                        found = re.search(rb"<([^>]+)>", item[1])
                        if found:
                            in_sent[found[1].decode()] += 1
            finally:
                client.logout()
        figures = Counter()
        entries = retry_db(
            lambda: list(
                OutboxEntry.objects.values_list("message_id", "state", "last_error", "sent_message")
            )
        )
        ids = set()
        for message_id, state, error, sent_message in entries:
            ids.add(message_id)
            got, copies = received[message_id], in_sent[message_id]
            figures["queued"] += 1
            figures["doubled"] += got > 1
            figures["sent copy doubled"] += copies > 1
            if state == "sent":
                figures["sent once"] += got == 1
                figures["lost"] += got == 0
                figures["sent copy in Sent once"] += copies == 1
                figures["sent copy missing"] += copies == 0
                figures["sent copy not stored"] += sent_message is None
            elif state in ("queued", "retrying", "sending", "scheduled"):
                figures[f"still {state}"] += 1
                figures["sent copy doubled"] += copies > 0  # appended before it was sent?
            elif state in ("verify", "failed"):
                figures[f"{state}, with its error, accepted by the server {got}x"] += 1
                figures["lost"] += not error
            else:
                figures[f"in state {state}"] += 1
        figures["accepted by the server, no such entry"] = sum(
            1 for message_id in received if message_id not in ids
        )
        return figures

    def filing_figures(self) -> Counter:
        """Every stored message on the contact its number names, once."""
        from inbox.models import Filing, Message

        messages = retry_db(lambda: list(Message.objects.values_list("pk", "subject")))
        filings: dict[int, list[tuple[str, int | None]]] = {}
        rows = retry_db(
            lambda: list(
                Filing.objects.filter(unlinked_at__isnull=True).values_list(
                    "message_id", "record_type", "contact_id"
                )
            )
        )
        for message_id, record_type, contact_id in rows:
            filings.setdefault(message_id, []).append((record_type, contact_id))
        figures = Counter(messages=len(messages))
        for pk, subject in messages:
            number = NUMBER.search(subject or "")
            expected = self.contacts[int(number[1]) % CUSTOMERS] if number else None
            mine = filings.get(pk, [])
            if not mine:
                figures["unfiled"] += 1
            elif len(mine) > 1:
                figures["filed more than once"] += 1
            elif mine[0] != ("contact", expected):
                figures["misfiled"] += 1
            else:
                figures["filed once on its contact"] += 1
        return figures

    def latency_rows(self) -> list[tuple[str, list[float]]]:
        from inbox.models import Message

        stored = {}
        for subject, created in retry_db(
            lambda: list(
                Message.objects.filter(subject__startswith="Question number ").values_list(
                    "subject", "created_at"
                )
            )
        ):
            stored[int(subject.rsplit(" ", 1)[1])] = created.timestamp()
        rows: dict[str, list[float]] = {
            k: [] for k in ("all", "fault within 60 s", "quiet", "push live", "polling")
        }
        for n, (_mailbox, at, mode) in self.deliveries.items():
            if n not in stored or mode == "closing":
                continue
            took = stored[n] - at
            faulty = any(at - RECENT <= t <= stored[n] for t in self.fault_times)
            rows["all"].append(took)
            rows["fault within 60 s" if faulty else "quiet"].append(took)
            rows["push live" if mode == "push" else "polling"].append(took)
        return list(rows.items())

    def report(self, convergence: float) -> int:
        figures = self.oracle()
        sends = self.sending_figures()
        filing = self.filing_figures()
        areas = Counter()
        for kind, count in self.faults.items():
            areas[AREA_OF[kind]] += count
        print("\n=== soak figures ===")
        print(f"ran {self.ran / 60:.1f} min")
        print(f"faults injected: {sum(self.faults.values())} by area {dict(sorted(areas.items()))}")
        print(f"  by kind: {dict(sorted(self.faults.items()))}")
        if self.missed:
            print(
                f"  aimed faults that found nothing to aim at: {dict(sorted(self.missed.items()))}"
            )
        stored = sum(len(v) for k, v in self.latency_rows() if k == "all")
        print(
            f"messages delivered: {self.delivered} (stored {stored} of the {len(self.deliveries)} "
            f"delivered during the run, plus {self.delivered - len(self.deliveries)} before)"
        )
        print(f"lost: {figures['lost']}")
        print(f"duplicated: {figures['duplicated']}")
        print(f"phantom: {figures['phantom']}")
        print(f"sends: {dict(sorted(sends.items()))}")
        print(f"filing: {dict(sorted(filing.items()))}")
        print(f"catch-up after the last fault: {convergence:.0f} s")
        print("delivery -> stored (s)      n     p50     p90     p99     max")
        for label, values in self.latency_rows():
            if values:
                print(
                    f"  {label:22} {len(values):6} {statistics.median(values):7.2f} "
                    f"{percentile(values, 90):7.2f} {percentile(values, 99):7.2f} "
                    f"{max(values):7.2f}"
                )
        for name, samples in sorted(self.rss.items()):
            if len(samples) >= 2:
                first, last = samples[0][1], samples[-1][1]
                span = (samples[-1][0] - samples[0][0]) / 60
                print(
                    f"{name} RSS: {first:.0f} MB after warm-up -> {last:.0f} MB "
                    f"{span:.0f} min later ({(last - first) / first * 100:+.1f} %)"
                )
            else:
                print(f"{name}: restarted too recently for a memory figure")
        bad = (
            sum(figures.values())
            + sends["lost"]
            + sends["doubled"]
            + sends["sent copy doubled"]
            + sends["sent copy missing"]
            + sends["accepted by the server, no such entry"]
            + filing["unfiled"]
            + filing["filed more than once"]
            + filing["misfiled"]
        )
        return 0 if not bad else 1

    def teardown(self) -> None:
        from django.conf import settings
        from django.db import connections

        if settings.configured:  # not when setup stopped before Django was set up
            connections.close_all()
        if self.celery is not None:
            self.celery.stop_all()
        if self.smtp_controller is not None:
            self.smtp_controller.stop()
        if self.proxy is not None:
            self.proxy.stop()
        if self.dovecot is not None:
            from tests.servers.dovecot import stop_dovecot

            stop_dovecot(self.dovecot)
        self.redis.stop()
        self.pg.stop()
        if not self.args.keep:
            remove(self.root)
        else:
            print(f"logs kept in {self.root}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--faults", type=int, default=10**9, help="stop after this many faults")
    parser.add_argument("--mailboxes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-gap", type=float, default=30, help="seconds between faults, least")
    parser.add_argument("--max-gap", type=float, default=120, help="seconds between faults, most")
    parser.add_argument("--min-send", type=float, default=3, help="seconds between sends, least")
    parser.add_argument("--max-send", type=float, default=8, help="seconds between sends, most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--catch-up", type=float, default=900, help="seconds allowed to converge at the end"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs (and data) afterwards")
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
