"""Services that write inbox state. Keyword-only, transactional; bad input raises
ValidationError before anything is saved."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Mailbox, PrimaryMailbox
from .permissions import readable_mailboxes
from .signals import sync_requested


@transaction.atomic
def mailbox_set_primary(*, user, mailbox: Mailbox) -> PrimaryMailbox:
    """Make `mailbox` the user's primary one (one per user: the row is keyed by the user)."""
    if not readable_mailboxes(user).filter(pk=mailbox.pk).exists():
        raise ValidationError("You can only make one of your own mailboxes primary.")
    primary, _ = PrimaryMailbox.objects.update_or_create(user=user, defaults={"mailbox": mailbox})
    return primary


def mailboxes_for_user(*, user) -> list[Mailbox]:
    """The user's readable mailboxes, primary first, then by address."""
    mailboxes = list(readable_mailboxes(user).order_by("email_address", "pk"))
    primary_id = (
        PrimaryMailbox.objects.filter(user=user).values_list("mailbox_id", flat=True).first()
    )
    mailboxes.sort(key=lambda m: m.pk != primary_id)
    return mailboxes


def mailbox_request_sync(*, mailbox: Mailbox) -> None:
    """ "Sync now": record the wish (the beat tick honours it even if the signal is lost)."""
    Mailbox.objects.filter(pk=mailbox.pk).update(sync_requested_at=timezone.now())
    transaction.on_commit(lambda: sync_requested.send(sender=Mailbox, mailbox_id=mailbox.pk))


def mailbox_pause(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.PAUSED)


def mailbox_resume(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk, state=Mailbox.State.PAUSED).update(
        state=Mailbox.State.ACTIVE, next_sync_at=None, consecutive_failures=0
    )


# --- two-way changes: written here as PendingChange rows, applied to the server by the sync --

_FLAG_EFFECT = {
    "mark_read": ("\\Seen", True),
    "mark_unread": ("\\Seen", False),
    "flag": ("\\Flagged", True),
    "unflag": ("\\Flagged", False),
}


def _server_locations(message):
    from .models import Location

    return list(
        Location.objects.filter(message=message, folder__is_local=False).select_related("folder")
    )


@transaction.atomic
def message_change_flag(*, user, message, action: str) -> int:
    """Mark read/unread or flag/unflag `message` (already permission-checked by the caller).
    The local state changes at once; each server copy gets a pending change. Returns how many
    server writes were queued."""
    from .models import Location, Message, PendingChange

    if action not in _FLAG_EFFECT:
        raise ValidationError(f"Unknown action {action!r}.")
    flag, on = _FLAG_EFFECT[action]
    locations = _server_locations(message)
    for location in locations:
        flags = set(location.flags)
        flags.add(flag) if on else flags.discard(flag)
        location.flags = sorted(flags)
    Location.objects.bulk_update(locations, ["flags"])
    field = "seen" if flag == "\\Seen" else "flagged"
    Message.objects.filter(pk=message.pk).update(**{field: on})
    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=action,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


@transaction.atomic
def message_move(*, user, message, target_folder) -> int:
    """Move every server copy of `message` to `target_folder` (a Folder of the same mailbox)."""
    from .models import PendingChange

    if target_folder.mailbox_id != message.mailbox_id or target_folder.is_local:
        raise ValidationError("Pick a folder of this mailbox on the server.")
    locations = [loc for loc in _server_locations(message) if loc.folder_id != target_folder.pk]
    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=PendingChange.Action.MOVE,
                target_folder=target_folder.name,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


@transaction.atomic
def message_delete(*, user, message) -> int:
    """Delete = move to Trash on the server (expunge only when there is no Trash). The message
    stays in the CRM, filed where it was, marked no longer on the server once it is gone."""
    from .models import PendingChange

    locations = _server_locations(message)
    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=PendingChange.Action.DELETE,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)
