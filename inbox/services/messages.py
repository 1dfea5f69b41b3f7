"""Two-way changes a person makes to a message (read, unread, flag, move, delete): written here
at once, and queued as PendingChange rows that the next sync writes to the server
(connector/sync/writeback.py).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Location, Message, PendingChange
from ..selectors.conversations import pending_change_retryable
from .mailboxes import mailbox_request_sync

_FLAG_EFFECT = {
    "mark_read": ("\\Seen", True),
    "mark_unread": ("\\Seen", False),
    "flag": ("\\Flagged", True),
    "unflag": ("\\Flagged", False),
}


def _server_locations(message):

    return list(
        Location.objects.filter(message=message, folder__is_local=False).select_related("folder")
    )


def _queue_server_changes(*, user, message, locations, action: str, target: str = "") -> int:
    """One pending change per server copy, and a sync to write them: the sync engine applies
    them before it reads anything (connector/sync/writeback.py push_pending_changes)."""

    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=action,
                target_folder=target,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


@transaction.atomic
def message_change_flag(*, user, message, action: str, write: bool = True) -> int:
    """Mark read/unread or flag/unflag `message` (already permission-checked by the caller).
    The local state changes at once; each server copy gets a pending change, unless `write`
    is off (\\Seen on a mailbox that keeps reading to Relay, docs/product.md §7.8). Returns
    how many server writes were queued."""

    if action not in _FLAG_EFFECT:
        raise ValidationError(f"Unknown action {action!r}.")
    flag, on = _FLAG_EFFECT[action]
    locations = _server_locations(message)
    for location in locations:
        flags = set(location.flags)
        flags.add(flag) if on else flags.discard(flag)
        location.flags = sorted(flags)
    field = "seen" if flag == "\\Seen" else "flagged"
    Message.objects.filter(pk=message.pk).update(**{field: on})
    if not write:
        return 0
    Location.objects.bulk_update(locations, ["flags"])
    return _queue_server_changes(user=user, message=message, locations=locations, action=action)


@transaction.atomic
def message_move(*, user, message, target_folder) -> int:
    """Move every server copy of `message` to `target_folder` (a Folder of the same mailbox)."""

    if target_folder.mailbox_id != message.mailbox_id or target_folder.is_local:
        raise ValidationError("Pick a folder of this mailbox on the server.")
    locations = [loc for loc in _server_locations(message) if loc.folder_id != target_folder.pk]
    return _queue_server_changes(
        user=user,
        message=message,
        locations=locations,
        action=PendingChange.Action.MOVE,
        target=target_folder.name,
    )


@transaction.atomic
def message_delete(*, user, message) -> int:
    """Delete = move to Trash on the server (expunge only when there is no Trash). The message
    stays in the CRM, filed where it was, marked no longer on the server once it is gone."""

    return _queue_server_changes(
        user=user,
        message=message,
        locations=_server_locations(message),
        action=PendingChange.Action.DELETE,
    )


@transaction.atomic
def pending_change_retry(*, user, change: PendingChange) -> None:
    """Retry a server write that failed (docs/reliability.md X-19): the same change is queued
    again, once however often Retry is pressed (a conditional UPDATE), and a sync asked for."""

    change = PendingChange.objects.select_related("location", "mailbox").get(pk=change.pk)
    if change.done_at is None:
        return  # queued already (Retry pressed twice)
    if not pending_change_retryable(change):
        raise ValidationError("This change can no longer be written: the message has moved.")
    queued = (
        PendingChange.objects.filter(pk=change.pk, done_at__isnull=False)
        .exclude(error="")
        .update(done_at=None, error="", created_by=user)
    )
    if queued:
        mailbox_request_sync(mailbox=change.mailbox)
