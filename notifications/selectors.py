"""What the notification pages read (one query each)."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Digest, Kind, Notification, Preference


def unread_count(*, user) -> int:
    return Notification.objects.filter(recipient=user, in_app=True, read_at__isnull=True).count()


def notifications_for(*, user) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=user, in_app=True).select_related("actor")


def preferences_for(*, user) -> list[dict]:
    """Every kind with its two switches (on unless the user switched it off)."""
    saved = {p.kind: p for p in Preference.objects.filter(user=user)}
    rows = []
    for kind in Kind:
        pref = saved.get(kind.value)
        rows.append(
            {
                "kind": kind.value,
                "label": kind.label,
                "in_app": pref.in_app if pref else True,
                "email": pref.email if pref else True,
            }
        )
    return rows


def recent_digests(*, user, limit: int = 10) -> list[Digest]:
    return list(Digest.objects.filter(recipient=user)[:limit])
