"""The inbox sidebar's "Mentions" view (docs/product.md §7.8, §7.9): conversations of the
mailbox with a note that mentions me. Registered with inbox/selectors/conversations.py
register_view when the app is ready, so inbox never imports this app."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from inbox.selectors.conversations import ConversationView, register_view

from .models import Mention


def mentioned(user, now) -> Q:
    return Q(Exists(Mention.objects.filter(note__thread=OuterRef("pk"), user=user)))


def register() -> None:
    register_view(ConversationView("mentions", "Mentions", mentioned), after="done")
