"""What the outbox modules share: the result of one step, the clock, the timings of the state
machine, and the named points where a test stands in for a worker dying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from inbox.models import (
    OutboxEntry,
)

# How long a claimed ("sending") entry may stay so before its worker is presumed dead.
SENDING_CLAIM = dt.timedelta(minutes=10)

# Back-off after a temporary failure: 1, 2, 4 ... minutes, at most an hour; then give up.
FIRST_BACKOFF = dt.timedelta(minutes=1)
MAX_BACKOFF = dt.timedelta(hours=1)
MAX_ATTEMPTS = 12

# APPEND to Sent and storing the sent message: retried on this schedule by the beat tick.
FINISH_RETRY = dt.timedelta(minutes=2)

# How long a worker storing and APPENDing a sent entry holds it (OutboxEntry.finishing_until):
# well above an IMAP session's timeouts; a worker that dies holding it delays the Sent copy
# this long, never doubles it.
FINISH_CLAIM = dt.timedelta(minutes=5)

# How long to look for the copy a provider files in Sent itself before storing our own.
PROVIDER_COPY_WAIT = dt.timedelta(minutes=10)

# "verify" entries of providers that file SMTP-submitted mail in Sent themselves are searched
# again for this long (their copy may take a moment to appear), then left to a person.
VERIFY_FOR = dt.timedelta(minutes=30)
VERIFY_RETRY = dt.timedelta(minutes=2)

# Tests stand in for a worker dying at a named point by raising from here (a BaseException,
# so no handler below catches it): "built", "smtp_accepted", "sent_committed", "stored",
# "appended". Never set in production.
STEP_HOOK: Callable[[str, OutboxEntry], None] | None = None


def kill_point(name: str, entry: OutboxEntry) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name, entry)


@dataclass
class SendResult:
    entry_id: int
    state: str
    detail: str = ""
    recipients: dict = field(default_factory=dict)

    def summary(self) -> str:
        return f"outbox {self.entry_id}: {self.state}" + (
            f" ({self.detail})" if self.detail else ""
        )


def retry_delay(attempts: int) -> dt.timedelta:
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


# How long a dispatched entry is left alone before the tick may dispatch it again if its task
# never ran (a lost broker message delays, never drops, docs/reliability.md I-02).
DISPATCH_CLAIM = dt.timedelta(minutes=5)
