"""How the image proxy reaches the network without ``inbox`` importing ``connector``.

Only ``connector`` opens sockets (ARCHITECTURE "Data flows one way"; import-linter layers
connector > inbox > crm). The proxy view lives in ``inbox`` (it needs the permission gate),
so the fetch is a hook: ``connector.image_proxy`` registers its fetcher from the connector
app's ``ready()``, and the view calls ``fetch_remote_image``. Without a registered fetcher
(connector not installed) remote images simply stay blocked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Limits the fetcher must honour (RELIABILITY X-11: image/* only, size cap; camo's defaults).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 8.0


@dataclass(frozen=True)
class RemoteImage:
    content: bytes
    declared_type: str  # the remote server's Content-Type, for logs only: we sniff the bytes


class RemoteImageUnavailable(Exception):
    """Refused host, not an image, too big, too slow, or any network failure."""


Fetcher = Callable[[str], RemoteImage]
_fetcher: Fetcher | None = None


def register_fetcher(fetcher: Fetcher | None) -> None:
    global _fetcher
    _fetcher = fetcher


def fetch_remote_image(url: str) -> RemoteImage:
    if _fetcher is None:
        raise RemoteImageUnavailable("no image fetcher registered")
    return _fetcher(url)
