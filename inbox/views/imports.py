"""Importing .mbox and .eml files into a mailbox, from its settings page (docs/product.md
§3.10): the upload, and one import's progress (htmx polls it while it runs; without JavaScript
the page says to reload). Only whoever manages the mailbox (inbox/selectors/mailboxes.py
get_managed_mailbox_or_404) gets anywhere; anyone else gets the 404 of a missing mailbox."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from inbox.models import ImportJob, Mailbox
from inbox.selectors.mailboxes import get_managed_mailbox_or_404
from inbox.services import imports
from inbox.uploads import ImportSizeGuard


@csrf_exempt  # the CSRF check reads the body: it runs below, once the handlers are set
@require_POST
def import_upload(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    guard = ImportSizeGuard(request, limit=settings.RELAY_IMPORT_MAX_BYTES)
    # Straight to a file on disk, never to memory (docs/reliability.md I-11).
    request.upload_handlers = [guard, TemporaryFileUploadHandler(request)]
    return _upload(request, mailbox, guard)


@csrf_protect
def _upload(request: HttpRequest, mailbox: Mailbox, guard: ImportSizeGuard) -> HttpResponse:
    files = request.FILES.getlist("files")
    try:
        if guard.too_large:
            raise ValidationError(imports.too_large_message())
        job = imports.import_start(user=request.user, mailbox=mailbox, files=files)
    except ValidationError as exc:
        return render(
            request,
            "inbox/mailboxes/import_page.html",
            {"mailbox": mailbox, "errors": exc.messages, "jobs": imports.recent_imports(mailbox)},
            status=400,
        )
    finally:
        for upload in files:
            upload.close()
    messages.success(
        request,
        f"Importing {', '.join(job.file_names)} into the Imported folder of "
        f"{mailbox.email_address}.",
    )
    return redirect("inbox:mailbox_import", pk=mailbox.pk, job_pk=job.pk)


def import_progress(request: HttpRequest, pk: int, job_pk: int) -> HttpResponse:
    """One import's progress: the whole page, or (htmx polling) its card alone."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    try:
        job = ImportJob.objects.get(pk=job_pk, mailbox=mailbox)
    except ImportJob.DoesNotExist as exc:
        raise Http404("No such import.") from exc
    context = {"mailbox": mailbox, "job": job, "jobs": [job]}
    if request.htmx:
        return render(request, "inbox/mailboxes/_import_job.html", context)
    return render(request, "inbox/mailboxes/import_page.html", context)


def import_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The upload form and the recent imports, for a browser without the settings page's."""
    mailbox = get_managed_mailbox_or_404(request.user, pk)
    return render(
        request,
        "inbox/mailboxes/import_page.html",
        {"mailbox": mailbox, "jobs": imports.recent_imports(mailbox)},
    )
