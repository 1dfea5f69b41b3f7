"""Throwaway infrastructure for bench/scale.py and bench/soak.py: a private Redis, a private
PostgreSQL (pg_ctl on a free port, so restarting it never touches the shared 5432 server:
docs/reliability.md §7), a throwaway Dovecot with mail written straight into maildirs, and real
Celery worker and beat processes. Everything is started in its own process group and stopped by PID.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.certs import free_port  # noqa: E402

CELERY = str(Path(sys.executable).with_name("celery"))
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/bin"))


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def rss_mb(pids) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def process_tree(root: int) -> set[int]:
    found = {root}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == root:
                found.add(int(entry.name))
    return found


class PrivateRedis:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.root.mkdir(parents=True, exist_ok=True)
        # Persistence as in docker-compose.yml (appendonly): a restart keeps queued tasks.
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: _port_open(self.port), timeout=10, what="private redis")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """initdb + pg_ctl as the postgres system user (PostgreSQL refuses to run as root)."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "pgdata"
        self.log = root / "pg.log"
        self.port = free_port()

    def _run(self, *args: str, check=True) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Output to a file, never a pipe: the server pg_ctl starts would inherit the pipe and
        # a reader waiting for its end would wait for the server to stop.
        with open(self.root / "pg_ctl.out", "ab") as out:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=120
            )
        if check and result.returncode != 0:
            tail = (self.root / "pg_ctl.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{tail}")

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                pg = pwd.getpwnam("postgres")
                os.chown(self.root, pg.pw_uid, pg.pw_gid)
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-o",
            self._options(),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-m",
            "fast",
            "-w",
            "-o",
            self._options(),
            "restart",
        )

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"


def admin_sql(server_url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def make_message(n: int, *, to: str, size: int = 2000) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Customer {n % 97} <customer{n % 97}@customer.example>"
    msg["To"] = to
    msg["Subject"] = f"Question number {n}"
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain="customer.example")
    body = f"Hello, this is message {n}.\n" + ("Lorem ipsum dolor sit amet. " * (size // 28))
    msg.set_content(body)
    return msg.as_bytes().replace(b"\r\n", b"\n")


_INBOX_PATTERN: dict[Path, str] = {}


def fill_inbox(server, user: str, raws) -> int:
    """Write messages into a new user's INBOX maildir (cur/, read by Dovecot on first SELECT):
    thousands of messages in a second, where `doveadm save` takes ~30 ms each."""
    from tests.servers.dovecot import MAIL_USER

    mail_user = pwd.getpwnam(MAIL_USER)
    pattern = _INBOX_PATTERN.get(server.root)
    if pattern is None:
        # Ask Dovecot once where a user's INBOX lives; the others follow the same pattern.
        server.doveadm("mailbox", "status", "-u", user, "messages", "INBOX")
        found = server.doveadm("mailbox", "path", "-u", user, "INBOX").strip()
        pattern = _INBOX_PATTERN[server.root] = found.replace(user, "{user}")
    inbox = Path(pattern.format(user=user))
    for sub in ("", "cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)
        os.chown(inbox / sub, mail_user.pw_uid, mail_user.pw_gid)
    count = 0
    for count, raw in enumerate(raws, 1):
        path = inbox / "cur" / f"{int(time.time())}.M{count}P{os.getpid()}.bench:2,"
        path.write_bytes(raw)
        os.chown(path, mail_user.pw_uid, mail_user.pw_gid)
    return count


class Celery:
    """Worker and beat processes sharing one environment; logs under `root`."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        root.mkdir(parents=True, exist_ok=True)

    def _start(
        self, name: str, args: list[str], command: list[str] | None = None
    ) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            [*(command or [CELERY, "-A", "crm"]), *args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def worker(self, name: str, concurrency: int = 1, queues: str = "celery") -> subprocess.Popen:
        # INFO: the "ready." line is how callers know the worker consumes.
        return self._start(
            name,
            [
                "worker",
                "--concurrency",
                str(concurrency),
                "-Q",
                queues,
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        )

    def beat(self, name: str = "beat") -> subprocess.Popen:
        return self._start(
            name,
            ["beat", "--schedule", str(self.root / f"{name}-schedule"), "--loglevel", "WARNING"],
        )

    def gateway(self, name: str = "gateway") -> subprocess.Popen:
        """`manage.py push_gateway` (connector/scheduling/gateway.py) in the same environment."""
        return self._start(
            name,
            ["push_gateway", "--name", name],
            command=[sys.executable, str(ROOT / "manage.py")],
        )

    def log(self, name: str, tail: int = 200_000) -> str:
        path = self.root / f"{name}.log"
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(path.stat().st_size - tail, 0))
            return f.read().decode(errors="replace")

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, name: str) -> None:
        _stop_group(self.procs[name])

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            _stop_group(proc)

    def rss_mb(self, name: str) -> float:
        proc = self.procs[name]
        return rss_mb(process_tree(proc.pid)) if proc.poll() is None else 0.0


def temp_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
