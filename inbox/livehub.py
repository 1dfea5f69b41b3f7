"""One Redis pub/sub connection per server process, shared by every live-update stream it holds
(docs/product.md §7.14, docs/architecture.md "How a change reaches an open page").

A stream (inbox/views/events.py) takes a `Subscription` from the process's `Hub`: a bounded
queue, fed by the hub's one reader task with the events of the channels the stream asked for.
The hub subscribes a channel in Redis when the first stream of the process wants it and
unsubscribes it when the last one lets go, so a thousand pages open on one mailbox cost one
subscription, not a thousand connections.

Faults (docs/reliability.md P-21, P-24, P-26):

- The reader never waits on a stream: a queue that is full (a page that stopped reading) loses
  its events from then on and is marked, and the stream tells its page to resync once it reads
  again. The others go on.
- Redis lost: every stream of the process is told (each ends, and its browser reconnects and
  resyncs); the hub then asks Redis again only after a back-off (0.5 s doubling to 30 s,
  jittered), and pages that open meanwhile are answered at once without a connection attempt
  each (they poll). The first stream after the back-off connects again.
- With no stream left the hub closes its connections, and opens them again for the next one.

One hub per event loop and Redis URL: uvicorn and each gunicorn worker run one loop per
process; the test suite starts a server (and so a loop) per test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import weakref

from django.conf import settings

from . import live

log = logging.getLogger(__name__)

# Events waiting for one stream; past this it is resynced instead (docs/reliability.md P-24).
QUEUE_BOUND = 256
# Redis connections for the streams' own commands (their slots, docs/reliability.md P-25), on
# top of the one pub/sub connection; a stream waits for one rather than opening more.
COMMAND_CONNECTIONS = 4
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
CONFIRM_TIMEOUT = 5.0


class Unavailable(Exception):
    """Redis cannot be reached now (or was not, a moment ago): no stream, the page polls."""


class Subscription:
    """What one stream hears: (channel, data) pairs in a bounded queue."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.channels: set[str] = set()
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_BOUND)
        self.overflowed = False  # events were dropped: the page must resync
        self.lost: BaseException | None = None  # Redis went away: the stream ends

    def deliver(self, channel: str, data: bytes) -> None:
        if self.overflowed:
            return  # already behind: the resync will cover whatever comes meanwhile
        try:
            self.queue.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.overflowed = True

    def lose(self, exc: BaseException) -> None:
        self.lost = exc
        try:
            self.queue.put_nowait(None)  # wakes a stream waiting on an empty queue
        except asyncio.QueueFull:
            pass  # a full queue's stream is not waiting: it sees `lost` before reading again

    def catch_up(self) -> None:
        """Forget what was queued: the stream has told its page to refresh everything."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.overflowed = False

    async def get(self, timeout: float) -> tuple[str, bytes] | None:
        """The next event, or None after `timeout` seconds or when Redis was lost."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def want(self, channels: set[str]) -> bool:
        """Hear exactly `channels` from now on; True if that changed anything."""
        gone, new = self.channels - channels, channels - self.channels
        if gone:
            await self.hub.unsubscribe(self, gone)
        if new:
            await self.hub.subscribe(self, new)
        return bool(gone or new)

    async def close(self) -> None:
        await self.hub.release(self)


