"""The live-update stream of the signed-in person: server-sent events (docs/product.md §7.14).

One async view holds one Redis pub/sub connection per open page, subscribed to the channels of
the mailboxes this person may read (inbox/permissions.py, the same selector as every page) and
to their own user channel (inbox/live.py). What it sends is what was published: kinds and ids,
never content; the page then asks the ordinary views, which check access again.

At each heartbeat (a comment line, every RELAY_LIVE_HEARTBEAT seconds) it asks again who this
person is and what they may read: a revoked grant or a removed group unsubscribes that
mailbox, a deactivated account or a signed-out session ends the stream (docs/reliability.md
P-23). Without Redis, or under a WSGI server that cannot hold a stream, it answers 204: an
EventSource stops on that, and the page keeps polling as before.

Faults (docs/reliability.md P-21..P-25): Redis lost mid-stream ends the stream with a retry
hint (the browser reconnects and is told to "resync"); a client gone is noticed by the ASGI
server, which cancels this generator so its connection and slot are freed at once; a slow
client holds back only its own stream; a person is held to RELAY_LIVE_MAX_STREAMS streams.
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

from .. import live
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
        await self.client.zadd(self.key, {self.member: time.time() + self.ttl})
        await self.client.expire(self.key, int(self.ttl) + 1)

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
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        # A Redis that accepts and then says nothing must not hold a request (or a heartbeat's
        # renewal) forever; pub/sub reads below wait with their own timeout.
        settings.RELAY_LIVE_URL,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )
    slots = _Slots(client, user.pk)
    try:
        if not await slots.take():
            await client.aclose()
            return HttpResponse(
                "Too many live pages open: this one checks for news every few seconds instead.",
                status=429,
                content_type="text/plain",
            )
    except Exception as exc:  # Redis down: the page polls (docs/reliability.md P-21)
        log.warning("live stream refused, Redis unavailable: %s", exc)
        await client.aclose()
        return HttpResponse(status=204)
    resumed = bool(request.headers.get("Last-Event-ID"))
    response = StreamingHttpResponse(
        _stream(request, user, client, slots, resumed=resumed),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # a buffering proxy (nginx) would hold events back
    return response


async def _stream(request, user, client, slots, *, resumed: bool):
    heartbeat = settings.RELAY_LIVE_HEARTBEAT
    session_key = request.session.session_key
    own = live.user_channel(user.pk)
    pubsub = client.pubsub()
    subscribed: set[str] = set()
    try:
        mailbox_ids = await sync_to_async(_readable_ids)(user)
        subscribed = {own, *(live.mailbox_channel(pk) for pk in mailbox_ids)}
        await pubsub.subscribe(*subscribed)
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
            wait = max(0.0, next_beat - time.monotonic())
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is not None and message.get("type") == "message":
                channel = message["channel"].decode()
                if channel in subscribed:  # not one unsubscribed a moment ago
                    try:
                        event = json.loads(message["data"])
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
            mailbox_ids = await sync_to_async(_readable_ids)(user)
            wanted = {own, *(live.mailbox_channel(pk) for pk in mailbox_ids)}
            gone, new = subscribed - wanted, wanted - subscribed
            if gone:
                await pubsub.unsubscribe(*gone)
            if new:
                await pubsub.subscribe(*new)
            subscribed = wanted
            await slots.renew()
            if gone or new:
                yield _frame({"kind": "access"})
            yield ": heartbeat\n\n"
            next_beat = time.monotonic() + heartbeat
    except asyncio.CancelledError:
        raise  # the client went away (docs/reliability.md P-22): cleaned up below
    except Exception as exc:
        # Redis lost mid-stream (docs/reliability.md P-21): end; the browser reconnects after
        # RETRY_MS and, if Redis is still down, gets 204 and polls.
        log.warning("live stream ended: %s", exc)
    finally:
        await _close(pubsub, client, slots)


async def _close(pubsub, client, slots) -> None:
    for step in (slots.free, pubsub.aclose, client.aclose):
        try:
            await asyncio.shield(step())
        except BaseException as exc:  # noqa: BLE001 - a dead Redis must not stop the rest
            log.debug("live stream cleanup: %s", exc)
