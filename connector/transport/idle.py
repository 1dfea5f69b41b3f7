"""A small asyncio IMAP client that only waits for news: IDLE (RFC 2177) and NOTIFY (RFC 5465).

Why our own: aioimaplib is GPL-3.0 (and has an open hang in idle_start); imap-tools' IDLE
blocks a thread per connection, and a gateway holds thousands (docs/product.md §3.11). It does
nothing else: login, CAPABILITY, EXAMINE, STATUS, NOTIFY SET, IDLE/DONE, LOGOUT. Fetching is
the sync's job (connector/sync/).

It opens its connections under the same rules as connector/transport/imap.py:

- the host is resolved once and vetted by connector/transport/net.py (SSRF guard); the socket
  goes to the vetted address, TLS verifies the certificate against the name the user typed
  (connector/transport/tls.py; docs/reliability.md C-04, C-07);
- STARTTLS is required when chosen (C-05), clear text only to allow-listed hosts (C-06);
- the login is LOGIN, AUTHENTICATE PLAIN for non-ASCII credentials, or XOAUTH2 with the
  token connector/transport/oauth.py refreshed; refusals are ``AuthenticationFailed``;
- every socket, TLS and protocol error becomes one of connector/transport/errors.py.

Memory per session (docs/reliability.md P-19): asyncio's TLS protocol allocates a 256 KiB read
buffer per connection; ``limit_tls_buffers`` makes it 16 KiB (one TLS record), and the stream
reader holds at most one response line. TCP keepalive is on, so a peer that vanished without
a FIN is found by the kernel too (P-13).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import socket
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imap_tools.imap_utf7 import utf7_decode
from imap_tools.utils import encode_folder

from connector.transport import net
from connector.transport.errors import AuthenticationFailed, PermanentFailure, TemporaryFailure
from connector.transport.imap import ImapSettings
from connector.transport.tls import check_security, tls_context

# One TLS record is at most 16 KiB of plain text: a read buffer that size loses nothing.
TLS_READ_BUFFER = 16 * 1024
# The longest response line kept in memory; IDLE news is a few dozen bytes.
LINE_LIMIT = 16 * 1024
_TEMPORARY_CODES = (b"UNAVAILABLE", b"INUSE", b"LIMIT", b"SERVERBUG")
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_EVENT = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)\b", re.IGNORECASE)


def limit_tls_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Make asyncio's per-connection TLS read buffer ``size`` bytes (from 256 KiB). Called by
    the gateway process only; it holds thousands of sessions that read a few bytes each."""
    sslproto.SSLProtocol.max_size = size


@functools.cache
def _shared_context(allow_insecure_cert: bool) -> ssl.SSLContext:
    """One TLS context per kind for every session: each holds the system's CA store, about
    600 KiB and a few milliseconds to load, far more than a session itself
    (docs/reliability.md P-19)."""
    return tls_context(allow_insecure_cert)


def _set_keepalive(sock: socket.socket | None, idle: int = 60, interval: int = 20) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


@dataclass
class Timing:
    """How long things may take. The gateway builds it from settings; tests make it short."""

    reidle: float = 600.0  # renew IDLE this often (RFC 2177: before 29 minutes)
    watchdog: float = 300.0  # a connection silent this long is dead
    sweep: float = 900.0  # STATUS of the other folders, without NOTIFY
    command: float = 60.0  # a command's answer
    deadline: float | None = None  # time.monotonic() when the session must end (token expiry)


@dataclass
class FolderMark:
    messages: int = 0
    uidnext: int | None = None
    highestmodseq: int | None = None