class Hub:
    def __init__(self, url: str):
        import redis.asyncio as aioredis

        self.url = url
        # A Redis that accepts and then says nothing must not hold a request forever.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=COMMAND_CONNECTIONS + 1,  # and the pub/sub connection
            # Named, so that CLIENT LIST tells whose they are (tests/inbox/test_live_events.py).
            client_name=f"relay-live-{live.prefix().strip(':')}-{os.getpid()}",
            timeout=5,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.pubsub = None
        self.reader: asyncio.Task | None = None
        self.subscribers: dict[str, set[Subscription]] = {}
        self.streams: set[Subscription] = set()
        self.confirmations: dict[str, list[asyncio.Future]] = {}
        self.lock = asyncio.Lock()  # one connect/subscribe/unsubscribe at a time
        self.closing: set[asyncio.Task] = set()
        self.failures = 0
        self.retry_at = 0.0

    # -- the streams' side ----------------------------------------------------------------

    def check(self) -> None:
        """Raise Unavailable while backing off after a failure (no connection attempt)."""
        if time.monotonic() < self.retry_at:
            raise Unavailable("Redis was unreachable a moment ago")

    def subscription(self) -> Subscription:
        self.check()
        subscription = Subscription(self)
        self.streams.add(subscription)
        return subscription

    async def subscribe(self, subscription: Subscription, channels: set[str]) -> None:
        waits = []
        async with self.lock:
            if subscription.lost is not None:
                raise Unavailable(str(subscription.lost))
            await self._connect()
            new = [c for c in sorted(channels) if c not in self.subscribers]
            loop = asyncio.get_running_loop()
            for channel in channels:
                self.subscribers.setdefault(channel, set()).add(subscription)
                if channel in new or channel in self.confirmations:
                    # Asked for now, or by another stream a moment ago and not yet confirmed:
                    # either way this stream waits for Redis' word.
                    future = loop.create_future()
                    self.confirmations.setdefault(channel, []).append(future)
                    waits.append(future)
            subscription.channels |= channels
            if new:
                try:
                    await self.pubsub.subscribe(*new)
                except Exception as exc:
                    self._lose(exc)
                    raise Unavailable(str(exc)) from exc
        if waits:
            # Subscribed once Redis says so: an event published after this reaches the page.
            try:
                await asyncio.wait_for(asyncio.gather(*waits), CONFIRM_TIMEOUT)
            except Exception as exc:
                raise Unavailable(f"subscription not confirmed: {exc!r}") from exc

    async def unsubscribe(self, subscription: Subscription, channels: set[str]) -> None:
        async with self.lock:
            subscription.channels -= channels
            emptied = []
            for channel in channels:
                listeners = self.subscribers.get(channel)
                if listeners is None:
                    continue
                listeners.discard(subscription)
                if not listeners:
                    del self.subscribers[channel]
                    emptied.append(channel)
            if emptied and self.pubsub is not None:
                try:
                    await self.pubsub.unsubscribe(*emptied)
                except Exception as exc:
                    self._lose(exc)

    async def release(self, subscription: Subscription) -> None:
        await self.unsubscribe(subscription, set(subscription.channels))
        self.streams.discard(subscription)
        if not self.streams:
            async with self.lock:
                if not self.streams:  # nobody came meanwhile: close until the next stream
                    await self._disconnect()

    # -- the connection ------------------------------------------------------------------

    async def _connect(self) -> None:
        if self.pubsub is not None:
            return
        self.check()
        pubsub = self.client.pubsub()
        try:
            await asyncio.wait_for(pubsub.connect(), 3)
        except Exception as exc:
            await _quietly(pubsub.aclose())
            self._failed(exc)
            raise Unavailable(str(exc)) from exc
        self.pubsub = pubsub
        self.failures = 0
        self.reader = asyncio.get_running_loop().create_task(self._read(pubsub))

    async def _read(self, pubsub) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message.get("type")
                channel = message.get("channel")
                if isinstance(channel, bytes):
                    channel = channel.decode()
                if kind == "message":
                    for subscription in tuple(self.subscribers.get(channel, ())):
                        subscription.deliver(channel, message["data"])
                elif kind == "subscribe":
                    for future in self.confirmations.pop(channel, ()):
                        if not future.done():
                            future.set_result(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.pubsub is pubsub:
                self._lose(exc)

    def _lose(self, exc: BaseException) -> None:
        """The pub/sub connection failed: every stream of this process ends (its page
        reconnects and resyncs), and Redis is not asked again before the back-off."""
        log.warning("live updates lost Redis, %d streams end: %s", len(self.streams), exc)
        pubsub, reader = self.pubsub, self.reader
        self.pubsub = self.reader = None
        for subscription in tuple(self.streams):
            subscription.lose(exc)
        self.streams.clear()
        self.subscribers.clear()
        for futures in self.confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(Unavailable(str(exc)))
        self.confirmations.clear()
        self._failed(exc)
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if pubsub is not None:
            task = asyncio.get_running_loop().create_task(_quietly(pubsub.aclose()))
            self.closing.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self.closing.discard)

    def failed(self, exc: BaseException) -> None:
        """A stream's own command found Redis unreachable: back off as for the connection."""
        if not isinstance(exc, Unavailable):
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + backoff * random.uniform(0.8, 1.2)

    async def _disconnect(self) -> None:
        pubsub, reader = self.pubsub, self.reader
        self.pubsub = self.reader = None
        if reader is not None:
            reader.cancel()
            await _quietly(reader)
        if pubsub is not None:
            await _quietly(pubsub.aclose())
        await _quietly(self.client.connection_pool.disconnect(inuse_connections=False))


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except BaseException as exc:  # noqa: BLE001 - a dead Redis must not stop the cleanup
        if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():
            raise
        log.debug("live hub cleanup: %s", exc)


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This process's hub (for the running event loop and the configured Redis)."""
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None or current.url != settings.RELAY_LIVE_URL:
        current = _hubs[loop] = Hub(settings.RELAY_LIVE_URL)
    return current
