"""A small threaded TCP proxy that sits between a client and a real server and misbehaves on
request: cut the connection after N bytes from the server, stall (accept, then say nothing),
slice the server's stream into tiny chunks, drop one untagged FETCH response, leave a folder out
of LIST answers, or strip STARTTLS from the capabilities (docs/reliability.md S-11, S-12, S-13,
S-31, C-05).

A behaviour applies to the connections accepted after it is set, each counted from its own
first byte; ``connections`` counts every connection accepted and ``from_clients`` holds every
byte the clients sent (what a server at this address would learn).

    with FaultProxy("127.0.0.1", dovecot.port) as proxy:
        proxy.cut_after(5000)
        ... connect the client to proxy.host, proxy.port ...
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace

# One IMAP response may carry literals: "{123}\r\n" then exactly 123 bytes, then the rest of
# the response (RFC 3501 4.3; "{123+}" is the LITERAL+ form of RFC 7888).
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_UNTAGGED_FETCH = re.compile(rb"^\* \d+ FETCH ")
_FETCH_UID = re.compile(rb"UID (\d+)")
_UNTAGGED_LIST = re.compile(rb'^\* LIST \([^)]*\) (?:"(?:\\.|[^"\\])*"|NIL) (.+)\r\n$')


@dataclass(frozen=True)
class Behaviour:
    cut_after: int | None = None  # bytes from the server, then the connection is cut
    reset: bool = False  # cut with a TCP reset rather than a clean close
    stall: bool = False  # accept, then send nothing and read nothing
    chunk: int | None = None  # forward the server's bytes in pieces of this size
    chunk_delay: float = 0.0
    drop_fetch_uid: int | None = None  # drop the untagged FETCH for this UID ...
    drop_fetch_any: bool = False  # ... or the first untagged FETCH carrying a literal
    omit_list: bytes | None = None  # leave this folder (its name on the wire) out of LIST
    strip_starttls: bool = False
    inject_after: tuple[bytes, bytes] | None = None  # (marker, bytes sent right after it)
    # After this marker from the server, forward nothing more from it, but keep the connection
    # open: a server (or a middlebox) gone silent (docs/reliability.md P-13).
    mute_after: bytes | None = None


class FaultProxy:
    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.behaviour = Behaviour()
        self.connections = 0
        self.dropped_fetches = 0
        self.omitted_lists = 0
        self.cuts = 0
        self.injections = 0
        # Every byte the clients sent, in arrival order: what a server at this address would
        # have been told (a password, for instance: docs/reliability.md C-21).
        self.from_clients = bytearray()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = 0

    # --- behaviours ----------------------------------------------------------------------
    def normal(self) -> None:
        self.behaviour = Behaviour()

    def cut_after(self, n_bytes: int, *, reset: bool = False) -> None:
        self.behaviour = replace(self.behaviour, cut_after=n_bytes, reset=reset)

    def stall(self) -> None:
        self.behaviour = replace(self.behaviour, stall=True)

    def slice(self, chunk: int = 1, delay: float = 0.0) -> None:
        self.behaviour = replace(self.behaviour, chunk=chunk, chunk_delay=delay)

    def drop_fetch(self, uid: int | None = None) -> None:
        """Drop one untagged FETCH response carrying a body: the one for ``uid``, or the
        first."""
        self.behaviour = replace(self.behaviour, drop_fetch_uid=uid, drop_fetch_any=uid is None)

    def omit_from_list(self, folder: str) -> None:
        """Leave ``folder`` (an ASCII name) out of every LIST answer: a server that lists its
        folders wrongly now and then (docs/reliability.md S-31)."""
        self.behaviour = replace(self.behaviour, omit_list=folder.encode("ascii"))

    def strip_starttls(self) -> None:
        self.behaviour = replace(self.behaviour, strip_starttls=True)

    def inject_after(self, marker: bytes, payload: bytes) -> None:
        """Send ``payload`` right after the first ``marker`` from the server, in the same
        segment: e.g. extra responses after the STARTTLS OK, the "STARTTLS command injection"
        of docs/reliability.md C-05."""
        self.behaviour = replace(self.behaviour, inject_after=(marker, payload))

    def mute_after(self, marker: bytes) -> None:
        self.behaviour = replace(self.behaviour, mute_after=marker)

    def cut_all(self) -> None:
        """Cut every live connection now."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        self.cut_all()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._track(client)
            with self._lock:
                self.connections += 1
            behaviour = self.behaviour
            if behaviour.stall:
                continue  # held open, never answered, until the client gives up or we stop
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(upstream)
            self._spawn(self._pump_up, client, upstream)
            self._spawn(self._pump_down, upstream, client, behaviour)

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server: passed through untouched."""
        try:
            while data := client.recv(65536):
                with self._lock:
                    self.from_clients += data
                upstream.sendall(data)
        except OSError:
            pass
        _close(upstream)
        _close(client)

    def _pump_down(self, upstream: socket.socket, client: socket.socket, b: Behaviour) -> None:
        """Server to client: where the faults happen."""
        sent = 0
        framer = _ResponseFramer() if (b.drop_fetch_uid or b.drop_fetch_any) else None
        lister = _ResponseFramer() if b.omit_list else None
        dropped = False
        tls_started = False
        injected = False
        muted = False
        try:
            while data := upstream.recv(65536):
                if muted:
                    continue
                if b.mute_after and b.mute_after in data:
                    data = data[: data.index(b.mute_after) + len(b.mute_after)]
                    muted = True
                if b.strip_starttls and not tls_started:
                    # Only the clear-text phase can be rewritten; once the client sends
                    # STARTTLS the rest is ciphertext. Rewriting capabilities is exactly the
                    # downgrade attack of docs/reliability.md C-05.
                    if data[:1] in (b"\x16", b"\x17"):
                        tls_started = True
                    else:
                        data = data.replace(b" STARTTLS", b"")
                if b.inject_after and not injected and b.inject_after[0] in data:
                    marker, payload = b.inject_after
                    data = data.replace(marker, marker + payload, 1)
                    injected = True
                    with self._lock:
                        self.injections += 1
                if lister is not None:
                    out = b""
                    for response in lister.feed(data):
                        if _lists_folder(response, b.omit_list):
                            with self._lock:
                                self.omitted_lists += 1
                            continue
                        out += response
                    data = out
                if framer is not None and not dropped:
                    out = b""
                    for response in framer.feed(data):
                        if not dropped and self._should_drop(response, b):
                            dropped = True
                            with self._lock:
                                self.dropped_fetches += 1
                            continue
                        out += response
                    if dropped:
                        out += framer.flush()
                    data = out
                if b.cut_after is not None and sent + len(data) >= b.cut_after:
                    data = data[: max(b.cut_after - sent, 0)]
                    self._send(client, data, b)
                    with self._lock:
                        self.cuts += 1
                    if b.reset:
                        # SHUT_RD wakes our other pump without sending a FIN; a zero linger
                        # then makes close() send a TCP reset (connection reset by peer).
                        client.shutdown(socket.SHUT_RD)
                        client.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        client.close()
                    break
                self._send(client, data, b)
                sent += len(data)
        except OSError:
            pass
        _close(client)
        _close(upstream)

    @staticmethod
    def _should_drop(response: bytes, b: Behaviour) -> bool:
        if not _UNTAGGED_FETCH.match(response):
            return False
        if b"}\r\n" not in response:  # no body: flags or sizes, not a message's FETCH
            return False
        if b.drop_fetch_uid is not None:
            match = _FETCH_UID.search(response.split(b"\r\n", 1)[0])
            return bool(match) and int(match[1]) == b.drop_fetch_uid
        return True

    @staticmethod
    def _send(client: socket.socket, data: bytes, b: Behaviour) -> None:
        if not b.chunk:
            client.sendall(data)
            return
        for start in range(0, len(data), b.chunk):
            client.sendall(data[start : start + b.chunk])
            if b.chunk_delay:
                time.sleep(b.chunk_delay)


class _ResponseFramer:
    """Splits the server's byte stream into whole IMAP responses, literals included."""

    def __init__(self):
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        responses = []
        while True:
            end = self._response_end(self.buffer)
            if end is None:
                return responses
            responses.append(self.buffer[:end])
            self.buffer = self.buffer[end:]

    def flush(self) -> bytes:
        data, self.buffer = self.buffer, b""
        return data

    @staticmethod
    def _response_end(buf: bytes) -> int | None:
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            line_end = eol + 2
            literal = _LITERAL_AT_END.search(buf, pos, line_end)
            if literal is None or literal.end() != line_end:
                return line_end
            pos = line_end + int(literal[1])
            if pos > len(buf):
                return None


def _lists_folder(response: bytes, name: bytes) -> bool:
    """Is this the untagged LIST line of folder ``name`` (quoted or not)?"""
    match = _UNTAGGED_LIST.match(response)
    return bool(match) and match[1] in (name, b'"' + name + b'"')


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
