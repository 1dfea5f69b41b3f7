"""Reading a message's stored raw source (`Message.raw_file`, `LedgerEntry.raw_file`,
`OutboxEntry.raw_file`). connector/ingest/storage.py writes it; views read it here, so both layers
share one format and inbox never imports connector.

A raw source is stored gzipped, in one of two forms:

- a file of its own: ``raw/<mailbox>/<xx>/<sha256>.eml.gz`` (a sent message, an older row);
- a member of a pack: ``raw/<mailbox>/<xx>/<sha256>.pack.gz#<offset>,<length>``. A sync writes
  the raw sources of a batch as one file, their gzip members back to back (creating a file
  costs more than compressing a message: bench/sync.py), and each message points at its own
  member. A pack is an ordinary multi-member gzip file, so `zcat` on it prints every message
  it holds. Its name is the hash of its bytes: it is written once, whole, before any row
  points at it, and never changed afterwards.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator

from django.core.files.storage import default_storage

_MEMBER = re.compile(r"^(?P<file>.+)#(?P<offset>\d+),(?P<length>\d+)$")


class RawSourceMissing(Exception):
    """The file (or the pack member) a row points at is not there, or is cut short."""


def member_name(file: str, offset: int, length: int) -> str:
    return f"{file}#{offset},{length}"


def split(name: str) -> tuple[str, int, int | None]:
    """(storage file, offset, length); length None means the whole file."""
    match = _MEMBER.match(name)
    if match is None:
        return name, 0, None
    return match["file"], int(match["offset"]), int(match["length"])


def read_compressed(name: str) -> bytes:
    """The gzip bytes of this one message."""
    file, offset, length = split(name)
    try:
        with default_storage.open(file, "rb") as fh:
            if length is None:
                return fh.read()
            fh.seek(offset)
            data = fh.read(length)
    except FileNotFoundError as exc:
        raise RawSourceMissing(f"raw source {name!r} is missing") from exc
    if len(data) != length:
        raise RawSourceMissing(f"raw source {name!r} is cut short ({len(data)} of {length})")
    return data


def exists(name: str) -> bool:
    if not name:
        return False
    file, offset, length = split(name)
    if not default_storage.exists(file):
        return False
    return length is None or default_storage.size(file) >= offset + length


def read(name: str) -> bytes:
    """The message's bytes, as received."""
    try:
        return gzip.decompress(read_compressed(name))
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, RawSourceMissing):
            raise
        raise RawSourceMissing(f"raw source {name!r} is damaged: {exc}") from exc


def iter_chunks(name: str, size: int) -> Iterator[bytes]:
    """The message's bytes in chunks of `size`, decompressed as they are read (a download)."""
    file, _offset, length = split(name)
    if length is None:
        with default_storage.open(file, "rb") as raw, gzip.GzipFile(fileobj=raw) as unzipped:
            while chunk := unzipped.read(size):
                yield chunk
        return
    # A member is one message's compressed bytes: read them, decompress as they go out.
    with gzip.GzipFile(fileobj=io.BytesIO(read_compressed(name))) as unzipped:
        while chunk := unzipped.read(size):
            yield chunk
