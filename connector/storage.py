"""Where raw messages and attachment bytes live: Django's default storage, under generated,
content-addressed names (never the sender's file name: RELIABILITY A-01), outside any served
directory. Writes happen before the database commit; a rolled-back batch leaves at worst an
orphan file that the next attempt overwrites with the same bytes (same hash, same name), never
a row that points at a missing file (I-05)."""

from __future__ import annotations

import gzip
import hashlib
import os

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage

# Level 1: raw mail is text and compresses to about the same size at level 1 as at 5, at a
# fraction of the CPU; the initial sync compresses every message it stores (bench/sync.py).
RAW_COMPRESSLEVEL = 1

# Directories this process has made already: a file create costs a syscall or two, a
# makedirs() per file costs several more (about a fifth of the sync's file time).
_made_dirs: set[str] = set()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_path(*, mailbox_id: int, digest: str) -> str:
    return f"raw/{mailbox_id}/{digest[:2]}/{digest}.eml.gz"


def blob_path(digest: str) -> str:
    return f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"


def _write(path: str, data: bytes) -> str:
    if isinstance(default_storage, FileSystemStorage):  # the lazy proxy passes isinstance
        _write_file(default_storage.path(path), data)
        return path
    if default_storage.exists(path):
        return path
    saved = default_storage.save(path, ContentFile(data))
    if saved != path:  # a concurrent writer won the race: same content, keep one file
        default_storage.delete(saved)
    return path


def _write_file(full: str, data: bytes) -> None:
    """Create the file once. The name is the content's hash, so a file already there with the
    right size holds these bytes; one with another size is what a killed writer left half
    written (or a writer still at work): it is replaced whole, atomically, by a rename."""
    directory = os.path.dirname(full)
    if directory not in _made_dirs:
        os.makedirs(directory, exist_ok=True)
        _made_dirs.add(directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            fd = os.open(full, flags, 0o644)
        except FileNotFoundError:  # the directory went away since we made it (a cleanup)
            os.makedirs(directory, exist_ok=True)
            fd = os.open(full, flags, 0o644)
    except FileExistsError:
        if os.stat(full).st_size == len(data):
            return
        tmp = f"{full}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, full)
        return
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def save_raw(*, mailbox_id: int, digest: str, raw: bytes) -> str:
    # mtime=0 keeps the compressed bytes deterministic for the same input, so the size check
    # in _write_file recognises a complete earlier copy.
    return _write(
        raw_path(mailbox_id=mailbox_id, digest=digest),
        gzip.compress(raw, compresslevel=RAW_COMPRESSLEVEL, mtime=0),
    )


def read_raw(path: str) -> bytes:
    with default_storage.open(path, "rb") as fh:
        return gzip.decompress(fh.read())


def save_blob(data: bytes) -> tuple[str, str]:
    digest = sha256(data)
    return digest, _write(blob_path(digest), data)


def open_blob(path: str):
    return default_storage.open(path, "rb")
