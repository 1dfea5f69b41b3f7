"""Notes follow their conversation when the threader merges it into another
(inbox/signals.py threads_merged; connector/ingest/threads.py deletes the emptied threads
without a cascade, so no note may be left pointing at one)."""

from __future__ import annotations

from django.db.models import Case, When
from django.dispatch import receiver

from inbox.signals import threads_merged

from .models import Note


@receiver(threads_merged)
def move_notes_to_the_joined_conversation(sender, moves: dict[int, int], **kwargs) -> None:
    if not moves:
        return
    Note.objects.filter(thread_id__in=moves).update(
        thread_id=Case(*(When(thread_id=source, then=target) for source, target in moves.items()))
    )
