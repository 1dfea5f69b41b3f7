"""Where raw messages and attachment bytes live: Django's default storage, under generated,
content-addressed names (never the sender's file name: docs/reliability.md A-01), outside any served
directory. Writes happen before the database commit; a rolled-back batch leaves at worst an
orphan file that the next attempt overwrites with the same bytes (same hash, same name), never
a row that points at a missing file (I-05)."""

from __future__ import annotations

import hashlib
import os

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage

from crm.datadir import make_dirs
from inbox import rawsource

try:
    # Intel's ISA-L deflate: standard gzip, read back by any gzip reader, at a sixth of zlib's
    # CPU for a slightly smaller result at level 1 (bench/sync.py: 0.04 against 0.28 ms a
    # message, 66% of the raw size against 67%). zlib where no wheel exists.
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - every platform we ship to has a wheel
    import gzip as _gzip

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


def pack_path(*, mailbox_id: int, digest: str) -> str:
    return f"raw/{mailbox_id}/{digest[:2]}/{digest}.pack.gz"


def compress(raw: bytes) -> bytes:
    # mtime=0 keeps the compressed bytes deterministic for the same input, so the size check
    # in _write_file recognises a complete earlier copy.
    return _gzip.compress(raw, compresslevel=RAW_COMPRESSLEVEL, mtime=0)


def blob_path(digest: str) -> str:
    return f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"


def _write(path: str, data: bytes | list[bytes]) -> str:
    """Write `data` (bytes, or a list of them written back to back) under `path`."""
    if isinstance(default_storage, FileSystemStorage):  # the lazy proxy passes isinstance
        _write_file(default_storage.path(path), data if isinstance(data, list) else [data])
        return path
    if default_storage.exists(path):
        return path
    if isinstance(data, list):
        data = b"".join(data)
    saved = default_storage.save(path, ContentFile(data))
    if saved != path:  # a concurrent writer won the race: same content, keep one file
        default_storage.delete(saved)
    return path


def _write_all(fd: int, parts: list[bytes]) -> None:
    """All of `parts`, back to back: writev, so a pack's members need no joining first."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        if written <= 0:  # a regular file takes something or raises (ENOSPC...)
            raise OSError(f"writev wrote nothing of {sum(map(len, views))} bytes")
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


_IOV_MAX = 512  # buffers per writev (Linux allows 1024)


def _write_file(full: str, parts: list[bytes]) -> None:
    """Create the file once, holding `parts` back to back. The name is the content's hash, so a
    file already there with the right size holds these bytes; one with another size is what a
    killed writer left half written (or a writer still at work): it is replaced whole,
    atomically, by a rename."""
    directory = os.path.dirname(full)
    if directory not in _made_dirs:
        # Owner only, files and folders (docs/reliability.md C-29).
        make_dirs(directory)
        _made_dirs.add(directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            fd = os.open(full, flags, 0o600)
        except FileNotFoundError:  # the directory went away since we made it (a cleanup)
            make_dirs(directory)
            fd = os.open(full, flags, 0o600)
    except FileExistsError:
        if os.stat(full).st_size == sum(map(len, parts)):
            return
        tmp = f"{full}.{os.getpid()}.tmp"
        tmp_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        fd = os.open(tmp, tmp_flags, 0o600)
        try:
            _write_all(fd, parts)
        finally:
            os.close(fd)
        os.replace(tmp, full)
        return
    try:
        _write_all(fd, parts)
    finally:
        os.close(fd)


def save_raw(*, mailbox_id: int, digest: str, raw: bytes) -> str:
    return _write(raw_path(mailbox_id=mailbox_id, digest=digest), compress(raw))


def save_raws(*, mailbox_id: int, raws: list[tuple[str, bytes]]) -> list[str]:
    """Store several raw sources ((sha256, bytes) each) and return their names, in order.

    One message is a file of its own; several are one pack (inbox/rawsource.py): their gzip
    members back to back in a single file named by the hash of its bytes, so that a batch
    costs one file create instead of one a message. Written whole before any row points at
    it; a retry of the same batch writes the same bytes under the same name."""
    if len(raws) == 1:
        digest, raw = raws[0]
        return [save_raw(mailbox_id=mailbox_id, digest=digest, raw=raw)]
    members = [compress(raw) for _digest, raw in raws]
    digest = hashlib.sha256()  # of the pack's bytes, without joining them first
    for member in members:
        digest.update(member)
    path = _write(pack_path(mailbox_id=mailbox_id, digest=digest.hexdigest()), members)
    names, offset = [], 0
    for member in members:
        names.append(rawsource.member_name(path, offset, len(member)))
        offset += len(member)
    return names


def read_raw(name: str) -> bytes:
    """The bytes of a stored raw source (a file of its own or a pack member)."""
    return rawsource.read(name)


def save_blob(data: bytes) -> tuple[str, str]:
    digest = sha256(data)
    return digest, _write(blob_path(digest), data)


def open_blob(path: str):
    return default_storage.open(path, "rb")
