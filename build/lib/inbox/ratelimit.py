"""Rate limits kept in the cache: connection tests per user and per host, Reconnect attempts and
refused logins per mailbox. A test must not become a port scanner or a password oracle, and a
provider locks an account that keeps failing (docs/reliability.md C-08, C-09)."""

from __future__ import annotations

import hashlib

from django.core.cache import cache

TEST_LIMIT_PER_USER = (10, 60)  # attempts, seconds
TEST_LIMIT_PER_HOST = (30, 60)

# Reconnect attempts per user and mailbox, and refused logins before we stop
# trying for a while (a provider locks an account that keeps failing).
# A try is a test and a Reconnect (2 attempts); a few typos must still fit, while providers
# commonly lock an account after 5 to 10 refused logins in a row.
RECONNECT_LIMIT = (10, 15 * 60)
RECONNECT_AUTH_FAILURES = (4, 15 * 60)


def hit(key: str, limit: int, window: int) -> bool:
    """Count one attempt under `key`; False once more than `limit` fell in the window."""
    cache.add(key, 0, window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)
        count = 1
    return count <= limit


def over(key: str, limit: int) -> bool:
    return (cache.get(key) or 0) >= limit


def test_allowed(user, host: str) -> bool:
    per_user = hit(f"relay:mbtest:user:{user.pk}", *TEST_LIMIT_PER_USER)
    # Hashed: a host name may hold characters some cache backends refuse in keys.
    target = hashlib.sha256(host.strip().lower().encode()).hexdigest()[:32]
    per_host = hit(f"relay:mbtest:host:{target}", *TEST_LIMIT_PER_HOST)
    return per_user and per_host


TOO_MANY_TESTS = "Too many connection tests in a short time. Wait a minute and try again."