@dataclass
class IdleClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    capabilities: frozenset[str] = frozenset()
    mode: str = ""  # "notify" or "idle" once watching
    _tag: int = 0
    marks: dict[str, FolderMark] = field(default_factory=dict)

    # --- connecting ----------------------------------------------------------------------
    @classmethod
    async def connect(cls, s: ImapSettings, *, timeout: float = 60.0) -> IdleClient:
        check_security(s.host, s.security)
        # getaddrinfo blocks: in a thread. One lookup, every address vetted
        # (docs/reliability.md C-07).
        addresses = await asyncio.to_thread(net.resolve_allowed, s.host, s.port)
        context = _shared_context(s.allow_insecure_cert)
        last: Exception | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(timeout):
                    reader, writer = await asyncio.open_connection(
                        address,
                        s.port,
                        ssl=context if s.security == "ssl" else None,
                        server_hostname=s.host if s.security == "ssl" else None,
                        limit=LINE_LIMIT,
                    )
                break
            except ssl.SSLCertVerificationError as exc:
                raise PermanentFailure(
                    f"IMAP connect: certificate not trusted: {exc.verify_message}", category="tls"
                ) from exc
            except ssl.SSLError as exc:
                raise PermanentFailure(f"IMAP connect: TLS failed: {exc}", category="tls") from exc
            except (OSError, TimeoutError) as exc:
                last = exc
        else:
            raise TemporaryFailure(f"cannot connect to port {s.port}: {last}") from last
        _set_keepalive(writer.get_extra_info("socket"))
        client = cls(reader=reader, writer=writer, host=s.host)
        try:
            async with asyncio.timeout(timeout):
                greeting = await client._line()
                if greeting.startswith(b"* BYE"):
                    raise TemporaryFailure(f"IMAP connect: server said {greeting[:200]!r}")
                if s.security == "starttls":
                    await client._starttls(context, timeout)
                await client._login(s)
                client.capabilities = await client._capability()
        except BaseException:
            client.abort()
            raise
        return client

    async def _starttls(self, context: ssl.SSLContext, timeout: float) -> None:
        caps = await self._capability()
        if "STARTTLS" not in caps:
            # Never carry on in clear text (RFC 3501 6.2.1; docs/reliability.md C-05).
            raise PermanentFailure("the server does not offer STARTTLS", category="tls")
        await self.command("STARTTLS")
        try:
            await self.writer.start_tls(context, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            raise PermanentFailure(
                f"IMAP STARTTLS: certificate not trusted: {exc.verify_message}", category="tls"
            ) from exc
        except ssl.SSLError as exc:
            raise PermanentFailure(f"IMAP STARTTLS: TLS failed: {exc}", category="tls") from exc

    async def _login(self, s: ImapSettings) -> None:
        if s.access_token:
            sasl = f"user={s.login}\x01auth=Bearer {s.access_token}\x01\x01"
            argument = f"AUTHENTICATE XOAUTH2 {base64.b64encode(sasl.encode()).decode()}"
        elif s.login.isascii() and s.password.isascii():
            argument = f"LOGIN {_quote(s.login)} {_quote(s.password)}"
        else:
            # Non-ASCII credentials: AUTHENTICATE PLAIN carries UTF-8 (RFC 4616), SASL-IR.
            sasl = f"\x00{s.login}\x00{s.password}".encode()
            argument = f"AUTHENTICATE PLAIN {base64.b64encode(sasl).decode()}"
        status, _lines, text = await self.command(argument, check=False, secret=True)
        if status == b"OK":
            return
        if any(code in text for code in _TEMPORARY_CODES):
            raise TemporaryFailure(f"IMAP login: server busy: {text[:200]!r}")
        raise AuthenticationFailed(f"IMAP login refused for {s.login!r}")

    async def _capability(self) -> frozenset[str]:
        _status, lines, _text = await self.command("CAPABILITY")
        caps: set[str] = set()
        for line in lines:
            if line.upper().startswith(b"* CAPABILITY "):
                caps.update(line[13:].decode(errors="replace").upper().split())
        return frozenset(caps)

    # --- the wire ------------------------------------------------------------------------
    async def _line(self) -> bytes:
        """One response, literals included ("{n}\\r\\n" then n bytes, RFC 3501 4.3)."""
        try:
            line = await self.reader.readuntil(b"\r\n")
            while m := _LITERAL.search(line):
                literal = await self.reader.readexactly(int(m[1]))
                line = line[: m.start()] + _quote(literal.decode(errors="replace")).encode()
                line += await self.reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            raise TemporaryFailure("IMAP: connection closed by the server") from exc
        except asyncio.LimitOverrunError as exc:
            raise TemporaryFailure("IMAP: response line too long") from exc
        except ssl.SSLError as exc:
            raise TemporaryFailure(f"IMAP: TLS failed: {exc}") from exc
        except OSError as exc:
            raise TemporaryFailure(f"IMAP: {exc.strerror or exc}") from exc
        if line.startswith(b"* BYE"):
            raise TemporaryFailure(f"IMAP: server said {line[:200].decode(errors='replace')!r}")
        return line

    async def _send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, RuntimeError) as exc:
            raise TemporaryFailure(f"IMAP: cannot send: {exc}") from exc

    async def command(
        self, text: str, *, check: bool = True, secret: bool = False
    ) -> tuple[bytes, list[bytes], bytes]:
        """Send one command, return (status, untagged lines, tagged line)."""
        self._tag += 1
        tag = f"R{self._tag}".encode()
        await self._send(tag + b" " + text.encode() + b"\r\n")
        lines: list[bytes] = []
        while True:
            line = await self._line()
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1 :].split(b" ", 1)[0].upper()
                if check and status != b"OK":
                    verb = "AUTHENTICATE" if secret else text.split(" ", 1)[0]
                    raise PermanentFailure(f"IMAP {verb}: {line[:200].decode(errors='replace')}")
                return status, lines, line
            if line.startswith(b"+") and secret:
                # A server that wants the SASL response as a continuation: cancel (RFC 4959).
                await self._send(b"*\r\n")
                continue
            lines.append(line)

    def abort(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass

    async def logout(self) -> None:
        try:
            async with asyncio.timeout(5):
                await self.command("LOGOUT", check=False)
        except (TemporaryFailure, PermanentFailure, TimeoutError):
            pass
        finally:
            self.abort()

    # --- watching ------------------------------------------------------------------------
    async def status(self, folder: str) -> FolderMark:
        items = "MESSAGES UIDNEXT" + (" HIGHESTMODSEQ" if "CONDSTORE" in self.capabilities else "")
        _s, lines, _t = await self.command(f"STATUS {encode_folder(folder).decode()} ({items})")
        for line in lines:
            if line.upper().startswith(b"* STATUS "):
                return _parse_status(line)[1]
        raise PermanentFailure(f"STATUS {folder}: no answer")

    async def watch(
        self,
        folders: Sequence[str],
        *,
        on_change: Callable[[list[str]], None],
        timing: Timing,
        idle_folder: str = "INBOX",
        on_live: Callable[[str], None] | None = None,
    ) -> None:
        """Wait for news until the connection fails (raises) or ``timing.deadline`` passes
        (returns). NOTIFY where offered: one connection for every folder; otherwise IDLE on
        ``idle_folder`` and a STATUS sweep of the others every ``timing.sweep`` seconds."""
        folders = list(dict.fromkeys(folders))
        names = {_wire_name(f): f for f in folders}
        self.mode = "idle"
        others: list[str] = []
        if "NOTIFY" in self.capabilities and folders:
            boxes = " ".join(encode_folder(f).decode() for f in folders)
            events = "MessageNew MessageExpunge" + (
                " FlagChange" if "CONDSTORE" in self.capabilities else ""
            )
            # RFC 5465 5.1: one event group, "(mailboxes (<names>) (<events>))". A server that
            # announces NOTIFY but refuses this is watched with IDLE instead.
            status, _lines, _tagged = await self.command(
                f"NOTIFY SET (mailboxes ({boxes}) ({events}))", check=False
            )
            if status == b"OK":
                self.mode = "notify"
        if self.mode == "idle":
            await self.command(f"EXAMINE {encode_folder(idle_folder).decode()}")
            others = [f for f in folders if f != idle_folder]
            for folder in others:
                self.marks[folder] = await self.status(folder)
        if on_live is not None:
            on_live(self.mode)
        next_sweep = time.monotonic() + timing.sweep
        while True:
            now = time.monotonic()
            if timing.deadline is not None and now >= timing.deadline:
                return
            until = now + timing.reidle
            if others:
                until = min(until, next_sweep)
            if timing.deadline is not None:
                until = min(until, timing.deadline)
            await self._idle_until(until, timing, names, idle_folder, on_change)
            if others and time.monotonic() >= next_sweep:
                changed = []
                for folder in others:
                    mark = await self.status(folder)
                    if mark != self.marks.get(folder):
                        changed.append(folder)
                    self.marks[folder] = mark
                if changed:
                    on_change(changed)
                next_sweep = time.monotonic() + timing.sweep

    async def _idle_until(self, until, timing: Timing, names, idle_folder, on_change) -> None:
        """One IDLE ... DONE. Silence longer than half the watchdog is answered by a probe
        (DONE, which the server must answer): no answer within the other half, it is dead."""
        self._tag += 1
        tag = f"R{self._tag}".encode()
        await self._send(tag + b" IDLE\r\n")
        async with asyncio.timeout(timing.command):
            while not (line := await self._line()).startswith(b"+"):
                if line.startswith(tag + b" "):
                    raise PermanentFailure(f"IMAP IDLE refused: {line[:200]!r}")
                self._event(line, names, idle_folder, on_change)
        half = max(timing.watchdog / 2, 0.05)
        while True:
            wait = min(until - time.monotonic(), half)
            if wait <= 0:
                break
            try:
                async with asyncio.timeout(wait):
                    line = await self._line()
            except TimeoutError:
                if time.monotonic() >= until:
                    break
                # Half the watchdog without a byte: probe with DONE (and IDLE again after).
                break
            self._event(line, names, idle_folder, on_change)
        await self._send(b"DONE\r\n")
        try:
            async with asyncio.timeout(half):
                while not (line := await self._line()).startswith(tag + b" "):
                    self._event(line, names, idle_folder, on_change)
        except TimeoutError as exc:
            raise TemporaryFailure("IMAP: the server went silent (watchdog)") from exc
        if not line[len(tag) + 1 :].upper().startswith(b"OK"):
            raise TemporaryFailure(f"IMAP IDLE ended badly: {line[:200]!r}")

    def _event(self, line: bytes, names, idle_folder, on_change) -> None:
        if self.mode == "notify" and line.upper().startswith(b"* STATUS "):
            wire, _mark = _parse_status(line)
            folder = names.get(wire) or utf7_decode(wire)
            on_change([folder])
        elif _EVENT.match(line):
            on_change([idle_folder])


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wire_name(folder: str) -> bytes:
    """A folder's name as the server sends it back, unquoted."""
    return _unquote(encode_folder(folder))


def _unquote(value: bytes) -> bytes:
    value = value.strip()
    if value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2:
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


def _parse_status(line: bytes) -> tuple[bytes, FolderMark]:
    """'* STATUS <name> (MESSAGES 3 UIDNEXT 4 ...)': the name may hold anything but the list
    comes last."""
    body = line[9:].rstrip(b"\r\n")
    name, _, attributes = body.rpartition(b"(")
    values = {k.upper(): int(v) for k, v in re.findall(rb"([A-Za-z]+) (\d+)", attributes)}
    return _unquote(name), FolderMark(
        messages=values.get(b"MESSAGES", 0),
        uidnext=values.get(b"UIDNEXT"),
        highestmodseq=values.get(b"HIGHESTMODSEQ"),
    )
