"""Writing notes (docs/product.md §7.9). A note's `@name` mentions tell those people through
notifications/services.py; a mention of someone who cannot see the target is refused, and then
nothing is saved."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q

from inbox import live
from notifications.models import Kind
from notifications.services import notify

from .access import Target, who_can_see
from .models import Mention, Note

MAX_BODY = 10_000
MAX_MENTIONS = 20
# "@lukas", "@sofia.m": a username after an @ that does not follow a letter (an address such
# as ana@example.com mentions no one). A trailing full stop ends the sentence, not the name.
MENTION = re.compile(r"(?<![\w@.+-])@([\w.+-]*[\w+-])")


def mentioned_names(body: str) -> list[str]:
    names: dict[str, None] = {}
    for name in MENTION.findall(body):
        names.setdefault(name.lower(), None)
    return list(names)


def resolve_mentions(*, target: Target, body: str) -> list:
    """The users `body` mentions, each allowed to see `target`; ValidationError naming every
    mention that is not (an unknown name, or someone the target is hidden from)."""
    names = mentioned_names(body)
    if not names:
        return []
    if len(names) > MAX_MENTIONS:
        raise ValidationError(f"A note mentions at most {MAX_MENTIONS} people.")
    query = Q()
    for name in names:
        query |= Q(username__iexact=name)
    found = {u.username.lower(): u for u in get_user_model().objects.filter(query, is_active=True)}
    candidates = who_can_see(target).filter(pk__in=[u.pk for u in found.values()])
    allowed = set(candidates.values_list("pk", flat=True))
    errors = []
    for name in names:
        user = found.get(name)
        if user is None:
            errors.append(f"No one is called @{name}: check the name.")
        elif user.pk not in allowed:
            errors.append(
                f"@{user.username} cannot see this {target.noun}, so they cannot be mentioned "
                "here. Nothing was saved."
            )
    if errors:
        raise ValidationError(errors)
    return [found[name] for name in names]


def note_create(*, author, target: Target, body: str) -> Note:
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise ValidationError("Write something first.")
    if len(body) > MAX_BODY:
        raise ValidationError(f"A note holds at most {MAX_BODY:,} characters.")
    mentioned = resolve_mentions(target=target, body=body)
    with transaction.atomic():
        note = Note.objects.create(
            author=author, body=body, target_type=target.type, **{target.type: target.obj}
        )
        Mention.objects.bulk_create([Mention(note=note, user=user) for user in mentioned])
        who = author.get_full_name() or author.get_username()
        excerpt = body if len(body) <= 120 else body[:119] + "…"
        for user in mentioned:
            notify(
                recipient=user,
                kind=Kind.MENTIONED,
                text=f"{who} mentioned you on {target.label}: “{excerpt}”",
                url=f"{target.url}#note-{note.pk}",
                key=f"note:{note.pk}",
                actor=author,
            )
        _live(target)
    return note


def note_delete(*, user, note: Note) -> None:
    """Only a note's author removes it."""
    if note.author_id != user.pk:
        raise PermissionDenied("Only its author may delete a note.")
    target = Target(type=note.target_type, obj=note.target)
    with transaction.atomic():
        note.delete()
        _live(target)


def _live(target: Target) -> None:
    """Notes are part of what open pages show (docs/product.md §7.14): a conversation's readers
    hear of a note on it through its mailbox's channel, everyone of one on a record (whoever
    may see the record, notes/access.py) through the records channel; the event names the
    target only, and the pages showing it reload it through the access-checked views. Sent
    once the note is committed (inbox/live.py)."""
    if target.type == "thread":
        live.mailbox_event(live.CONVERSATION, mailbox_id=target.obj.mailbox_id, threads=[target.pk])
    else:
        live.record_event(live.RECORD, records=[f"{target.type}:{target.pk}"])
