"""Who else has a conversation open, and who is writing a reply to it right now
(docs/product.md §5.4). Kept in Django's cache only, with a short time-to-live: each open page
refreshes its user's mark every PRESENCE_REFRESH seconds, and a mark not refreshed for
PRESENCE_TTL seconds is gone. The cache must be shared by every web process (Redis, or the
file cache of the embedded default: crm/settings.py), or people in another process are not
seen."""

from __future__ import annotations

import time

from django.core.cache import cache

PRESENCE_TTL = 30  # seconds a mark lives without a refresh
PRESENCE_REFRESH = 10  # seconds between refreshes from an open page


def conversation_key(message) -> str:
    """A conversation is a thread of one mailbox (the unit the conversation page shows)."""
    thread = message.thread_id or f"m{message.pk}"
    return f"relay:presence:{message.mailbox_id}:{thread}"


def presence_touch(*, user, message, composing: bool, now: float | None = None) -> None:
    """Mark `user` as on this conversation (writing a reply when `composing`). One cache
    entry per conversation holds everyone's marks; a lost concurrent update costs at most one
    refresh interval, and expired marks are dropped on every write."""
    now = time.time() if now is None else now
    key = conversation_key(message)
    marks = {
        uid: mark for uid, mark in (cache.get(key) or {}).items() if mark["at"] > now - PRESENCE_TTL
    }
    name = user.get_full_name() or user.get_username()
    previous = marks.get(str(user.pk), {})
    marks[str(user.pk)] = {
        "name": name,
        "at": now,
        # Writing a reply is marked from the compose page; the conversation page of the same
        # user does not clear it while the reply is still being written.
        "composing_at": now if composing else previous.get("composing_at", 0),
    }
    cache.set(key, marks, PRESENCE_TTL)


def presence_done_writing(*, user, message) -> None:
    """The reply was sent: the user is no longer writing one (still viewing, if they are)."""
    key = conversation_key(message)
    marks = cache.get(key) or {}
    if str(user.pk) in marks:
        marks[str(user.pk)]["composing_at"] = 0
        cache.set(key, marks, PRESENCE_TTL)


def presence_others(*, user, message, now: float | None = None) -> list[dict]:
    """The other users on this conversation: [{"name", "composing"}], by name."""
    now = time.time() if now is None else now
    marks = cache.get(conversation_key(message)) or {}
    others = [
        {"name": mark["name"], "composing": mark.get("composing_at", 0) > now - PRESENCE_TTL}
        for uid, mark in marks.items()
        if uid != str(user.pk) and mark["at"] > now - PRESENCE_TTL
    ]
    return sorted(others, key=lambda o: o["name"])
