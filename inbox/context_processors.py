"""Template context for every page: the Reconnect banner (docs/product.md §2.5)."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from .selectors.mailboxes import reconnect_banner_mailboxes


def reconnect_banner(request) -> dict:
    """Mailboxes the signed-in user must reconnect: their own personal ones, and shared ones
    for admins. Lazy, so an htmx partial that never shows the banner costs no query; a full
    page costs one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"reconnect_banner": []}
    return {"reconnect_banner": SimpleLazyObject(lambda: reconnect_banner_mailboxes(user))}
