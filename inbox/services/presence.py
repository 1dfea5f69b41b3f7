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


def _mark_key(message, user_id) -> str:
    return f"{conversation_key(message)}:{user_id}"


def presence_touch(*, user, message, composing: bool, now: float | None = None) -> None:
    """Mark `user` as on this conversation (writing a reply when `composing`). Each user's mark
    is a cache entry of its own, written only by that user's requests, so one person's refresh
    never undoes another's change (a shared entry did: a colleague's refresh could put back a
    "writing" that sending had just cleared). The conversation's entry lists who has a mark."""
    now = time.time() if now is None else now
    uid = str(user.pk)
    key = _mark_key(message, uid)
    previous = cache.get(key) or {}
    if composing and now - previous.get("done_at", 0) < PRESENCE_REFRESH:
        # A compose page's refresh that left before its reply was sent: the reply is out.
        composing = False
    cache.set(
        key,
        {
            "name": user.get_full_name() or user.get_username(),
            "at": now,
            # Writing a reply is marked from the compose page; the conversation page of the
            # same user does not clear it while the reply is still being written.
            "composing_at": now if composing else previous.get("composing_at", 0),
            "done_at": previous.get("done_at", 0),
        },
        PRESENCE_TTL,
    )
    roster_key = conversation_key(message)
    roster = cache.get(roster_key) or []
    if uid not in roster:
        # Read-modify-write of the list of names: a lost addition is redone by the next refresh.
        cache.set(roster_key, [*roster, uid][-50:], PRESENCE_TTL)
    else:
        cache.touch(roster_key, PRESENCE_TTL)


def presence_done_writing(*, user, message, now: float | None = None) -> None:
    """The reply was sent: the user is no longer writing one (still viewing, if they are)."""
    now = time.time() if now is None else now
    key = _mark_key(message, user.pk)
    mark = cache.get(key)
    if mark is not None:
        cache.set(key, {**mark, "composing_at": 0, "done_at": now}, PRESENCE_TTL)


def presence_others(*, user, message, now: float | None = None) -> list[dict]:
    """The other users on this conversation: [{"name", "composing"}], by name."""
    now = time.time() if now is None else now
    roster = [uid for uid in cache.get(conversation_key(message)) or [] if uid != str(user.pk)]
    marks = cache.get_many([_mark_key(message, uid) for uid in roster]).values()
    others = [
        {"name": mark["name"], "composing": mark.get("composing_at", 0) > now - PRESENCE_TTL}
        for mark in marks
        if mark["at"] > now - PRESENCE_TTL
    ]
    return sorted(others, key=lambda o: o["name"])
