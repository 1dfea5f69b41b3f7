"""Where raw messages and attachment bytes live: Django's default storage, under generated,
content-addressed names (never the sender's file name: RELIABILITY A-01), outside any served
directory. Writes happen before the database commit; a rolled-back batch leaves at worst an
orphan file that the next attempt overwrites with the same bytes (same hash, same name), never
a row that points at a missing file (I-05)."""

from __future__ import annotations

import gzip
import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_path(*, mailbox_id: int, digest: str) -> str:
    return f"raw/{mailbox_id}/{digest[:2]}/{digest}.eml.gz"


def blob_path(digest: str) -> str:
    return f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"


def _write(path: str, data: bytes) -> str:
    if default_storage.exists(path):
        return path
    saved = default_storage.save(path, ContentFile(data))
    if saved != path:  # a concurrent writer won the race: same content, keep one file
        default_storage.delete(saved)
    return path


def save_raw(*, mailbox_id: int, digest: str, raw: bytes) -> str:
    # mtime=0 keeps the compressed bytes deterministic for the same input.
    return _write(
        raw_path(mailbox_id=mailbox_id, digest=digest), gzip.compress(raw, compresslevel=5, mtime=0)
    )


def read_raw(path: str) -> bytes:
    with default_storage.open(path, "rb") as fh:
        return gzip.decompress(fh.read())


def save_blob(data: bytes) -> tuple[str, str]:
    digest = sha256(data)
    return digest, _write(blob_path(digest), data)


def open_blob(path: str):
    return default_storage.open(path, "rb")
