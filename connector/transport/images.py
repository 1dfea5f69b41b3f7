"""The network half of the image proxy (docs/reliability.md X-11): fetch one remote image for a
reader who asked for it, so that the sender's server sees the CRM, never the reader.

- http and https only, on ports 80 and 443 only; the host goes through the SSRF guard
  (``net.resolve_allowed``: every resolved address vetted, the connection made to the vetted
  address, not to the name again; docs/reliability.md C-07) WITHOUT the mail allow-list: a
  LAN server an admin allowed for mail is still refused for images, which any sender can
  name (docs/reliability.md C-27);
- no cookies, no Referer, no credentials in the URL forwarded; a fixed User-Agent;
- at most ``MAX_IMAGE_BYTES`` read and at most ``MAX_REDIRECTS`` redirects, each target vetted
  again (a redirect to 169.254.169.254 is refused like a direct link would be);
- one wall-clock deadline, ``TOTAL_SECONDS``, for the whole fetch: connecting, the TLS
  handshake, the status line and headers, the body and every redirect. Each socket wait is
  bounded by what is left of it, so a server that trickles its headers a byte at a time
  cannot hold a web worker past it (docs/reliability.md C-28);
- the caller (inbox/views/reading.py) serves the bytes only if they are a raster image by
  their magic bytes.

inbox reaches it through inbox/ports.py (connector/port.py).
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from connector.transport import net
from inbox.ports import (
    FETCH_TIMEOUT_SECONDS,
    MAX_IMAGE_BYTES,
    RemoteImage,
    RemoteImageUnavailable,
)

from .errors import MailError

MAX_REDIRECTS = 3
TOTAL_SECONDS = 2 * FETCH_TIMEOUT_SECONDS
IMAGE_PORTS = (80, 443)
USER_AGENT = "RelayCRM-ImageProxy/1.0"


class _Deadline:
    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds the next socket wait may take; raises once the deadline has passed."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise RemoteImageUnavailable("image too slow")
        return min(left, FETCH_TIMEOUT_SECONDS)


class _DeadlineSocketIO(socket.SocketIO):
    """The response's reader: before every read the socket's timeout becomes what is left of
    the deadline, so a byte every few seconds cannot stretch the fetch."""

    def __init__(self, sock, deadline: _Deadline):
        super().__init__(sock, "rb")
        self._deadline = deadline

    def readinto(self, buffer):
        self._sock.settimeout(self._deadline.left())
        return super().readinto(buffer)


class _DeadlineSocket:
    """What http.client.HTTPResponse is given instead of the socket: it only asks for
    ``makefile("rb")``."""

    def __init__(self, sock, deadline: _Deadline):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode):
        # As socket.makefile() does: the reader holds a reference, so the connection closing
        # its end (Connection: close) leaves the socket open until the body has been read.
        self._sock._io_refs += 1
        return io.BufferedReader(_DeadlineSocketIO(self._sock, self._deadline))


class _VettedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address already vetted by ``net.resolve_allowed``, never re-resolving
    the name (DNS rebinding), within the fetch's deadline."""

    def __init__(self, host, port, addresses, deadline: _Deadline, **kwargs):
        super().__init__(host, port, timeout=FETCH_TIMEOUT_SECONDS, **kwargs)
        self._addresses = addresses
        self._deadline = deadline
        self.response_class = lambda sock, *args, **kw: http.client.HTTPResponse(
            _DeadlineSocket(sock, deadline), *args, **kw
        )

    def _open(self):
        last: Exception | None = None
        for address in self._addresses:
            try:
                sock = net.connect([address], self.port, self._deadline.left())
            except MailError as exc:
                last = exc
                continue
            sock.settimeout(self._deadline.left())
            return sock
        raise RemoteImageUnavailable(f"fetch failed: {last}")

    def connect(self):
        self.sock = self._open()


class _VettedHTTPSConnection(_VettedHTTPConnection):
    default_port = 443

    def __init__(self, host, port, addresses, deadline: _Deadline):
        super().__init__(host, port, addresses, deadline)
        self._context = ssl.create_default_context()

    def connect(self):
        sock = self._open()
        # The certificate is verified against the name in the URL (server_hostname). The
        # handshake's socket waits are bounded by the deadline, like every other read.
        sock = self._context.wrap_socket(
            sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        sock.settimeout(self._deadline.left())
        sock.do_handshake()
        sock.settimeout(self._deadline.left())
        self.sock = sock


def _vet(url: str) -> tuple[str, str, int, list[str]]:
    """The image proxy's own guard: scheme, port and host, never the mail allow-list."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise RemoteImageUnavailable("only http and https images are fetched")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise RemoteImageUnavailable("bad port") from exc
    if port not in IMAGE_PORTS:
        # Images are on web servers; any other port is someone's admin console or database.
        raise RemoteImageUnavailable(f"port {port} is not fetched for images")
    try:
        addresses = net.resolve_allowed(parts.hostname, port, mail_allow_list=False)
    except MailError as exc:
        raise RemoteImageUnavailable(str(exc)) from exc
    return scheme, parts.hostname, port, addresses


def _fetch_once(url: str, deadline: _Deadline) -> tuple[int, str, str, bytes]:
    scheme, host, port, addresses = _vet(url)
    parts = urlsplit(url)
    connection_class = _VettedHTTPSConnection if scheme == "https" else _VettedHTTPConnection
    connection = connection_class(host, port, addresses, deadline)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        # Only these headers: no Cookie, no Referer, no Authorization (user:pass@ in the URL
        # is dropped with the netloc), nothing that identifies the reader.
        connection.request(
            "GET",
            target,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"},
        )
        response = connection.getresponse()
        location = response.getheader("Location", "")
        content_type = response.getheader("Content-Type", "")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
            raise RemoteImageUnavailable("image too large")
        body = _read_capped(response) if response.status == 200 else b""
        return response.status, location, content_type, body
    except (OSError, http.client.HTTPException, MailError) as exc:
        raise RemoteImageUnavailable(f"fetch failed: {exc}") from exc
    finally:
        connection.close()


def _read_capped(response) -> bytes:
    """Read at most MAX_IMAGE_BYTES (the deadline is enforced by every read underneath)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(64 * 1024):
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise RemoteImageUnavailable("image too large")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_image(url: str) -> RemoteImage:
    deadline = _Deadline(TOTAL_SECONDS)
    for _ in range(MAX_REDIRECTS + 1):
        status, location, content_type, body = _fetch_once(url, deadline)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise RemoteImageUnavailable(f"remote answered {status}")
        if not content_type.lower().startswith("image/"):
            raise RemoteImageUnavailable("not an image")
        return RemoteImage(content=body, declared_type=content_type)
    raise RemoteImageUnavailable("too many redirects")
