"""Import .mbox and .eml files into a mailbox (`manage.py mailbox import`).

Imported mail goes to a local folder (never synced with a server) with its own UID sequence,
through the same ingest as synced mail, so it is parsed, stored, threaded and filed the same
way. Importing the same file twice adds nothing: content already in the mailbox is skipped."""

from __future__ import annotations

import mailbox as mbox_lib
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.db import transaction

from connector.ingest import storage
from connector.ingest.prepare import Fetched
from connector.ingest.store import BatchResult, store_batch
from inbox.models import Folder, Mailbox, Message

LOCAL_UIDVALIDITY = 1
BATCH = 200


class ImportFileError(Exception):
    pass


def read_messages(path: Path) -> Iterator[bytes]:
    """Raw messages of one .eml or .mbox file."""
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    if path.suffix.lower() == ".eml":
        yield path.read_bytes()
        return
    if path.suffix.lower() in (".mbox", ".mbx", "") or path.is_file():
        box = mbox_lib.mbox(str(path), create=False)
        try:
            for key in box.iterkeys():
                yield box.get_bytes(key)
        finally:
            box.close()
        return
    raise ImportFileError(f"{path}: not an .mbox or .eml file")


def local_folder(mailbox: Mailbox, name: str) -> Folder:
    folder, created = Folder.objects.get_or_create(
        mailbox=mailbox,
        name=name,
        defaults={
            "is_local": True,
            "exists_on_server": False,
            "is_active": False,
            "uidvalidity": LOCAL_UIDVALIDITY,
            "special_use": {"inbox": "inbox", "sent": "sent"}.get(name.lower(), ""),
        },
    )
    if not created and not folder.is_local:
        raise ImportFileError(f"{name} is a folder on the server; import into another name.")
    return folder


def import_messages(
    mailbox: Mailbox,
    raws: Iterable[bytes],
    *,
    folder_name: str = "Imported",
    flags: Iterable[str] = ("\\Seen",),
) -> BatchResult:
    folder = local_folder(mailbox, folder_name)
    total = BatchResult()
    batch: list[bytes] = []

    def flush() -> None:
        digests = {storage.sha256(raw): raw for raw in batch}
        have = set(
            Message.objects.filter(mailbox=mailbox, sha256__in=digests).values_list(
                "sha256", flat=True
            )
        )
        fresh = [raw for digest, raw in digests.items() if digest not in have]
        total.unchanged += len(batch) - len(fresh)
        with transaction.atomic():
            folder.refresh_from_db(fields=["last_uid"])
            items = [
                Fetched(uid=folder.last_uid + i + 1, raw=raw, flags=tuple(flags))
                for i, raw in enumerate(fresh)
            ]
            total.add(
                store_batch(folder=folder, uidvalidity=LOCAL_UIDVALIDITY, items=items, lease=None)
            )
        batch.clear()

    for raw in raws:
        batch.append(raw)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return total
