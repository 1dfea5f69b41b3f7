"""Who else has a conversation open, and who is writing a reply to it right now
(docs/product.md §5.4). Kept in Django's cache only, with a short time-to-live: each open page
refreshes its user's mark every PRESENCE_REFRESH seconds, and a mark not refreshed for
PRESENCE_TTL seconds is gone. The cache must be shared by every web process (Redis, or the
file cache of the embedded default: crm/settings.py), or people in another process are not
seen.

Viewing and writing are separate entries. "Writing" belongs to one composer (the compose
page, or the inline reply under the thread), named by a token the page was rendered with:
leaving that composer (sending, discarding, closing it) ends the token at once, and a refresh
from an ended composer that arrives late never puts "writing" back (docs/reliability.md X-21).
"""

from __future__ import annotations

import secrets
import time

from django.core.cache import cache

PRESENCE_TTL = 30  # seconds a mark lives without a refresh
PRESENCE_REFRESH = 10  # seconds between refreshes from an open page
# While a colleague is writing, their mark is watched closely: the moment they send or leave
# the composer shows on the others' pages within this many seconds, not at the next refresh.
PRESENCE_WATCH_REFRESH = 2
ANY_COMPOSER = "-"  # a composer that came without a token (an old page, a plain request)


def composer_token() -> str:
    """A new composer's name, rendered into its page (compose form and presence poller)."""
    return secrets.token_urlsafe(9)


def conversation_key(message) -> str:
    """A conversation is a thread of one mailbox (the unit the conversation page shows)."""
    thread = message.thread_id or f"m{message.pk}"
    return f"relay:presence:{message.mailbox_id}:{thread}"


def _mark_key(message, user_id) -> str:
    return f"{conversation_key(message)}:{user_id}"


def _writing_key(message, user_id) -> str:
    return f"{_mark_key(message, user_id)}:writing"


def _ended_key(message, user_id, token: str) -> str:
    return f"{_mark_key(message, user_id)}:ended:{token}"


def presence_touch(
    *, user, message, composing: bool, composer: str = "", now: float | None = None
) -> None:
    """Mark `user` as on this conversation, and as writing a reply when `composing` (from
    the composer named `composer`). Each user's entries are written only by that user's
    requests, so one person's refresh never undoes another's change. A composer that was
    ended (presence_done_writing) stays ended, whatever order the requests land in: the
    writing entry is set first and the end checked after, while ending sets the end first
    and deletes the writing entry after, so the last of them always leaves no "writing"."""
    now = time.time() if now is None else now
    uid = str(user.pk)
    token = composer or ANY_COMPOSER
    cache.set(
        _mark_key(message, uid),
        {"name": user.get_full_name() or user.get_username(), "at": now},
        PRESENCE_TTL,
    )
    writing_key = _writing_key(message, uid)
    if composing:
        cache.set(writing_key, {"composer": token, "at": now}, PRESENCE_TTL)
        if cache.get(_ended_key(message, uid, token)):
            _clear_writing(writing_key, token)
    elif composer:
        # This composer is open but folded away (the inline reply closed): not writing.
        _clear_writing(writing_key, token)
    roster_key = conversation_key(message)
    roster = cache.get(roster_key) or []
    if uid not in roster:
        # Read-modify-write of the list of names: a lost addition is redone by the next refresh.
        cache.set(roster_key, [*roster, uid][-50:], PRESENCE_TTL)
    else:
        cache.touch(roster_key, PRESENCE_TTL)


def _clear_writing(writing_key: str, token: str) -> None:
    current = cache.get(writing_key)
    if current is not None and current.get("composer") == token:
        cache.delete(writing_key)


def presence_done_writing(*, user, message, composer: str = "", now: float | None = None) -> None:
    """The person left the composer: sent the reply, discarded it or closed the page. They
    are no longer writing (still viewing, if they are), at once. With the composer's token
    that composer can never mark "writing" again; without one (a discard from the Drafts
    page), whatever composer was writing is cleared and a still-open one marks itself again
    at its next refresh."""
    uid = str(user.pk)
    writing_key = _writing_key(message, uid)
    if composer:
        cache.set(_ended_key(message, uid, composer), 1, PRESENCE_TTL * 2)
        _clear_writing(writing_key, composer)
    else:
        cache.delete(writing_key)


def presence_others(*, user, message, now: float | None = None) -> list[dict]:
    """The other users on this conversation: [{"name", "composing"}], by name."""
    now = time.time() if now is None else now
    roster = [uid for uid in cache.get(conversation_key(message)) or [] if uid != str(user.pk)]
    keys = {uid: (_mark_key(message, uid), _writing_key(message, uid)) for uid in roster}
    found = cache.get_many([key for pair in keys.values() for key in pair])
    others = []
    for mark_key, writing_key in keys.values():
        mark, writing = found.get(mark_key), found.get(writing_key)
        if mark is None or mark["at"] <= now - PRESENCE_TTL:
            continue
        composing = writing is not None and writing["at"] > now - PRESENCE_TTL
        others.append({"name": mark["name"], "composing": composing})
    return sorted(others, key=lambda o: o["name"])


def presence_refresh_for(others: list[dict]) -> int:
    """Seconds until the page asks again: sooner while someone else is writing, so that their
    sending or leaving shows promptly."""
    return PRESENCE_WATCH_REFRESH if any(o["composing"] for o in others) else PRESENCE_REFRESH
