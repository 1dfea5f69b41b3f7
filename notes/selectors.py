"""Reading notes: a target's timeline, search and Mentions, each a fixed number of queries
whatever the number of notes (docs/product.md §7.9)."""

from __future__ import annotations

from django.db.models import QuerySet

from .access import Target, visible_notes, who_can_see
from .models import Note

PANEL_LIMIT = 100  # newest notes shown on a target; the rest through search

_TARGETS = ("author", "thread", "account", "contact", "lead", "ticket", "opportunity")


def notes_on(*, target: Target) -> tuple[list[Note], int]:
    """(the newest PANEL_LIMIT notes, oldest first, and how many there are in all)."""
    notes = Note.objects.filter(**{target.type: target.obj}).select_related("author")
    newest = list(notes.order_by("-created_at", "-id")[:PANEL_LIMIT])
    newest.reverse()
    return newest, notes.count()


def search_notes(*, user, query: str) -> QuerySet[Note]:
    notes = visible_notes(user).select_related(*_TARGETS).order_by("-created_at", "-id")
    if query:
        notes = notes.filter(body__icontains=query)
    return notes


def mentions_of(*, user) -> QuerySet[Note]:
    """Notes that mention `user` and that they may still see, newest first."""
    return (
        visible_notes(user)
        .filter(mentions__user=user)
        .select_related(*_TARGETS)
        .order_by("-created_at", "-id")
    )


def mention_candidates(*, target: Target, prefix: str, limit: int = 8) -> list:
    from django.db.models import Q

    users = who_can_see(target)
    if prefix:
        users = users.filter(
            Q(username__istartswith=prefix)
            | Q(first_name__istartswith=prefix)
            | Q(last_name__istartswith=prefix)
        )
    return list(users.order_by("username")[:limit])
