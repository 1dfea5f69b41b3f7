"""The mailbox's folders as the server lists them: new ones, renamed ones (same UIDVALIDITY under a
new name, docs/reliability.md S-04), and ones gone from the server, whose locations go while
their messages stay (S-03, S-15).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Exists, OuterRef

from connector.transport.imap import FolderInfo
from inbox.models import Folder, Location, Mailbox, Message

log = logging.getLogger(__name__)
DEFAULT_ACTIVE = ("inbox", "sent")


def discover_folders(mailbox: Mailbox, session) -> list[Folder]:
    infos: list[FolderInfo] = session.list_folders()
    known = {f.name: f for f in mailbox.folders.filter(is_local=False)}
    wanted = set(mailbox.active_folders or [])
    on_server = {info.name for info in infos}
    vanished = {name: f for name, f in known.items() if name not in on_server and f.uidvalidity}
    result = []
    for info in infos:
        folder = known.get(info.name)
        if folder is None and vanished and info.selectable:
            # Renamed by another client? Dovecot (and most servers) keep UIDVALIDITY across a
            # RENAME, so the same UIDVALIDITY under a new name is the same folder
            # (docs/reliability.md S-04).
            status = session.status(info.name)
            renamed = next(
                (f for f in vanished.values() if f.uidvalidity == status.uidvalidity), None
            )
            if renamed is not None:
                del vanished[renamed.name]
                old_name = renamed.name
                renamed.name = info.name
                folder = renamed
                if old_name in wanted:
                    wanted.discard(old_name)
                    wanted.add(info.name)
                    Mailbox.objects.filter(pk=mailbox.pk).update(active_folders=sorted(wanted))
                    mailbox.active_folders = sorted(wanted)
                log.info("folder renamed mailbox=%s %r -> %r", mailbox.pk, old_name, info.name)
        if folder is None:
            folder = Folder(mailbox=mailbox, name=info.name)
        folder.delimiter = info.delimiter or ""
        folder.special_use = info.special_use or ""
        folder.is_selectable = info.selectable
        folder.exists_on_server = True
        if wanted:
            folder.is_active = info.name in wanted
        elif folder.pk is None:
            folder.is_active = folder.special_use in DEFAULT_ACTIVE or info.name.upper() == "INBOX"
        folder.save()
        result.append(folder)
    if not wanted:
        names = sorted(f.name for f in result if f.is_active)
        Mailbox.objects.filter(pk=mailbox.pk).update(active_folders=names)
        mailbox.active_folders = names
    Folder.objects.filter(pk__in=[f.pk for f in vanished.values()]).update(
        exists_on_server=False, is_active=False
    )
    return result


def forget_vanished_folders(mailbox: Mailbox) -> None:
    """Locations of folders deleted on the server go; their messages stay (docs/reliability.md S-03,
    S-15)."""
    gone = Location.objects.filter(folder__mailbox=mailbox, folder__exists_on_server=False)
    message_ids = list(gone.values_list("message_id", flat=True).distinct())
    if message_ids:
        with transaction.atomic():
            gone.delete()
            mark_off_server(message_ids)


def mark_off_server(message_ids: Iterable[int]) -> None:
    Message.objects.filter(pk__in=list(message_ids)).exclude(
        Exists(Location.objects.filter(message=OuterRef("pk")))
    ).update(on_server=False)
