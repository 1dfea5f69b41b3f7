"""The live-update stream of the signed-in person: server-sent events (docs/product.md §7.14).

One async view holds one stream per open page, fed by the server process's one Redis pub/sub
connection (inbox/livehub.py): subscribed, through it, to the channels of the mailboxes this
person may read (inbox/permissions.py, the same selector as every page), to their own user
channel and to the records channel (inbox/live.py). What it sends is what was published: kinds
and ids, never content; the page then asks the ordinary views, which check access again.

At each heartbeat (a comment line, every RELAY_LIVE_HEARTBEAT seconds) it asks again who this
person is and what they may read: a revoked grant or a removed group unsubscribes that
mailbox, a deactivated account or a signed-out session ends the stream (docs/reliability.md
P-23). Without Redis, or under a WSGI server that cannot hold a stream, it answers 204: an
EventSource stops on that, and the page keeps polling as before.

Faults (docs/reliability.md P-21..P-26): Redis lost ends every stream of the process with a
retry hint (the browser reconnects and is told to "resync"); a client gone is noticed by the
ASGI server, which cancels this generator so its subscription and slot are freed at once; a
slow client fills only its own bounded queue and is resynced; a person is held to
RELAY_LIVE_MAX_STREAMS streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from .. import live, livehub
from ..permissions import readable_mailboxes

log = logging.getLogger(__name__)

# The browser waits this long before reconnecting after the stream ended (EventSource "retry").
RETRY_MS = 3000


def _signed_in_user(request):
    # Through the sync path: the project's authentication backend (crm's LockoutBackend) has no
    # async get_user, which request.auser() would need.
    user = request.user
    user.is_authenticated  # noqa: B018 - evaluates the lazy user here, in the sync thread
    return getattr(user, "_wrapped", user)


def _readable_ids(user) -> set[int]:
    return set(readable_mailboxes(user).values_list("pk", flat=True))


def _still_signed_in(user_id: int, session_key: str | None, session) -> bool:
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        return False
    return session_key is not None and session.exists(session_key)


def _frame(event: dict) -> str:
    data = json.dumps(event, separators=(",", ":"))
    # No id line for the stream's own events (resync, access, end): an empty one would clear the
    # browser's Last-Event-ID, and its next reconnection would not be resynced.
    head = f"id: {event['id']}\n" if event.get("id") else ""
    return f"{head}event: {event.get('kind', 'message')}\ndata: {data}\n\n"


class _Slots:
    """Open streams per person, shared by every server process: a sorted set in Redis whose
    scores are expiry times, renewed at each heartbeat, so a process that died without saying
    goodbye frees its slots after a few heartbeats (docs/reliability.md P-25)."""

    def __init__(self, client, user_id: int):
        self.client = client
        self.key = f"{live.prefix()}streams:{user_id}"
        self.member = uuid.uuid4().hex
        self.ttl = max(3 * settings.RELAY_LIVE_HEARTBEAT, 10)

    async def take(self) -> bool:
        now = time.time()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.zadd(self.key, {self.member: now + self.ttl})
            pipe.zcard(self.key)
            pipe.expire(self.key, int(self.ttl) + 1)
            _, _, count, _ = await pipe.execute()
        if count > settings.RELAY_LIVE_MAX_STREAMS:  # this one is too many: it leaves again
            await self.client.zrem(self.key, self.member)
            return False
        return True

    async def renew(self) -> None:
        # One round trip: every stream of the process renews through the hub's few connections
        # (inbox/livehub.py).
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {self.member: time.time() + self.ttl})
            pipe.expire(self.key, int(self.ttl) + 1)
            await pipe.execute()

    async def free(self) -> None:
        await self.client.zrem(self.key, self.member)


@login_not_required  # answered with 204 instead of a redirect an EventSource cannot follow
@require_GET
async def events(request):
    user = await sync_to_async(_signed_in_user)(request)
    if not user.is_authenticated or not live.enabled() or not isinstance(request, ASGIRequest):
        # No stream here: the page polls (docs/product.md §7.14). 204 stops an EventSource for
        # good, where an error status would have it retry forever.
        return HttpResponse(status=204)
    hub = livehub.hub()
    subscription = None
    slots = None
    try:
        # The process's one pub/sub connection (inbox/livehub.py); while it backs off after a
        # failure this answers at once, without asking Redis (docs/reliability.md P-21).
        subscription = hub.subscription()
        slots = _Slots(hub.client, user.pk)
        if not await slots.take():
            slots = None
            await subscription.close()
            return HttpResponse(
                "Too many live pages open: this one checks for news every few seconds instead.",
                status=429,
                content_type="text/plain",
            )
        # Subscribed before the page is answered: what is published from now on reaches it.
        await subscription.want(await _channels(user))
    except Exception as exc:  # Redis down: the page polls (docs/reliability.md P-21)
        log.warning("live stream refused, Redis unavailable: %s", exc)
        if isinstance(exc, RedisError):
            hub.failed(exc)  # the next pages are answered at once, not after a timeout each
        if subscription is not None:
            await _close(subscription, slots)
        return HttpResponse(status=204)
    resumed = bool(request.headers.get("Last-Event-ID"))
    response = StreamingHttpResponse(
        _stream(request, user, subscription, slots, resumed=resumed),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # a buffering proxy (nginx) would hold events back
    return response


async def _channels(user) -> set[str]:
    mailbox_ids = await sync_to_async(_readable_ids)(user)
    return {
        live.user_channel(user.pk),
        live.records_channel(),
        *map(live.mailbox_channel, mailbox_ids),
    }


async def _stream(request, user, subscription, slots, *, resumed: bool):
    heartbeat = settings.RELAY_LIVE_HEARTBEAT
    session_key = request.session.session_key
    try:
        # An id from the start, so that any reconnection says Last-Event-ID and is resynced.
        yield f"retry: {RETRY_MS}\nid: open-{time.time_ns() // 1_000_000}\n\n"
        if resumed:
            # Events are not kept, so a reconnecting page cannot be given what it missed: it is
            # told to refresh what it shows once (docs/reliability.md P-21).
            yield _frame({"kind": "resync"})
        else:
            yield ": open\n\n"
        next_beat = time.monotonic() + heartbeat
        while True:
            if subscription.lost is not None:
                # Redis lost (docs/reliability.md P-21): end; the browser reconnects after
                # RETRY_MS and, if Redis is still down, gets 204 and polls.
                log.info("live stream ended: %s", subscription.lost)
                return
            if subscription.overflowed:
                # This page stopped reading long enough for its queue to fill (docs/reliability.md
                # P-24): what it missed is gone, so it refreshes everything once it reads again.
                subscription.catch_up()
                yield _frame({"kind": "resync"})
            wait = max(0.0, next_beat - time.monotonic())
            item = await subscription.get(wait)
            if item is not None:
                channel, data = item
                if channel in subscription.channels:  # not one unsubscribed a moment ago
                    try:
                        event = json.loads(data)
                    except ValueError:
                        continue
                    yield _frame(event)
            if time.monotonic() < next_beat:
                continue
            # The heartbeat: is this still the person, and what may they read now?
            signed_in = await sync_to_async(_still_signed_in)(user.pk, session_key, request.session)
            if not signed_in:
                yield _frame({"kind": "end"})
                return
            changed = await subscription.want(await _channels(user))
            await slots.renew()
            if changed:
                yield _frame({"kind": "access"})
            yield ": heartbeat\n\n"
            next_beat = time.monotonic() + heartbeat
    except asyncio.CancelledError:
        raise  # the client went away (docs/reliability.md P-22): cleaned up below
    except Exception as exc:
        # Redis failed under a heartbeat's commands (docs/reliability.md P-21): end, as above.
        log.warning("live stream ended: %s", exc)
    finally:
        await _close(subscription, slots)


async def _close(subscription, slots) -> None:
    steps = [subscription.close] if slots is None else [slots.free, subscription.close]
    for step in steps:
        try:
            await asyncio.shield(step())
        except BaseException as exc:  # noqa: BLE001 - a dead Redis must not stop the rest
            log.debug("live stream cleanup: %s", exc)
