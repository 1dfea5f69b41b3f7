"""Drafts as their author sees them (docs/product.md §5.5): the Drafts view and the draft a
conversation restores. Only ever the user's own."""

from __future__ import annotations

from ..models import Draft, Message


def drafts_for_user(*, user, limit: int = 200):
    """The user's drafts, newest first, with what the list shows in one query."""
    return (
        Draft.objects.filter(user=user, sent_entry__isnull=True)
        .select_related("mailbox", "reply_to_message")
        .order_by("-updated_at", "-id")[:limit]
    )


def draft_count(*, user) -> int:
    return Draft.objects.filter(user=user, sent_entry__isnull=True).count()


def draft_for_conversation(*, user, message: Message) -> Draft | None:
    if message.thread_id is None:
        return None
    return Draft.objects.filter(
        user=user, thread_id=message.thread_id, sent_entry__isnull=True
    ).first()
