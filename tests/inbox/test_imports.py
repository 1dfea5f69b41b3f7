"""Importing .mbox and .eml files by upload on a mailbox's settings page (docs/product.md
§3.10): real-world mail from the fidelity corpora (docs/fidelity.md), stored by the same batch
store and filed by the same filing as synced mail, with the job's counts and plain-words errors;
a second import of the same file adds nothing; bad uploads are refused with a clear error and
leave nothing behind; imported mail is exactly as private as the mailbox.

The Celery task runs eagerly in this process (the broker and a worker would add nothing the
import depends on); everything else is real: PostgreSQL, the files on disk, the parser."""

from __future__ import annotations

import mailbox as mbox_lib
import tracemalloc
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from connector.ingest.mime import parse_message
from connector.sync import importer
from crm.celery import app
from inbox.models import Filing, ImportJob, LedgerEntry, Message
from tests import factories as f
from tests.connector.ingest.fidelity import messages as corpus_messages
from tests.connector.synckit import make_raw

pytestmark = pytest.mark.django_db

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
NOT_MAIL = b"\x00\x01\x02 this is not an email at all \xff\xfe\n"


@pytest.fixture
def eager():
    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


def corpus(limit: int | None = None) -> list[tuple[str, bytes]]:
    found = [(name, raw) for name, raw in corpus_messages(CORPUS) if raw.strip()]
    return found[:limit] if limit else found


def sender_of(raw: bytes) -> str:
    try:
        return parse_message(raw).from_address or ""
    except Exception:
        return ""


def write_mbox(path: Path, raws) -> Path:
    box = mbox_lib.mbox(str(path))
    for raw in raws:
        box.add(raw)
    box.flush()
    box.close()
    return path


def upload(client, mailbox, *files, capture) -> object:
    with capture(execute=True):
        return client.post(
            reverse("inbox:mailbox_import_upload", args=[mailbox.pk]), {"files": list(files)}
        )


def as_upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def test_a_real_world_mbox_is_imported_filed_and_a_second_upload_adds_nothing(
    client, owner, personal_mailbox, tmp_path, eager, django_capture_on_commit_callbacks
):
    mail = corpus()
    assert len(mail) > 150
    # One sender of the corpus is a contact already: the import files their mail on them.
    sender = next(a for a in map(sender_of, (raw for _n, raw in mail)) if a.endswith(".com"))
    contact = f.ContactFactory(first_name="Corpus", last_name="Sender")
    f.ContactEmailFactory(contact=contact, email=sender)
    archive = write_mbox(tmp_path / "Old mail.mbox", [raw for _n, raw in mail] + [NOT_MAIL])
    client.force_login(owner)

    response = upload(
        client, personal_mailbox, as_upload(archive), capture=django_capture_on_commit_callbacks
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "inbox:mailbox_import", args=[personal_mailbox.pk, job.pk]
    )
    assert job.state == ImportJob.State.DONE
    assert job.total == len(mail) + 1 == job.done
    assert job.stored + job.duplicates + job.failed == job.total
    assert job.failed >= 1 and job.stored > 100
    # The uploaded file is gone once read; the mail is in the local Imported folder.
    assert not (Path(settings.MEDIA_ROOT) / job.directory).exists()
    folder = personal_mailbox.folders.get(name="Imported")
    assert folder.is_local and not folder.exists_on_server
    stored = Message.objects.filter(mailbox=personal_mailbox).count()
    # What is not an email at all is kept as a message of its own, held (docs/reliability.md
    # S-29); what the parser failed on keeps its raw source in the ledger.
    unreadable = LedgerEntry.objects.filter(folder=folder, outcome="held", message__isnull=False)
    assert stored == job.stored + unreadable.count()
    ledger = LedgerEntry.objects.filter(folder=folder).count()
    assert ledger == job.stored + job.failed
    # Filed like synced mail, by the same filing (connector/filing/).
    assert Filing.objects.filter(contact=contact, message__mailbox=personal_mailbox).exists()

    page = client.get(response["Location"]).content.decode()
    assert f"<strong>{job.stored}</strong> imported" in page
    assert f"Message {len(mail) + 1} of Old mail.mbox" in page
    assert "this is not an email" in page

    again = upload(
        client, personal_mailbox, as_upload(archive), capture=django_capture_on_commit_callbacks
    )
    second = ImportJob.objects.exclude(pk=job.pk).get()
    assert again.status_code == 302
    assert second.state == ImportJob.State.DONE
    assert second.stored == 0 and second.failed == 0
    assert second.duplicates == second.total == job.total
    assert Message.objects.filter(mailbox=personal_mailbox).count() == stored
    assert LedgerEntry.objects.filter(folder=folder).count() == ledger


