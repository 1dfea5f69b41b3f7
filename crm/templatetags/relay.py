"""Template helpers for the CRM pages: navigation state and coloured badges for choices."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

register = template.Library()

# Bootstrap colour per choice value. Colour carries meaning at a glance (red: act now, green:
# done, grey: over), so the same word is the same colour on every page.
BADGE_COLOURS: dict[tuple[str, str], dict[str, str]] = {
    ("ticket", "status"): {
        "open": "primary",
        "pending": "warning",
        "resolved": "success",
        "closed": "secondary",
    },
    ("ticket", "priority"): {
        "low": "secondary",
        "normal": "info",
        "high": "warning",
        "urgent": "danger",
    },
    ("lead", "status"): {
        "new": "info",
        "contacted": "primary",
        "qualified": "success",
        "lost": "secondary",
        "converted": "dark",
    },
    ("opportunity", "stage"): {
        "prospecting": "info",
        "qualification": "primary",
        "proposal": "warning",
        "negotiation": "warning",
        "won": "success",
        "lost": "secondary",
    },
}


@register.simple_tag
def badge(record, field: str):
    """`{% badge ticket "priority" %}` -> a pill with the choice's label in its colour."""
    value = getattr(record, field)
    label = getattr(record, f"get_{field}_display")()
    colour = BADGE_COLOURS.get((record.record_type, field), {}).get(value, "secondary")
    return format_html(
        '<span class="badge rounded-pill bg-{0}-subtle text-{0}-emphasis border '
        'border-{0}-subtle" data-value="{1}">{2}</span>',
        colour,
        value,
        label,
    )


@register.simple_tag(takes_context=True)
def nav_active(context, name: str) -> str:
    """ "active" when the current page belongs to record type `name` (contact_list, ...)."""
    match = getattr(context.get("request"), "resolver_match", None)
    if match and match.url_name and match.url_name.startswith(f"{name}_"):
        return "active"
    if match and match.url_name == name:
        return "active"
    return ""


@register.filter
def user_label(user) -> str:
    if not user:
        return ""
    return user.get_full_name() or user.get_username()


@register.filter
def may_use_admin(user) -> bool:
    """Whether the admin site would show this user anything: staff with at least one permission
    (a superuser has all). Staff without any would only find an empty admin, so no Admin link."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return user.is_superuser or bool(user.get_all_permissions())
