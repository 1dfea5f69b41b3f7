"""Importing an .mbox in a real browser (docs/product.md §3.10), at laptop 1440x900 and phone
390x844: the owner picks a file on her mailbox's settings page, sees the import wait, then
(htmx polling, no reload) its counts and the message that could not be read; a wrong file is
refused with its name. The test itself stands in for the Celery worker (it runs the job the
upload queued, with the same function the task calls); the rest is real. Screenshots go to
$RELAY_SCREENSHOTS (when set)."""

from __future__ import annotations

import mailbox as mbox_lib
from pathlib import Path

import pytest
from playwright.sync_api import expect

from connector.sync import importer
from inbox.models import ImportJob, Message
from tests import factories as f
from tests.connector.ingest.fidelity import messages as corpus_messages
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "django-mailbox.tar.xz"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_owner_imports_an_mbox_and_watches_it_finish(
    page, live_server, shots, console_messages, tmp_path, viewport
):
    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    owner = f.UserFactory(username="olivia", first_name="Olivia", last_name="Owner")
    mailbox = f.MailboxFactory(owner=owner, email_address="olivia@relay.test")
    archive = tmp_path / "Thunderbird export.mbox"
    box = mbox_lib.mbox(str(archive))
    raws = [raw for _name, raw in corpus_messages(CORPUS) if raw.strip()]
    for raw in [*raws, b"\x00\x01 not an email \xff\n"]:
        box.add(raw)
    box.flush()
    box.close()
    wrong = tmp_path / "notes.txt"
    wrong.write_text("From: nobody\n\njust notes")

    sign_in(page, live_server, "olivia", f"/inbox/mailboxes/{mailbox.pk}/")
    section = page.locator("#import")
    expect(section.get_by_role("heading", name="Import mail")).to_be_visible()

    # A wrong file first: refused by name, nothing kept.
    section.get_by_label("Files").set_input_files(str(wrong))
    section.get_by_role("button", name="Import").click()
    expect(page.locator("#import-errors")).to_contain_text(
        "notes.txt is not an .mbox or .eml file."
    )
    assert not ImportJob.objects.exists()
    page.locator("#import-errors").scroll_into_view_if_needed()
    shot(page, shots, f"{viewport}-1-wrong-file.png")

    page.locator("#import").get_by_label("Files").set_input_files(str(archive))
    page.locator("#import").get_by_role("button", name="Import").click()
    expect(
        page.get_by_text("Importing Thunderbird export.mbox into the Imported folder")
    ).to_be_visible()
    job = ImportJob.objects.get()
    card = page.locator(f"#import-job-{job.pk}")
    expect(card).to_contain_text("Waiting for a worker to start")
    shot(page, shots, f"{viewport}-2-waiting.png")

    importer.run_import_job(job.pk)  # what relay.import_files does in a worker
    job.refresh_from_db()
    assert job.state == ImportJob.State.DONE and job.total == len(raws) + 1
    # htmx polls the card: the counts appear without a reload.
    expect(card).to_have_attribute("data-state", "done", timeout=10_000)
    expect(card).to_contain_text(f"{job.total} of {job.total} messages read")
    expect(card).to_contain_text(f"{job.stored} imported")
    expect(card).to_contain_text("Done, with problems")
    expect(card.locator(".import-errors")).to_contain_text(
        f"Message {job.total} of Thunderbird export.mbox"
    )
    assert Message.objects.filter(mailbox=mailbox).count() >= job.stored > 0
    card.scroll_into_view_if_needed()
    shot(page, shots, f"{viewport}-3-done.png")

    # The settings page lists it too.
    page.goto(f"{live_server.url}/inbox/mailboxes/{mailbox.pk}/")
    expect(page.locator("#import-jobs")).to_contain_text("Thunderbird export.mbox")
    page.locator("#import").scroll_into_view_if_needed()
    shot(page, shots, f"{viewport}-4-settings.png")

    assert not page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    # The refused upload answers 400, as every form sent back with errors does: Chromium logs
    # that status; anything else logged as an error fails the test.
    errors = [
        m
        for m in console_messages
        if m.startswith(("error", "pageerror")) and "status of 400 (Bad Request)" not in m
    ]
    assert not errors, errors
