"""A user's inbox preferences and primary mailbox."""

from __future__ import annotations

from ..models import (
    PrimaryMailbox,
    UserPreferences,
)


def user_preferences(*, user) -> UserPreferences:
    """The user's inbox preferences; an unsaved row with the defaults until they change one
    (reading a page never writes)."""
    prefs = UserPreferences.objects.filter(user=user).first()
    return prefs or UserPreferences(user=user)


def primary_mailbox_id(*, user) -> int | None:
    return PrimaryMailbox.objects.filter(user=user).values_list("mailbox_id", flat=True).first()
