"""The network half of the image proxy (docs/reliability.md X-11): fetch one remote image for a
reader who asked for it, so that the sender's server sees the CRM, never the reader.

- http and https only; the host goes through the same SSRF guard as mail connections
  (``net.resolve_allowed``: every resolved address vetted, the connection made to the vetted
  address, not to the name again; docs/reliability.md C-07);
- no cookies, no Referer, no credentials in the URL forwarded; a fixed User-Agent;
- at most ``MAX_IMAGE_BYTES`` read, a timeout on every socket operation, at most
  ``MAX_REDIRECTS`` redirects, each target vetted again (a redirect to 169.254.169.254 is
  refused like a direct link would be);
- the caller (inbox/views/reading.py) serves the bytes only if they are a raster image by
  their magic bytes.

inbox reaches it through inbox/ports.py (connector/port.py).
"""

from __future__ import annotations

import http.client
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
USER_AGENT = "RelayCRM-ImageProxy/1.0"


class _VettedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address already vetted by ``net.resolve_allowed``, never re-resolving
    the name (DNS rebinding)."""

    def __init__(self, host, port, addresses, timeout):
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self):
        self.sock = net.connect(self._addresses, self.port, self.timeout)


class _VettedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, addresses, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addresses = addresses

    def connect(self):
        sock = net.connect(self._addresses, self.port, self.timeout)
        # The certificate is verified against the name in the URL (server_hostname).
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _fetch_once(url: str) -> tuple[int, str, str, bytes]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise RemoteImageUnavailable("only http and https images are fetched")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise RemoteImageUnavailable("bad port") from exc
    host = parts.hostname
    try:
        addresses = net.resolve_allowed(host, port)
    except MailError as exc:
        raise RemoteImageUnavailable(str(exc)) from exc
    connection_class = _VettedHTTPSConnection if scheme == "https" else _VettedHTTPConnection
    connection = connection_class(host, port, addresses, FETCH_TIMEOUT_SECONDS)
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
    """Read at most MAX_IMAGE_BYTES within one overall deadline: the socket timeout alone
    would let a server that drips a byte every few seconds hold a web worker for ever."""
    deadline = time.monotonic() + TOTAL_SECONDS
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(64 * 1024):
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise RemoteImageUnavailable("image too large")
        if time.monotonic() > deadline:
            raise RemoteImageUnavailable("image too slow")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_image(url: str) -> RemoteImage:
    for _ in range(MAX_REDIRECTS + 1):
        status, location, content_type, body = _fetch_once(url)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise RemoteImageUnavailable(f"remote answered {status}")
        if not content_type.lower().startswith("image/"):
            raise RemoteImageUnavailable("not an image")
        return RemoteImage(content=body, declared_type=content_type)
    raise RemoteImageUnavailable("too many redirects")
