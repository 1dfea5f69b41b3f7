"""A throwaway Dovecot for the test suite, driven with ``doveadm -c CONF``.

One server per test session (it starts in well under a second); each test gets fresh users so
tests never see each other's mail. The helpers change the server *behind the client's back*,
the way another mail client or the provider would: they are how tests produce the scenarios of
docs/reliability.md §1 (new mail, flags changed elsewhere, move, expunge, UIDVALIDITY reset...).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import datetime as dt
import hashlib
import imaplib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .certs import Certificate, free_port, make_self_signed

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"

# Mail is owned by an unprivileged user: Dovecot refuses mail access as root (uid 0).
MAIL_USER = "nobody"

# Dovecot 2.3's own capability list minus CONDSTORE and QRESYNC, for the docs/reliability.md S-19
# path (a server without them). The client must then fall back to a full flag scan.
NO_CONDSTORE_CAPABILITY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "
    "LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ "
    "NOTIFY SPECIAL-USE"
)

# The same without UIDPLUS and MOVE, for docs/reliability.md S-30: the client can then neither
# UID EXPUNGE nor UID MOVE, and a plain EXPUNGE would remove what other clients only flagged
# \Deleted. (Dovecot still understands both commands; the client goes by what is announced.)
NO_UIDPLUS_CAPABILITY = " ".join(
    c
    for c in (NO_CONDSTORE_CAPABILITY + " CONDSTORE QRESYNC").split()
    if c not in ("UIDPLUS", "MOVE")
)

CONFIG = """\
# Written by tests/servers/dovecot.py for one test session; deleted afterwards.
protocols = imap
listen = 127.0.0.1
# Names this instance: a server answering on the port is known to be this one, not another
# pytest-xdist worker's Dovecot that took the port first (see Dovecot._answers).
login_greeting = Relay test Dovecot {root}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
# XOAUTH2 too: without an oauth2 passdb Dovecot checks the bearer token against the passdb
# like a password, so in tests a user's access token is its password.
auth_mechanisms = plain login xoauth2
mail_location = maildir:{root}/mail/%u:LAYOUT=fs
mail_uid = {uid}
mail_gid = {gid}
{capability}
# One passwd-file per user: Dovecot re-reads a passwd-file at most once a second, so a single
# shared file would hide users created within that second. A new file is read at first use.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users/%u
  default_fields = home={root}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    auto = subscribe
    special_use = \\Drafts
  }}
  mailbox Sent {{
    auto = subscribe
    special_use = \\Sent
  }}
  mailbox Trash {{
    auto = subscribe
    special_use = \\Trash
  }}
  mailbox Junk {{
    auto = subscribe
    special_use = \\Junk
  }}
  mailbox Archive {{
    auto = subscribe
    special_use = \\Archive
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
service imap {{
  process_limit = {imap_processes}
}}
{login_service}
service anvil {{
  # The tests log in hundreds of times from 127.0.0.1 within seconds.
  client_limit = {anvil_clients}
  # No auth penalty (2-15 s per login after failures from one IP): the wrong-password tests
  # would pay it. Dovecot's documented way to turn it off.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_max_userip_connections = 100
auth_failure_delay = 0
"""


class DoveadmError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerMessage:
    """One message as the server holds it: the "server truth" of docs/reliability.md §8.1."""

    folder: str
    uidvalidity: int
    uid: int
    sha256: str
    flags: frozenset[str]


class Dovecot:
    """A running Dovecot. ``host``/``port`` is the plain listener (it offers STARTTLS),
    ``tls_port`` the implicit-TLS one; both use the self-signed certificate at ``cert_path``."""

    host = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        certificate: Certificate,
        *,
        condstore: bool = True,
        capability: str | None = None,
        connections: int = 64,
    ):
        self.root = root
        # How many IMAP sessions it holds at once (one imap process each): the suite's 64, or a
        # thousand and more for bench/push.py's watched mailboxes.
        self.connections = connections
        self.certificate = certificate
        self.condstore = condstore
        # The announced capabilities (Dovecot's imap_capability) when not its own list.
        self.capability = capability or (None if condstore else NO_CONDSTORE_CAPABILITY)
        self.conf = root / "dovecot.conf"
        self.users_dir = root / "users"
        self.port = 0
        self.tls_port = 0
        self.process: subprocess.Popen | None = None
        self._passwords: dict[str, str] = {}
        self._users_lock = threading.Lock()
        self._counter = itertools.count(1)

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def cert_path(self) -> Path:
        return self.certificate.cert_path

    @property
    def ca_path(self) -> Path:
        return self.certificate.ca_path

    def start(self, attempts: int = 5) -> None:
        mail_user = pwd.getpwnam(MAIL_USER)
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("mail", "home"):
            os.chown(self.root / sub, mail_user.pw_uid, mail_user.pw_gid)
        self.users_dir.mkdir(exist_ok=True)
        self.users_dir.chmod(0o755)
        last_log = ""
        for _ in range(attempts):
            self.port, self.tls_port = free_port(), free_port()
            if self.port == self.tls_port:
                continue
            capability = f'imap_capability = "{self.capability}"' if self.capability else ""
            self.conf.write_text(
                CONFIG.format(
                    root=self.root,
                    cert=self.certificate.cert_path,
                    key=self.certificate.key_path,
                    uid=mail_user.pw_uid,
                    gid=mail_user.pw_gid,
                    port=self.port,
                    tls_port=self.tls_port,
                    capability=capability,
                    imap_processes=self.connections,
                    login_service=_login_service(self.connections),
                    anvil_clients=max(1000, self.connections + 100),
                )
            )
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Its own process group, so stopping it reaches every child at once.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            if self._wait_ready(timeout=10):
                return
            last_log = self._stop_process()
        raise RuntimeError(f"Dovecot did not start:\n{last_log}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self._greets(self.port) and self._answers(self.tls_port):
                # Dovecot binds all its listeners or exits: the plain one greeting with this
                # instance's name means the TLS one is this instance's too.
                return self.process.poll() is None
            time.sleep(0.02)
        return False

    def _answers(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def _greets(self, port: int) -> bool:
        """The plain listener answers with this instance's greeting: the ports are chosen
        free, released, then bound by Dovecot, and a parallel worker could take one first."""
        try:
            with socket.create_connection((self.host, port), timeout=0.5) as sock:
                sock.settimeout(2)
                return f"Relay test Dovecot {self.root}".encode() in sock.recv(4096)
        except OSError:
            return False

    def _stop_process(self) -> str:
        log = ""
        if self.process is not None:
            if self.process.poll() is None:
                # Dovecot's master, then all its children at once (its own group, never ours):
                # the master alone takes about a second to wind them down.
                self.process.send_signal(signal.SIGTERM)
                try:
                    os.killpg(self.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stderr is not None:
                log = self.process.stderr.read().decode(errors="replace")
                self.process.stderr.close()
            self.process = None
        log_file = self.root / "dovecot.log"
        if log_file.exists():
            log += log_file.read_text(errors="replace")[-4000:]
        return log

    def stop(self) -> None:
        self._stop_process()

    def log(self) -> str:
        log_file = self.root / "dovecot.log"
        return log_file.read_text(errors="replace") if log_file.exists() else ""

    # --- users -------------------------------------------------------------------------
    def create_user(self, name: str | None = None, password: str | None = None) -> str:
        """Add a user and return the login name. Default name and password are unique."""
        n = next(self._counter)
        name = name or f"user{n}-{os.getpid()}@relay.test"
        password = password or f"pw-{n}-{os.urandom(4).hex()}"
        with self._users_lock:
            if name in self._passwords:
                raise ValueError(f"user {name} exists already")
            self._write_user(name, password)
            self._passwords[name] = password
        return name

    def password(self, user: str) -> str:
        return self._passwords[user]

    def set_password(self, user: str, password: str) -> None:
        """Change the password on the server (docs/reliability.md S-28: password changed elsewhere).
        Takes up to a second: Dovecot looks at a passwd-file at most once per second."""
        with self._users_lock:
            self._passwords[user] = password
            self._write_user(user, password)
        time.sleep(1.05 - (time.time() % 1.0))

    def _write_user(self, user: str, password: str) -> None:
        if any(ch in part for part in (user, password) for ch in ":\n/") or user.startswith("."):
            raise ValueError("user names and passwords here may not hold ':', '/' or newlines")
        path = self.users_dir / user
        previous = path.stat().st_mtime if path.exists() else 0
        # Write then rename so Dovecot never reads half a file; move the mtime forward so the
        # change is seen even within the same second as the last read.
        tmp = self.users_dir / f".{user}.tmp"
        tmp.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        tmp.chmod(0o644)
        stamp = max(time.time(), previous + 1)
        os.utime(tmp, (stamp, stamp))
        tmp.replace(path)

    # --- doveadm -----------------------------------------------------------------------
    def doveadm(self, *args: str, input: bytes | None = None) -> str:
        result = subprocess.run(
            [DOVEADM, "-c", str(self.conf), *args],
            input=input,
            capture_output=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise DoveadmError(
                f"doveadm {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode("utf-8", errors="replace")

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        out = self.doveadm("-f", "tab", "fetch", "-u", user, "uid", "mailbox", folder, "all")
        return sorted(int(line) for line in out.splitlines()[1:] if line.strip())

    def deliver(
        self,
        user: str,
        raw: bytes,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        received: dt.datetime | None = None,
    ) -> int:
        """Save ``raw`` into ``folder`` as a new message (``doveadm save``) and return its UID.
        Tests deliver to one user at a time, so the new message is the highest UID.

        ``received`` sets the INTERNALDATE (what SEARCH SINCE looks at, so the sync-from date
        tests need it); ``doveadm save`` cannot, so that case goes through a plain imaplib
        APPEND and reads the UID from APPENDUID (RFC 4315)."""
        if received is not None:
            return self._append(user, raw, folder, flags, received)
        before = set(self.uids(user, folder))
        self.doveadm("save", "-u", user, "-m", folder, input=raw)
        new = [uid for uid in self.uids(user, folder) if uid not in before]
        if len(new) != 1:
            raise DoveadmError(f"expected one new UID in {folder}, found {new}")
        uid = new[0]
        flags = list(flags)
        if flags:
            self.add_flags(user, folder, uid, flags)
        return uid

    def deliver_many(
        self,
        user: str,
        raws: Iterable[bytes],
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        received: dt.datetime | None = None,
    ) -> list[int]:
        """Many messages over one plain imaplib connection (APPEND, UIDs from APPENDUID,
        RFC 4315): ~1 ms each against ~30 ms for ``deliver``, for big corpora and benches."""
        flag_list = "(" + " ".join(flags) + ")"
        when = received or dt.datetime.now(dt.UTC)
        uids = []
        client = self.imap(user)
        try:
            for raw in raws:
                typ, data = client.append(_quote(folder), flag_list, when, raw)
                if typ != "OK":
                    raise DoveadmError(f"APPEND to {folder} failed: {data}")
                uids.append(int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1]))
        finally:
            client.logout()
        return uids

    def _append(
        self, user: str, raw: bytes, folder: str, flags: Iterable[str], received: dt.datetime
    ) -> int:
        client = self.imap(user)
        try:
            flag_list = "(" + " ".join(flags) + ")"
            typ, data = client.append(_quote(folder), flag_list, received, raw)
            if typ != "OK":
                raise DoveadmError(f"APPEND to {folder} failed: {data}")
            return int(re.search(rb"APPENDUID \d+ (\d+)", data[0])[1])
        finally:
            client.logout()

    def _flags(self, command: str, user: str, folder: str, uid: int, flags: Iterable[str]):
        flags = " ".join(flags)
        self.doveadm("flags", command, "-u", user, flags, "mailbox", folder, "uid", str(uid))

    def set_flags(self, user: str, folder: str, uid: int, flags: Iterable[str]) -> None:
        flags = list(flags)
        if flags:
            self._flags("replace", user, folder, uid, flags)
        else:
            current = self.flags(user, folder, uid)
            if current:
                self._flags("remove", user, folder, uid, current)

    def add_flags(self, user: str, folder: str, uid: int, flags: Iterable[str]) -> None:
        self._flags("add", user, folder, uid, flags)

    def remove_flags(self, user: str, folder: str, uid: int, flags: Iterable[str]) -> None:
        self._flags("remove", user, folder, uid, flags)

    def flags(self, user: str, folder: str, uid: int) -> frozenset[str]:
        out = self.doveadm(
            "-f", "tab", "fetch", "-u", user, "flags", "mailbox", folder, "uid", str(uid)
        )
        lines = out.splitlines()[1:]
        if not lines:
            raise DoveadmError(f"no message {folder}/{uid} for {user}")
        return frozenset(f for f in lines[0].split() if f != "\\Recent")

    def move(self, user: str, uid: int, src: str, dst: str) -> None:
        self.doveadm("move", "-u", user, dst, "mailbox", src, "uid", str(uid))

    def copy(self, user: str, uid: int, src: str, dst: str) -> None:
        self.doveadm("copy", "-u", user, dst, "mailbox", src, "uid", str(uid))

    def expunge(self, user: str, folder: str, uid: int) -> None:
        self.doveadm("expunge", "-u", user, "mailbox", folder, "uid", str(uid))

    def create_folder(self, user: str, folder: str) -> None:
        self.doveadm("mailbox", "create", "-u", user, folder)

    def delete_folder(self, user: str, folder: str) -> None:
        self.doveadm("mailbox", "delete", "-u", user, "-r", folder)

    def rename_folder(self, user: str, old: str, new: str) -> None:
        self.doveadm("mailbox", "rename", "-u", user, old, new)

    def status(self, user: str, folder: str) -> dict[str, int]:
        out = self.doveadm(
            "-f",
            "flow",
            "mailbox",
            "status",
            "-u",
            user,
            "messages uidnext uidvalidity highestmodseq",
            folder,
        )
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        return self.status(user, folder)["uidvalidity"]

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY (docs/reliability.md S-01) and return it. Dovecot keeps
        the UIDs; a client must nevertheless treat every cached UID as void (RFC 3501 2.3.1.1).
        """
        new = self.uidvalidity(user, folder) + 1
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        return new

    def kick(self, user: str) -> None:
        """Disconnect the user's IMAP sessions (the server sends BYE: docs/reliability.md S-12)."""
        self.doveadm("kick", user)

    # --- server truth ------------------------------------------------------------------
    def imap(self, user: str) -> imaplib.IMAP4:
        """A plain imaplib connection logged in as ``user``: independent of connector code."""
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(user, self._passwords[user])
        return client

    def server_truth(self, user: str) -> set[ServerMessage]:
        """Every message of every selectable folder, read over a separate IMAP connection with
        EXAMINE and BODY.PEEK[] so reading it changes nothing. The hash is over the bytes an
        IMAP client receives (CRLF line ends), which is what the sync stores."""
        truth: set[ServerMessage] = set()
        client = self.imap(user)
        try:
            typ, listing = client.list()
            for line in listing:
                match = re.match(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$', line)
                if not match or b"\\noselect" in match["flags"].lower():
                    continue
                name = match["name"]
                if name.startswith(b'"'):
                    name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
                quoted = b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
                typ, _ = client.select(quoted, readonly=True)
                if typ != "OK":
                    continue
                uidvalidity = int(client.response("UIDVALIDITY")[1][0])
                folder = _decode_utf7(name)
                typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    head, raw = item
                    uid = int(re.search(rb"UID (\d+)", head)[1])
                    flags = re.search(rb"FLAGS \(([^)]*)\)", head)[1].decode().split()
                    truth.add(
                        ServerMessage(
                            folder=folder,
                            uidvalidity=uidvalidity,
                            uid=uid,
                            sha256=hashlib.sha256(raw).hexdigest(),
                            flags=frozenset(f for f in flags if f != "\\Recent"),
                        )
                    )
                client.close()
        finally:
            try:
                client.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        return truth

    # --- TLS -----------------------------------------------------------------------------
    def trusting_context(self) -> ssl.SSLContext:
        """A verifying context that trusts this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test process dies, even by SIGKILL, the kernel
    sends Dovecot's master SIGTERM (Linux prctl PR_SET_PDEATHSIG), so no server outlives it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG
    except OSError:
        pass


def _quote(folder: str) -> str:
    from imap_tools.imap_utf7 import utf7_encode

    encoded = utf7_encode(folder).decode("ascii")
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _decode_utf7(name: bytes) -> str:
    from imap_tools.imap_utf7 import utf7_decode

    return utf7_decode(name)


def _login_service(connections: int) -> str:
    """Above the suite's 64 sessions, imap-login in Dovecot's high-performance mode: a few
    processes each proxying many TLS sessions, instead of one process per session up to
    default_process_limit (100)."""
    if connections <= 64:
        return ""
    return (
        "service imap-login {\n  service_count = 0\n  process_min_avail = 2\n"
        f"  client_limit = {connections + 100}\n}}\n"
        f"default_client_limit = {connections + 100}\n"
    )


def start_dovecot(
    certificate: Certificate,
    *,
    condstore: bool = True,
    capability: str | None = None,
    connections: int = 64,
) -> Dovecot:
    # Not under pytest's tmp dir: that is mode 0700 and the unprivileged mail user must reach
    # its maildirs.
    root = Path(tempfile.mkdtemp(prefix="relay-dovecot-"))
    root.chmod(0o755)
    server = Dovecot(
        root, certificate, condstore=condstore, capability=capability, connections=connections
    )
    atexit.register(lambda: server.process is not None and stop_dovecot(server))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def stop_dovecot(server: Dovecot) -> None:
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


def make_certificate() -> Certificate:
    root = Path(tempfile.mkdtemp(prefix="relay-cert-"))
    root.chmod(0o755)
    cert = make_self_signed(root)
    # Scripts (benches) that never clean up leave nothing behind either.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return cert
