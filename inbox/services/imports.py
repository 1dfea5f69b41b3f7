"""Importing .mbox and .eml files by upload (docs/product.md §3.10).

Whoever manages a mailbox (its owner for a personal one, admins for a shared one:
inbox/permissions.py can_manage_mailbox) uploads the files on its settings page; this service
checks them, moves them where workers can read them (MEDIA_ROOT/imports/, private like the rest
of the data folder) and writes an ImportJob; the engine imports it (connector/sync/importer.py)
through the same parser, store and filing as the sync. The upload itself never passes through
memory whole: inbox/uploads.py writes it to disk as it arrives and stops counting at
RELAY_IMPORT_MAX_BYTES (docs/reliability.md I-11)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from .. import ports
from ..models import ImportJob, Mailbox
from ..permissions import can_manage_mailbox

audit = logging.getLogger("relay.audit")

IMPORT_SUFFIXES = (".mbox", ".mbx", ".eml")
ROOT = "imports"
# Recent imports shown on the settings page.
RECENT = 5


def too_large_message() -> str:
    return (
        f"The files are larger than {filesizeformat(settings.RELAY_IMPORT_MAX_BYTES)} in all, "
        "the most one import takes. Split the mbox file or import fewer at a time."
    )


def _check_file(upload: UploadedFile) -> str:
    """The upload's kind ("mbox" or "eml"), or a ValidationError naming the file."""
    name = upload.name or "the file"
    suffix = Path(name).suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise ValidationError(f"{name} is not an .mbox or .eml file.")
    if not upload.size:
        raise ValidationError(f"{name} is empty.")
    upload.seek(0)
    start = upload.read(1024)
    upload.seek(0)
    if suffix in (".mbox", ".mbx"):
        if not start.startswith(b"From "):
            raise ValidationError(
                f'{name} is not an mbox file: an mbox begins with a "From " line. '
                "Export the mailbox again as .mbox, or upload its messages as .eml files."
            )
        return "mbox"
    if b":" not in start.split(b"\n", 1)[0]:
        raise ValidationError(
            f"{name} is not an email: an .eml file begins with headers such as From: or Received:."
        )
    return "eml"


def import_start(*, user, mailbox: Mailbox, files: list[UploadedFile]) -> ImportJob:
    """Check the uploaded files, keep them for the engine and queue their import. Nothing is
    kept when any file is refused: the person fixes it and uploads again."""
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not import into this mailbox.")
    if not files:
        raise ValidationError("Choose an .mbox file or one or more .eml files.")
    if sum(upload.size or 0 for upload in files) > settings.RELAY_IMPORT_MAX_BYTES:
        raise ValidationError(too_large_message())
    kinds = [_check_file(upload) for upload in files]
    token = secrets.token_hex(8)
    relative = f"{ROOT}/{mailbox.pk}-{token}"
    directory = Path(settings.MEDIA_ROOT) / relative
    directory.mkdir(mode=0o700, parents=True)
    try:
        for index, (upload, kind) in enumerate(zip(files, kinds, strict=True)):
            _keep(upload, directory / f"{index}-{kind}.{kind}")
        with transaction.atomic():
            job = ImportJob.objects.create(
                mailbox=mailbox,
                created_by=user,
                file_names=[Path(upload.name).name[:200] for upload in files],
                directory=relative,
                size=sum(upload.size or 0 for upload in files),
            )
            audit.warning(
                "mailbox=%s %s: import %s of %s file(s) started by user=%s",
                mailbox.pk,
                mailbox.email_address,
                job.pk,
                len(files),
                user.pk,
            )
            ports.mail().import_soon(job.pk)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return job


def _keep(upload: UploadedFile, target: Path) -> None:
    """Move the upload to `target`: a hard link of the file on disk when it can be, a copy
    otherwise (never read into memory whole)."""
    source = getattr(upload, "temporary_file_path", None)
    if source is not None:
        try:
            os.link(source(), target)
            os.chmod(target, 0o600)
            return
        except OSError:
            pass
    upload.seek(0)
    with open(target, "xb") as out:
        os.chmod(target, 0o600)
        for chunk in upload.chunks():
            out.write(chunk)


def recent_imports(mailbox: Mailbox) -> list[ImportJob]:
    return list(ImportJob.objects.filter(mailbox=mailbox).order_by("-created_at", "-id")[:RECENT])
