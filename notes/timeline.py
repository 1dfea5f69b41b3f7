"""The record timeline's notes (crm/timeline.py, docs/product.md §7.4, §7.9): notes on a record
are seen by every signed-in user, as the record. One query whatever the number of notes."""

from __future__ import annotations

from django.urls import reverse

from crm.timeline import Cursor, Entry, register_source

from .models import Note

KIND = "note"


def note_entries(*, user, record_type: str, record_id: int, before: Cursor | None, limit: int):
    if not user.is_authenticated:
        return []
    notes = Note.objects.filter(**{f"{record_type}_id": record_id}).select_related("author")
    if before is not None:
        notes = notes.filter(before.older(KIND, "created_at"))
    notes = list(notes.order_by("-created_at", "-pk")[:limit])
    for note in notes:
        # Opens among the record's notes, a page of its own without JavaScript.
        note.timeline_url = reverse("notes:panel", args=[record_type, record_id])
    return [Entry(n.created_at, KIND, n.pk, "notes/_timeline_note.html", n) for n in notes]


def register() -> None:
    register_source(KIND, note_entries)
