"""CRM -> server: what people did in the CRM (read/unread, flag, move, delete), queued as
PendingChange rows by inbox services, written to the server at the start of a sync.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from connector.sync.folders import mark_off_server
from connector.transport.errors import MailError, TemporaryFailure
from inbox.models import Folder, Location, Mailbox, PendingChange

# The result of a delete or move that a server without UIDPLUS and MOVE could not finish: the
# message was copied (to Trash or the target) and flagged, but a plain EXPUNGE would also remove
# what other clients only flagged \Deleted, so it is never sent (docs/reliability.md S-30).
LEFT_FLAGGED = "flagged for deletion; the server lacks UIDPLUS, so it was not expunged"

_FLAG_ACTIONS = {
    PendingChange.Action.MARK_READ: ("+", "\\Seen"),
    PendingChange.Action.MARK_UNREAD: ("-", "\\Seen"),
    PendingChange.Action.FLAG: ("+", "\\Flagged"),
    PendingChange.Action.UNFLAG: ("-", "\\Flagged"),
}


def push_pending_changes(mailbox: Mailbox, session, folders: list[Folder]) -> int:
    """Write what people did in the CRM to the server, as flag deltas (+FLAGS.SILENT /
    -FLAGS.SILENT: never a full FLAGS replace that would clobber other clients,
    docs/reliability.md S-16)."""
    pending = list(PendingChange.objects.filter(mailbox=mailbox, done_at__isnull=True))
    if not pending:
        return 0
    by_name = {f.name: f for f in folders}
    trash = next((f for f in folders if f.special_use == Folder.SpecialUse.TRASH), None)
    done = 0
    for folder_name in dict.fromkeys(p.folder_name for p in pending):
        changes = [p for p in pending if p.folder_name == folder_name]
        folder = by_name.get(folder_name)
        if folder is None:
            if mailbox.folders.filter(
                name=folder_name, is_local=False, exists_on_server=True
            ).exists():
                continue  # left out of this LIST only: the next sync (docs/reliability.md S-31)
            _finish(changes, error="the folder no longer exists on the server")
            continue
        status = session.select(folder_name, readonly=False)
        for change in changes:
            if change.uidvalidity != status.uidvalidity:
                _finish([change], error="the folder was reset on the server; change dropped")
                continue
            try:
                if change.action in _FLAG_ACTIONS:
                    sign, flag = _FLAG_ACTIONS[change.action]
                    session.store_flags([change.uid], sign, [flag])
                elif change.action == PendingChange.Action.MOVE:
                    if change.target_folder not in by_name:
                        _finish([change], error="the target folder does not exist")
                        continue
                    session.move([change.uid], change.target_folder)
                    removed = session.moves_whole
                elif change.action == PendingChange.Action.DELETE:
                    if trash is not None and trash.name != folder_name:
                        session.move([change.uid], trash.name)
                        removed = session.moves_whole
                    else:
                        session.store_flags([change.uid], "+", ["\\Deleted"])
                        removed = session.expunge_uids([change.uid])
                if change.action in (PendingChange.Action.MOVE, PendingChange.Action.DELETE):
                    if not removed:
                        # No UID EXPUNGE and no MOVE: the copy stays in its folder flagged
                        # \Deleted, and the change says so (docs/reliability.md S-30).
                        _mark_deleted(folder, change)
                        _finish([change], error=LEFT_FLAGGED)
                        done += 1
                        continue
                    # Moved (to its target or to Trash) it is still on the server, in a folder
                    # that may not be synced; only an expunge takes it off (docs/reliability.md
                    # S-35).
                    moved = change.action == PendingChange.Action.MOVE or (
                        trash is not None and trash.name != folder_name
                    )
                    _drop_location(folder, change, off_server=not moved)
            except TemporaryFailure:
                raise
            except MailError as exc:
                _finish([change], error=str(exc))
                continue
            _finish([change])
            done += 1
    return done


def _mark_deleted(folder: Folder, change: PendingChange) -> None:
    """The location stays (the message is still in the folder) with the flag the server has."""
    for location in Location.objects.filter(
        folder=folder, uidvalidity=change.uidvalidity, uid=change.uid
    ):
        if "\\Deleted" not in location.flags:
            location.flags = sorted([*location.flags, "\\Deleted"])
            location.save(update_fields=["flags"])


def _drop_location(folder: Folder, change: PendingChange, *, off_server: bool) -> None:
    with transaction.atomic():
        message_ids = list(
            Location.objects.filter(
                folder=folder, uidvalidity=change.uidvalidity, uid=change.uid
            ).values_list("message_id", flat=True)
        )
        Location.objects.filter(
            folder=folder, uidvalidity=change.uidvalidity, uid=change.uid
        ).delete()
        if off_server:
            mark_off_server(message_ids)


def _finish(changes: Sequence[PendingChange], *, error: str = "") -> None:
    PendingChange.objects.filter(pk__in=[c.pk for c in changes]).update(
        done_at=timezone.now(), error=error[:2000]
    )
