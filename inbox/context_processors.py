"""Template context for every page: the Reconnect banner (docs/product.md §2.5), the
banner of mail that did not go out (docs/product.md §5.4), two banners because "new mail
stops arriving" and "your mail did not leave" are different problems, and the banner of the
site's mail switch when an administrator turned it off (docs/product.md §8.1)."""

from __future__ import annotations

from django.core.handlers.asgi import ASGIRequest
from django.utils.functional import SimpleLazyObject

from crm.selectors import mail_switched_off

from . import live
from .selectors.mailboxes import reconnect_banner_mailboxes
from .selectors.outbox import problem_count


def reconnect_banner(request) -> dict:
    """Mailboxes the signed-in user must reconnect: their own personal ones, and shared ones
    for admins. Lazy, so an htmx partial that never shows the banner costs no query; a full
    page costs one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {
            "reconnect_banner": [],
            "outbox_problems": 0,
            "live_events": False,
            "mail_off": None,
        }
    return {
        # The page opens the live-update stream only where there is one: Redis, and an ASGI
        # server to hold it (docs/product.md §7.14); otherwise it polls, and no request is
        # wasted finding that out.
        "live_events": live.enabled() and isinstance(request, ASGIRequest),
        "reconnect_banner": SimpleLazyObject(lambda: reconnect_banner_mailboxes(user)),
        # A count, one query on a full page; the Outbox page itself needs no banner.
        "outbox_problems": SimpleLazyObject(lambda: problem_count(user)),
        # One query on a full page: everyone is told that nothing arrives or leaves.
        "mail_off": SimpleLazyObject(mail_switched_off),
    }