def test_eml_files_and_an_unreadable_one_named_in_plain_words(
    client, owner, personal_mailbox, tmp_path, eager, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    hostile = Path(__file__).resolve().parents[1] / "fixtures" / "eml" / "hostile"
    emls = sorted(hostile.glob("*.eml"))[:6]
    files = [as_upload(p) for p in emls] + [SimpleUploadedFile("broken.eml", b"X-Only: header\n")]
    upload(client, personal_mailbox, *files, capture=django_capture_on_commit_callbacks)
    job = ImportJob.objects.get()
    assert job.state == ImportJob.State.DONE
    assert job.total == len(files) == job.done
    assert job.file_names[-1] == "broken.eml"
    assert job.stored + job.duplicates + job.failed == job.total
    # Nothing was lost: every message is a stored message or a held ledger entry with its bytes.
    held = LedgerEntry.objects.filter(mailbox=personal_mailbox, outcome="held")
    assert held.count() == job.failed
    assert all(entry.raw_file or entry.message.raw_file for entry in held)
    for item in job.errors:
        assert item["where"].endswith(".eml") and "health page" in item["error"]
    html = client.get(reverse("inbox:mailbox_health", args=[personal_mailbox.pk])).content.decode()
    assert f'id="held-count">{job.failed}<' in html


@pytest.mark.parametrize(
    "name,content,error",
    [
        ("notes.txt", b"From: a@b.example\n\nhi", "notes.txt is not an .mbox or .eml file."),
        ("empty.mbox", b"", "empty.mbox is empty."),
        ("wrong.mbox", b"Subject: hi\n\nbody\n", "wrong.mbox is not an mbox file"),
        ("photo.eml", b"\x89PNG\r\n\x1a\n\x00\x00", "photo.eml is not an email"),
    ],
)
def test_a_bad_file_is_refused_with_a_clear_error_and_nothing_kept(
    client, owner, personal_mailbox, eager, django_capture_on_commit_callbacks, name, content, error
):
    client.force_login(owner)
    imports = Path(settings.MEDIA_ROOT) / "imports"
    # The worker's media folder is shared with the tests that ran before: compare with it.
    before = set(imports.rglob("*")) if imports.exists() else set()
    good = SimpleUploadedFile("good.eml", make_raw("fine"))
    response = upload(
        client,
        personal_mailbox,
        good,
        SimpleUploadedFile(name, content),
        capture=django_capture_on_commit_callbacks,
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was imported." in html and error in html
    assert not ImportJob.objects.exists()
    assert not Message.objects.exists()
    assert (set(imports.rglob("*")) if imports.exists() else set()) == before


def test_an_upload_over_the_limit_is_refused_before_anything_is_kept(
    client, owner, personal_mailbox, tmp_path, eager, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    archive = write_mbox(
        tmp_path / "big.mbox", [make_raw(f"m{i}", body="x" * 4000) for i in range(10)]
    )
    with override_settings(RELAY_IMPORT_MAX_BYTES=20_000):
        response = upload(
            client, personal_mailbox, as_upload(archive), capture=django_capture_on_commit_callbacks
        )
    assert response.status_code == 400
    html = response.content.decode()
    assert "larger than 19.5\xa0KB in all" in html and "Nothing was imported." in html
    assert not ImportJob.objects.exists() and not Message.objects.exists()


def test_a_large_mbox_is_read_one_message_at_a_time(personal_mailbox, tmp_path, monkeypatch):
    """docs/reliability.md I-11: a 48 MB mbox is imported with far less than its size in
    memory: what is held is one batch (bounded by bytes, here 2 MB), never the whole file."""
    monkeypatch.setattr(importer, "BATCH_BYTES", 2 * 1024 * 1024)
    filler = ("0123456789abcdef" * 64 + "\n") * 1000  # about 1 MB a message
    archive = write_mbox(
        tmp_path / "big.mbox", [make_raw(f"big {i}", body=filler) for i in range(48)]
    )
    size = archive.stat().st_size
    assert size > 45 * 1024 * 1024
    tracemalloc.start()
    try:
        result = importer.import_messages(
            personal_mailbox,
            importer.read_messages(archive),
            history=True,
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.stored == 48
    assert peak < size / 2, (peak, size)


def test_imported_mail_is_as_private_as_the_mailbox(
    client,
    owner,
    teammate,
    outsider,
    admin_user,
    personal_mailbox,
    tmp_path,
    eager,
    django_capture_on_commit_callbacks,
):
    client.force_login(owner)
    upload(
        client,
        personal_mailbox,
        SimpleUploadedFile("secret.eml", make_raw("Private plans")),
        capture=django_capture_on_commit_callbacks,
    )
    job = ImportJob.objects.get()
    message = Message.objects.get(subject="Private plans")
    assert client.get(reverse("inbox:message_read", args=[message.pk])).status_code == 200
    for person in (teammate, outsider, admin_user):
        client.force_login(person)
        assert client.get(reverse("inbox:message_read", args=[message.pk])).status_code == 404
        assert (
            client.get(
                reverse("inbox:mailbox_import", args=[personal_mailbox.pk, job.pk])
            ).status_code
            == 404
        )
        html = client.get(reverse("inbox:inbox_page")).content.decode()
        assert "Private plans" not in html


def test_the_import_pages_cost_the_same_queries_however_many_imports_and_errors(
    client, owner, personal_mailbox, django_assert_num_queries
):
    client.force_login(owner)

    def job(errors: int) -> ImportJob:
        return ImportJob.objects.create(
            mailbox=personal_mailbox,
            created_by=owner,
            file_names=["a.mbox"],
            state=ImportJob.State.DONE,
            total=errors,
            done=errors,
            failed=errors,
            errors=[{"where": f"Message {i}", "error": "broken"} for i in range(errors)],
        )

    def count(url: str) -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    first = job(1)
    settings_url = reverse("inbox:mailbox_settings", args=[personal_mailbox.pk])
    progress = reverse("inbox:mailbox_import", args=[personal_mailbox.pk, first.pk])
    few = (
        count(settings_url),
        count(progress),
        count(reverse("inbox:mailbox_import_page", args=[personal_mailbox.pk])),
    )
    many_errors = job(150)
    for _ in range(8):
        job(3)
    assert (
        count(settings_url),
        count(reverse("inbox:mailbox_import", args=[personal_mailbox.pk, many_errors.pk])),
        count(reverse("inbox:mailbox_import_page", args=[personal_mailbox.pk])),
    ) == few


HOSTILE_HTML = b"""From: Mallory <mallory@evil.example>
To: olivia@relay.test
Subject: Invoice attached
Date: Mon, 03 Nov 2025 10:00:00 +0100
Message-ID: <imported-xss@evil.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p>Pay now</p><script>alert(document.cookie)</script><img src=x onerror=alert(1)>
<a href="javascript:alert(2)">open</a><img src="https://tracker.evil.example/p.gif">
"""


def test_hostile_mail_in_an_imported_file_is_as_inert_as_synced_mail(
    client, owner, personal_mailbox, tmp_path, eager, django_capture_on_commit_callbacks
):
    """docs/reliability.md X-17, A-07: a file from elsewhere is mail from strangers; it goes
    through the same store and the same reading views, so its HTML is sanitised and sandboxed,
    remote images stay blocked and attachment names are made safe."""
    hostile = Path(__file__).resolve().parents[1] / "fixtures" / "eml" / "hostile"
    archive = write_mbox(
        tmp_path / "from a stranger.mbox",
        [HOSTILE_HTML, (hostile / "attachment_traversal.eml").read_bytes()],
    )
    client.force_login(owner)
    upload(client, personal_mailbox, as_upload(archive), capture=django_capture_on_commit_callbacks)
    assert ImportJob.objects.get().stored == 2

    message = Message.objects.get(subject="Invoice attached")
    body = client.get(reverse("inbox:message_body", args=[message.pk]))
    html = body.content.decode()
    assert "Pay now" in html
    for bad in ("<script", "onerror", "javascript:", 'tracker.evil.example/p.gif"'):
        assert bad not in html, bad
    assert "sandbox" in body["Content-Security-Policy"]

    with_file = Message.objects.get(subject="hostile attachment name")
    attachment = with_file.attachments.get()
    download = client.get(reverse("inbox:attachment_download", args=[with_file.pk, attachment.pk]))
    disposition = download["Content-Disposition"]
    assert disposition.startswith("attachment; ") and "/" not in disposition.split(";")[1]
    assert ".." not in disposition and download["Content-Type"] == "application/octet-stream"


def test_retry_imports_a_held_imported_message_again_from_its_raw_source(
    client, owner, personal_mailbox, eager, django_capture_on_commit_callbacks
):
    """docs/product.md §3.10: an imported message is never fetched from a server, so the
    health page's Retry imports it again from its kept raw source, at once. Here the parser
    failed on it when it was imported (as an older Relay's might have) and reads it now; a
    held entry whose raw source is not kept offers no Retry, since nothing could be retried."""
    from connector.ingest import storage

    folder = importer.local_folder(personal_mailbox, "Imported")
    raw = make_raw("Imported again")
    held = dict(
        mailbox=personal_mailbox,
        folder=folder,
        uidvalidity=importer.LOCAL_UIDVALIDITY,
        outcome="held",
        reason="could not be read (imported file)",
        error="ParseError: the parser gave up",
        attempts=1,
        parse_failures=1,
    )
    entry = LedgerEntry.objects.create(
        uid=1,
        raw_file=storage.save_raw(
            mailbox_id=personal_mailbox.pk, digest=storage.sha256(raw), raw=raw
        ),
        **held,
    )
    LedgerEntry.objects.create(uid=2, raw_file="", **held)
    client.force_login(owner)
    health = reverse("inbox:mailbox_health", args=[personal_mailbox.pk])
    html = client.get(health).content.decode()
    assert 'aria-label="Retry UID 1 of Imported"' in html
    assert "Retry UID 2" not in html and "Its raw source is not kept" in html

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("inbox:mailbox_held_retry", args=[personal_mailbox.pk, entry.pk]), follow=True
        )
    assert "UID 1 of Imported is being imported again" in response.content.decode()
    entry.refresh_from_db()
    assert entry.outcome == "stored" and entry.message.subject == "Imported again"
    assert list(Message.objects.filter(mailbox=personal_mailbox)) == [entry.message]
    assert entry.message.locations.get().folder == folder
    html = client.get(health).content.decode()
    assert "Retry UID 1" not in html and 'id="held-count">1<' in html
