"""The push gateway: one asyncio process holding an IMAP connection per watched mailbox, so new
mail reaches the database within seconds instead of at the next poll (docs/product.md §3.11).

- Which mailboxes: its fair share of the watchable ones, by leases in the database
  (connector/sync/watches.py). Renewed every third of RELAY_PUSH_LEASE_TTL with one statement;
  each renewal also reaps dead gateways and rebalances (claim up to the share, release beyond).
- Each watch (``_watch``) connects through connector/transport/idle.py (the sync's network
  guard, TLS checks and OAuth tokens), waits with NOTIFY or IDLE, and on news enqueues a
  targeted sync of the changed folders on the ``push`` queue (connector/scheduling/tasks.py
  ``relay.push_sync``), events of one mailbox gathered for RELAY_PUSH_COALESCE_MS first.
- A broken connection is retried with jittered exponential back-off up to
  RELAY_PUSH_BACKOFF_MAX; new connections are capped per second per gateway and per host; an
  OAuth session ends before its token expires and reconnects with a fresh one. Meanwhile the
  mailbox is "reconnecting" and polled at its own interval (docs/reliability.md P-12).
- A refused login is the sync's S-28: the mailbox needs reconnecting and is not watched any more.

Database work runs on one thread of its own (Django connections are per thread), and enqueuing
on another, so neither blocks the event loop that reads thousands of sockets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from connector.sync import mailbox as sync
from connector.sync import watches
from connector.transport import oauth
from connector.transport.errors import AuthenticationFailed, MailError
from connector.transport.idle import IdleClient, Timing, limit_tls_buffers
from connector.transport.imap import ImapSettings
from inbox.models import Folder, Mailbox, WatchState

log = logging.getLogger(__name__)


class RateLimit:
    """At most ``rate`` acquisitions per second (a token bucket holding one second's worth)."""

    def __init__(self, rate: float):
        self.rate = max(rate, 0.001)
        self.tokens = max(self.rate, 1.0)
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(
                    max(self.rate, 1.0), self.tokens + (now - self.updated) * self.rate
                )
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def backoff(failures: int, cap: float) -> float:
    """Jittered exponential back-off: 1, 2, 4... seconds up to ``cap``, times 0.5 to 1."""
    return min(cap, 2 ** min(failures, 20)) * random.uniform(0.5, 1.0)


@dataclass
class Plan:
    """What one connection of one mailbox needs, read from the database."""

    settings: ImapSettings
    folders: list[str]
    idle_folder: str
    timing: Timing
    oauth_token: str = ""


@dataclass
class Gateway:
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:push")
    enqueue: Callable[[int, list[str]], None] | None = None
    max_sessions: int = 0
    gateway_id: int = 0
    tasks: dict[int, asyncio.Task] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)
    pending: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    flushing: set[int] = field(default_factory=set)

    def __post_init__(self):
        self.max_sessions = self.max_sessions or settings.RELAY_PUSH_MAX_SESSIONS
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push-db")
        self.out = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push-enqueue")
        self.rate = RateLimit(settings.RELAY_PUSH_CONNECT_RATE)
        self.host_rates: dict[str, RateLimit] = {}
        if self.enqueue is None:
            from .tasks import push_sync

            self.enqueue = lambda pk, folders: push_sync.apply_async((pk, folders), queue="push")

    async def _db(self, fn, *args, **kwargs):
        def call():
            close_old_connections()
            return fn(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self.db, lambda: call())

    # --- the process -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        limit_tls_buffers()
        gateway = await self._db(watches.register, self.name)
        self.gateway_id = gateway.pk
        log.info("push gateway %s started (fencing number %s)", self.name, self.gateway_id)
        every = max(settings.RELAY_PUSH_LEASE_TTL / 3, 0.2)
        try:
            while not stop.is_set():
                if not await self._tick():
                    log.error("push gateway %s lost its lease: dropping every watch", self.name)
                    break
                try:
                    async with asyncio.timeout(every):
                        await stop.wait()
                except TimeoutError:
                    pass
        finally:
            await self._stop_all()
            await self._db(watches.leave, self.gateway_id)
            self.db.shutdown(wait=True)
            self.out.shutdown(wait=True)
            log.info("push gateway %s stopped", self.name)

    async def _tick(self) -> bool:
        """Renew (one statement), reap the dead, drop what we should not hold, claim our share."""
        alive = await self._db(
            watches.renew, self.gateway_id, sessions=len(self.tasks), live=len(self.live)
        )
        if not alive:
            return False
        await self._db(watches.reap)
        await self._db(watches.release_unwatchable, self.gateway_id)
        held = set(await self._db(watches.held, self.gateway_id))
        for pk in list(self.tasks):
            if pk not in held:
                self._stop(pk)
        share = await self._db(watches.fair_share, cap=self.max_sessions)
        if len(held) > share + 1:
            # Someone joined: give back what is over our share, the newest claims first.
            extra = sorted(held)[share:]
            for pk in extra:
                self._stop(pk)
            await self._db(watches.release, self.gateway_id, extra)
            held -= set(extra)
        else:
            held |= set(await self._db(watches.claim, self.gateway_id, share - len(held)))
        for pk in sorted(held):
            if pk not in self.tasks:
                self.tasks[pk] = asyncio.create_task(self._watch(pk), name=f"watch-{pk}")
        return True

    def _stop(self, pk: int) -> None:
        task = self.tasks.pop(pk, None)
        if task is not None:
            task.cancel()
        self.live.discard(pk)

    async def _stop_all(self) -> None:
        tasks = list(self.tasks.values())
        for pk in list(self.tasks):
            self._stop(pk)
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one mailbox -----------------------------------------------------------------------
    def _plan(self, pk: int, rejected: str | None = None) -> Plan | None:
        mailbox = Mailbox.objects.filter(pk=pk, watch_gateway_id=self.gateway_id).first()
        if mailbox is None or mailbox.state not in watches.WATCHABLE:
            return None
        token = ""
        deadline = None
        if mailbox.connection_type in oauth.OAUTH_TYPES:
            # The same token the sync uses, refreshed first when it is about to expire.
            token = oauth.ensure_access_token(pk, rejected=rejected)
            mailbox.refresh_from_db()
            if mailbox.oauth_expires_at is not None:
                # Reconnect before the token expires (Microsoft 365 ends the session then).
                left = (mailbox.oauth_expires_at - timezone.now()).total_seconds()
                deadline = time.monotonic() + max(left - settings.RELAY_OAUTH_REFRESH_MARGIN, 30)
        folders = list(
            Folder.objects.filter(
                mailbox=mailbox, is_active=True, is_selectable=True, exists_on_server=True
            )
            .order_by("pk")
            .values_list("name", "special_use")
        )
        names = [name for name, _use in folders]
        all_mail = [name for name, use in folders if use == "all"]
        idle_folder = all_mail[0] if all_mail else "INBOX"
        host = mailbox.imap_host.lower()
        timing = Timing(
            reidle=settings.RELAY_PUSH_REIDLE_BY_HOST.get(host, settings.RELAY_PUSH_REIDLE),
            watchdog=settings.RELAY_PUSH_WATCHDOG,
            sweep=settings.RELAY_PUSH_SWEEP,
            command=settings.RELAY_IMAP_TIMEOUT,
            deadline=deadline,
        )
        return Plan(
            settings=ImapSettings.from_mailbox(mailbox, timeout=settings.RELAY_IMAP_TIMEOUT),
            folders=names or ["INBOX"],
            idle_folder=idle_folder,
            timing=timing,
            oauth_token=token,
        )

    async def _watch(self, pk: int) -> None:
        failures = 0
        rejected: str | None = None
        while True:
            try:
                plan = await self._db(self._plan, pk, rejected)
            except AuthenticationFailed as exc:
                # No secret stored, or the OAuth grant is gone: as the sync does
                # (docs/reliability.md S-28).
                await self._refused(pk, exc)
                return
            except MailError as exc:
                plan = None
                await self._broken(pk, exc)
            else:
                if plan is None:
                    return  # not ours any more, or not watchable: the next tick releases it
            if plan is not None:
                host = plan.settings.host.lower()
                limiter = self.host_rates.setdefault(
                    host, RateLimit(settings.RELAY_PUSH_CONNECT_RATE_PER_HOST)
                )
                await self.rate.acquire()
                await limiter.acquire()
                try:
                    client = await IdleClient.connect(
                        plan.settings, timeout=settings.RELAY_IMAP_TIMEOUT
                    )
                except AuthenticationFailed as exc:
                    if plan.oauth_token and rejected is None:
                        rejected = plan.oauth_token  # refreshed once, as the sync does
                        continue
                    await self._refused(pk, exc)
                    return
                except (MailError, OSError, TimeoutError) as exc:
                    await self._broken(pk, exc)
                else:
                    rejected = None
                    try:
                        await client.watch(
                            plan.folders,
                            on_change=lambda folders: self._changed(pk, folders),
                            timing=plan.timing,
                            idle_folder=plan.idle_folder,
                            on_live=partial(self._went_live, pk, plan.folders),
                        )
                        failures = 0
                        await client.logout()  # the deadline (token expiry): reconnect now
                        continue
                    except asyncio.CancelledError:
                        await client.logout()
                        raise
                    except (MailError, OSError, TimeoutError) as exc:
                        client.abort()
                        await self._broken(pk, exc)
            failures += 1
            await asyncio.sleep(backoff(failures, settings.RELAY_PUSH_BACKOFF_MAX))

    def _went_live(self, pk: int, folders: list[str], mode: str) -> None:
        self.live.add(pk)
        asyncio.get_running_loop().run_in_executor(
            self.db,
            lambda: (
                close_old_connections(),
                watches.set_state(self.gateway_id, pk, WatchState.LIVE, f"watching with {mode}"),
            ),
        )
        # Whatever arrived while nobody watched: one sync of every watched folder.
        self._changed(pk, folders)
        log.info("push mailbox=%s live (%s)", pk, mode)

    async def _refused(self, pk: int, exc: BaseException) -> None:
        self.live.discard(pk)
        await self._db(sync.record_refused_login, pk, str(exc))
        await self._db(watches.set_state, self.gateway_id, pk, WatchState.POLLING, str(exc))
        log.warning("push mailbox=%s login refused: not watched any more", pk)

    async def _broken(self, pk: int, exc: BaseException) -> None:
        self.live.discard(pk)
        log.info("push mailbox=%s connection lost: %s", pk, exc)
        await self._db(
            watches.set_state, self.gateway_id, pk, WatchState.RECONNECTING, str(exc) or "lost"
        )

    # --- events ----------------------------------------------------------------------------
    def _changed(self, pk: int, folders: list[str]) -> None:
        """Gather a mailbox's news for a few milliseconds, then enqueue one targeted sync."""
        self.pending[pk].update(folders)
        if pk in self.flushing:
            return
        self.flushing.add(pk)
        asyncio.get_running_loop().call_later(
            settings.RELAY_PUSH_COALESCE_MS / 1000, self._flush, pk
        )

    def _flush(self, pk: int) -> None:
        self.flushing.discard(pk)
        folders = sorted(self.pending.pop(pk, ()))
        if folders:
            asyncio.get_running_loop().run_in_executor(self.out, self._send, pk, folders)

    def _send(self, pk: int, folders: list[str]) -> None:
        try:
            self.enqueue(pk, folders)
        except Exception:  # a broker hiccup: the safety-net poll still comes
            log.exception("push mailbox=%s could not enqueue a sync of %s", pk, folders)
