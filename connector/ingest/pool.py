"""The parse pool: forked processes that prepare batches (connector/ingest/prepare.py) on every core
while the worker talks to PostgreSQL.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from connector.ingest.mime import parse_message
from connector.ingest.prepare import Fetched, Prepared, prepare_many

log = logging.getLogger(__name__)

# --- preparing in a process pool ----------------------------------------------------------------
# Hashing, compressing and writing the raw source, parsing, writing attachments: per message
# that is CPU work without the database, and it decides the speed of an initial sync. A pool of
# forked processes does it on every core while this process talks to PostgreSQL (bench/sync.py:
# the target is >= 1,500 msg/s on 2 cores, bench/README.md). Small batches, a custom parser (tests)
# or a broken pool prepare in this process, exactly as before: the pool changes where, never what.
# The pool's processes run at a lower priority than their worker: the worker's store (with
# PostgreSQL) is the critical path of the pipeline, and the pool only has to keep one batch
# ahead of it; on 2 cores shared by worker, PostgreSQL and pool, +5-10% messages a second.
POOL_NICENESS = 5
POOL_MIN_BATCH = 16  # fewer messages than this are prepared in-process: forking is not free
_pool: ProcessPoolExecutor | None = None
_pool_pid = 0
_pool_fingerprint: tuple = ()
_pool_refused_pid = 0  # this process could not start a pool: do not try for every batch


def _pool_size() -> int:
    configured = settings.RELAY_PARSE_WORKERS
    return int(configured) if configured is not None else (os.cpu_count() or 1)


def _close_inherited_sockets() -> None:
    """Fork gives a pool process a copy of every socket its worker had open: the IMAP session the
    sync is in, the database and broker connections. A connection is only closed once every copy
    is, so when the worker dropped a session (a timeout, an error) the server saw no close while
    the pool lived, which is as long as the worker: the session kept counting against the
    account's connection limit, and a peer that cut the connection was never heard. The pool
    talks to none of them (it parses and writes files; its own pipes to the worker are pipes,
    not sockets), so it closes its copies first thing. Standard input, output and error stay,
    whatever they are (under systemd's journal they are sockets): closed, a file opened later
    could take their number and receive the log lines."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return  # not Linux: the copies stay, as before
    for name in names:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            pass  # the listing's own descriptor, already gone


def _pool_init() -> None:
    _close_inherited_sockets()
    # A pool process must not outlive its worker (a SIGKILLed Celery worker,
    # docs/reliability.md I-03): Linux kills it when its parent dies (prctl PR_SET_PDEATHSIG = 1).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    if POOL_NICENESS:
        os.nice(POOL_NICENESS)


def _fingerprint() -> tuple:
    # What a forked pool process took from this one and relies on: where files go. Tests (and
    # nothing else) change these at run time; a pool made under other values is replaced.
    return (str(settings.MEDIA_ROOT), repr(settings.STORAGES.get("default")), _pool_size())


def _get_pool(*, create: bool = True) -> ProcessPoolExecutor | None:
    """The pool, if it can be used here. Only the main thread creates one: fork copies the
    calling thread alone, and a lock another thread held at that moment stays held forever in
    the child."""
    global _pool, _pool_pid, _pool_fingerprint
    fingerprint = _fingerprint()
    if _pool is not None and _pool_pid == os.getpid() and _pool_fingerprint == fingerprint:
        return _pool
    if not create or threading.current_thread() is not threading.main_thread():
        return None
    if _pool_refused_pid == os.getpid():
        return None
    _drop_pool()
    if _pool_size() < 2:
        return None
    # fork: the children inherit Django's settings and the loaded parser, and start in
    # milliseconds; they never use the database connection they inherit.
    pool = ProcessPoolExecutor(
        _pool_size(), mp_context=multiprocessing.get_context("fork"), initializer=_pool_init
    )
    # The first task forks every process of the pool, here, in this thread. A Celery prefork
    # worker is a daemonic process, and multiprocessing refuses children to those lest they
    # outlive it; ours cannot (_pool_init: PR_SET_PDEATHSIG), so the flag is lifted meanwhile.
    current = multiprocessing.current_process()
    daemon = current._config.get("daemon")
    current._config["daemon"] = False
    try:
        pool.submit(int).result(timeout=60)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if daemon is not None:
            current._config["daemon"] = daemon
        else:
            current._config.pop("daemon", None)
    _probe_shared_raws(pool)
    _pool, _pool_pid, _pool_fingerprint = pool, os.getpid(), fingerprint
    return _pool


def _drop_pool() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None and _pool_pid == os.getpid():
        pool.shutdown(wait=False, cancel_futures=True)


def _refuse_pool(exc: Exception) -> None:
    """A pool that cannot start here (no /dev/shm for its semaphores, no fork in a sandbox...)
    is not tried again by this process: it prepares in-process."""
    global _pool_refused_pid
    log.warning("parse pool unavailable, preparing in-process: %s", exc)
    _pool_refused_pid = os.getpid()
    _drop_pool()


def warm_pool() -> bool:
    """Start the pool's processes now. The sync calls this before its prefetch thread starts,
    so that no fork happens while another thread runs (fork copies no threads, only locks)."""
    try:
        return _get_pool() is not None
    except Exception as exc:  # noqa: BLE001 - no pool means in-process, never a failed sync
        _refuse_pool(exc)
        return False


def _prepare_in_pool(mailbox_id: int, items: list[Fetched]) -> list[Prepared]:
    out = []
    for prepared in prepare_many(mailbox_id, items, parse_message):
        # Only the fields the store reads travel back: not the raw bytes (the parent has them)
        # nor attachment payloads (written to storage already; the rows need their metadata).
        prepared.item = None
        if prepared.parsed is not None and prepared.parsed.attachments:
            prepared.parsed.attachments = [
                dataclasses.replace(a, payload=b"") for a in prepared.parsed.attachments
            ]
        out.append(prepared)
    return out


# --- the raw sources' way to the pool ------------------------------------------------------------
# A chunk's raw sources (~60 messages of ~80 KB on real-sized mail) pickled through the pool's
# pipe go in 64 KB steps, pickled, written, read and unpickled. Instead they are written once
# into an anonymous memory file (memfd, Linux), and the pool process reads them back whole
# through /proc/<this pid>/fd/<fd>. Measured on real-sized mail (bench/README.md, issue #17):
# the pool's whole prepare 1.134 -> 1.100 ms a message at best, 1.257 -> 1.159 median; this
# process's own share grows a little, the pool processes' falls. The file lives as long as its
# descriptor, closed when the chunk is done, failed or cancelled, so nothing is left behind by
# a killed worker (docs/reliability.md S-41). Where that does not work (no memfd, no /proc),
# the raw sources are pickled.
_shared_raws_pid = 0  # the process whose pool read a memfd back: that way works here


def _read_shared(pid: int, fd: int) -> bytes:
    with open(f"/proc/{pid}/fd/{fd}", "rb", buffering=0) as fh:
        return fh.read()


def _memfd_with(raws: list[bytes]) -> int:
    fd = os.memfd_create("relay-raw-sources", os.MFD_CLOEXEC)
    try:
        for raw in raws:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _probe_shared_raws(pool: ProcessPoolExecutor) -> None:
    """Whether a new pool can read a memfd of this process's; asked once, as it starts."""
    global _shared_raws_pid
    _shared_raws_pid = 0
    if not hasattr(os, "memfd_create"):
        return
    probe = b"relay"
    try:
        fd = _memfd_with([probe])
        try:
            works = pool.submit(_read_shared, os.getpid(), fd).result(timeout=60) == probe
        finally:
            os.close(fd)
    except Exception as exc:  # noqa: BLE001 - then the raw sources are pickled, as before
        log.info("raw sources go to the parse pool pickled: %s", exc)
        works = False
    if works:
        _shared_raws_pid = os.getpid()


def _prepare_shared(
    mailbox_id: int, pid: int, fd: int, sizes: list[int], items: list[Fetched]
) -> list[Prepared]:
    """_prepare_in_pool for a chunk whose raw sources wait in the worker's memfd (in order, back
    to back; `sizes[i]` is -1 where items[i] has none)."""
    data = _read_shared(pid, fd)
    offset = 0
    for item, size in zip(items, sizes, strict=True):
        if size >= 0:
            item.raw = data[offset : offset + size]
            offset += size
    if offset != len(data):
        raise OSError(f"shared raw sources: {len(data)} bytes where {offset} were written")
    del data
    return _prepare_in_pool(mailbox_id, items)


def _submit(pool: ProcessPoolExecutor, mailbox_id: int, chunk: list[Fetched]) -> Future:
    if _shared_raws_pid != os.getpid():
        return pool.submit(_prepare_in_pool, mailbox_id, chunk)
    raws = [item.raw for item in chunk if item.raw is not None]
    sizes = [len(item.raw) if item.raw is not None else -1 for item in chunk]
    try:
        fd = _memfd_with(raws)
    except OSError as exc:  # out of descriptors or memory for now: this chunk goes pickled
        log.warning("raw sources go to the parse pool pickled: %s", exc)
        return pool.submit(_prepare_in_pool, mailbox_id, chunk)
    try:
        bare = [dataclasses.replace(item, raw=None) for item in chunk]
        future = pool.submit(_prepare_shared, mailbox_id, os.getpid(), fd, sizes, bare)
    except BaseException:
        os.close(fd)
        raise
    # Run when the chunk is done, failed or cancelled (at once if it already is).
    future.add_done_callback(lambda _future: os.close(fd))
    return future


class PreparedBatch:
    """A batch being prepared: in the pool (started at once) or in-process (at `result()`,
    in the calling thread: the parse time limit needs the main thread's SIGALRM)."""

    def __init__(self, mailbox_id: int, items: Sequence[Fetched], parse=parse_message):
        self.mailbox_id, self.items, self.parse = mailbox_id, list(items), parse
        self.chunks: list[tuple[list[Fetched], Future | None]] = []
        if parse is not parse_message or len(self.items) < POOL_MIN_BATCH:
            return
        try:
            # In the sync's prefetch thread this is the pool warm_pool() started, or none.
            pool = _get_pool()
            if pool is None:
                return
            size = max(4, -(-len(self.items) // (_pool_size() * 4)))
            for start in range(0, len(self.items), size):
                chunk = self.items[start : start + size]
                self.chunks.append((chunk, _submit(pool, mailbox_id, chunk)))
        except BrokenProcessPool as exc:  # a process died earlier: a new pool next folder
            log.warning("parse pool broken, preparing in-process: %s", exc)
            _drop_pool()
            self.chunks = []
        except Exception as exc:  # noqa: BLE001 - the pool cannot start here at all
            _refuse_pool(exc)
            self.chunks = []

    def result(self) -> list[Prepared]:
        if not self.chunks:
            return prepare_many(self.mailbox_id, self.items, self.parse)
        prepared: list[Prepared] = []
        for chunk, future in self.chunks:
            try:
                done = future.result()
            except Exception as exc:  # noqa: BLE001 - a killed or broken pool process
                # Whatever went wrong there, do it here: the same code, so the same outcome
                # (an exception from prepare itself is raised again, as without a pool).
                log.warning("parse pool failed (%s); preparing %d in-process", exc, len(chunk))
                _drop_pool()
                done = prepare_many(self.mailbox_id, chunk, self.parse)
            for item, p in zip(chunk, done, strict=True):
                p.item = item
                prepared.append(p)
        return prepared
