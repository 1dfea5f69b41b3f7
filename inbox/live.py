"""Live updates: the one publisher of "something changed" events, and the names of their Redis
channels (docs/product.md §7.14, docs/architecture.md "How a change reaches an open page").

An event is a few ids, never content: a page that hears one asks the server again through its
ordinary views, which check access as always. Each event goes on one channel:

- ``mailbox:<id>`` for what happens in a mailbox (mail stored or changed by a sync, mail filed,
  a conversation's owner, status or notes), heard only by streams of people who may read it;
- ``user:<id>`` for what concerns one person (a notification);
- ``records`` for notes added to or deleted from a record (account, contact, lead, ticket,
  opportunity), heard by every signed-in person's streams, since every signed-in person may
  see every record (notes/access.py); the event names the record, and the page showing it
  reloads its timeline through the ordinary view.

Publishing happens after the writing transaction commits (the page must find the change when
it asks) and never fails or slows its caller: Redis is asked with a short timeout, a failure is
logged, and after one the publisher stays quiet for a few seconds instead of waiting on a dead
Redis at every event (docs/reliability.md P-21). Without Redis (the embedded default) nothing
is published and the pages poll as before.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# What an event says happened; the page decides what to refresh (crm/static/js/live.js).
MAIL = "mail"  # a sync stored new mail or saw flags/expunges: the lists and counts
FILED = "filed"  # mail was filed on records: their Email tab and timeline
CONVERSATION = "conversation"  # a conversation's owner, status or notes changed
NOTIFICATION = "notification"  # the bell
RECORD = "record"  # a record's notes changed: its timeline

# After a failure, publishing is skipped for this long (seconds): a sync that stores a thousand
# batches while Redis is down must not wait a timeout for each (docs/reliability.md P-21).
QUIET_AFTER_FAILURE = 5.0
TIMEOUT = 0.5

_lock = threading.Lock()
_client = None
_quiet_until = 0.0
_counter = itertools.count(1)


def enabled() -> bool:
    return bool(settings.RELAY_LIVE_URL)


def prefix() -> str:
    """Channel names carry the Redis database number: PUBLISH ignores databases, and two sites
    (or two test workers) sharing one Redis on different databases must not hear each other."""
    path = urlsplit(settings.RELAY_LIVE_URL).path.strip("/") or "0"
    return f"relay:{path}:"


def mailbox_channel(mailbox_id: int) -> str:
    return f"{prefix()}mailbox:{mailbox_id}"


def user_channel(user_id: int) -> str:
    return f"{prefix()}user:{user_id}"


def records_channel() -> str:
    return f"{prefix()}records"


def _redis():
    global _client
    with _lock:
        if _client is None:
            import redis

            _client = redis.Redis.from_url(
                settings.RELAY_LIVE_URL,
                socket_timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
                health_check_interval=30,
            )
        return _client


def reset() -> None:
    """Forget the client and the quiet period (tests that change RELAY_LIVE_URL)."""
    global _client, _quiet_until
    with _lock:
        _client, _quiet_until = None, 0.0


def _event_id() -> str:
    # Unique per process and ordered in time; only used to tell a browser where it was
    # (Last-Event-ID), so it needs no coordination between processes.
    return f"{time.time_ns() // 1_000_000}-{os.getpid()}-{next(_counter)}"


def _publish_now(channel: str, event: dict) -> None:
    global _quiet_until
    if time.monotonic() < _quiet_until:
        return
    try:
        _redis().publish(channel, json.dumps(event, separators=(",", ":")))
    except Exception as exc:  # any failure of Redis: logged, never the caller's problem
        _quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
        log.warning("live update not published on %s: %s", channel, exc)


def _publish(channel: str, event: dict) -> None:
    if not enabled():
        return
    event = {"id": _event_id(), **event}
    # robust: a failing publish inside on_commit must not stop the other commit hooks.
    transaction.on_commit(lambda: _publish_now(channel, event), robust=True)


def mailbox_event(
    kind: str,
    *,
    mailbox_id: int,
    threads: Iterable[int] = (),
    records: Iterable[str] = (),
) -> None:
    """Tell the readers of a mailbox that something of `kind` changed in it. `threads`:
    conversation ids; `records`: "contact:12"-style references of records mail was filed on."""
    event = {"kind": kind, "mailbox": mailbox_id}
    threads = sorted(set(threads))
    if threads:
        event["threads"] = threads[:100]
    records = sorted(set(records))
    if records:
        event["records"] = records[:100]
    _publish(mailbox_channel(mailbox_id), event)


def user_event(kind: str, *, user_id: int) -> None:
    """Tell one person's open pages that something of `kind` concerns them."""
    _publish(user_channel(user_id), {"kind": kind})


def record_event(kind: str, *, records: Iterable[str]) -> None:
    """Tell every open page that something of `kind` changed on these records ("contact:12");
    only the pages showing one of them refresh (crm/static/js/live.js)."""
    records = sorted(set(records))
    if records:
        _publish(records_channel(), {"kind": kind, "records": records[:100]})
