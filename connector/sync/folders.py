"""The mailbox's folders as the server lists them: new ones, renamed ones (same UIDVALIDITY under a
new name, docs/reliability.md S-04), and ones gone from the server, whose locations go while
their messages stay (S-03, S-15). One LIST answer is not proof of a deletion: a folder is gone
only when two syncs in a row miss it and a STATUS of it fails (S-31).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Exists, OuterRef

from connector.transport.errors import PermanentFailure
from connector.transport.imap import FolderInfo
from inbox.models import Folder, Location, Mailbox, Message

log = logging.getLogger(__name__)
DEFAULT_ACTIVE = ("inbox", "sent")
MISSED_LISTINGS = 2  # syncs in a row whose LIST leaves a folder out before STATUS is asked


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
        folder.missed_listings = 0
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
    _confirm_vanished(mailbox, session, vanished.values())
    return result


def _confirm_vanished(mailbox: Mailbox, session, missing: Iterable[Folder]) -> None:
    """Folders this LIST left out. A server may leave one out of a single answer (a glitch, a
    proxy, a replica behind): detaching its messages on that word alone would unfile nothing but
    hide them all. A folder is taken for gone only when MISSED_LISTINGS syncs in a row missed it
    and a STATUS of it fails (docs/reliability.md S-31); a temporary failure of that STATUS
    fails the sync, which is retried, and decides nothing."""
    gone = []
    for folder in missing:
        if not folder.exists_on_server:
            continue
        missed = folder.missed_listings + 1
        if missed >= MISSED_LISTINGS and not _answers_status(session, folder.name):
            gone.append(folder.pk)
            log.info("folder gone mailbox=%s %r", mailbox.pk, folder.name)
            continue
        Folder.objects.filter(pk=folder.pk).update(missed_listings=missed)
        log.warning(
            "folder missing from LIST mailbox=%s %r (%s time(s) in a row)",
            mailbox.pk,
            folder.name,
            missed,
        )
    Folder.objects.filter(pk__in=gone).update(
        exists_on_server=False, is_active=False, missed_listings=0
    )


def _answers_status(session, name: str) -> bool:
    try:
        session.status(name)
    except PermanentFailure:
        return False  # NO [NONEXISTENT] (RFC 5530) and the like: it is not there
    return True


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
