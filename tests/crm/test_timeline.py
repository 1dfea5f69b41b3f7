"""A record page's timeline (docs/product.md §7.4): its mail and notes, merged, newest first,
with "Show older"; others' personal mail only at the owner's privacy level (§2.2)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm.timeline import Cursor
from notes.models import Note
from tests import factories as f

pytestmark = pytest.mark.django_db


def _at(day, hour=9):
    return dt.datetime(2026, 3, day, hour, 0, tzinfo=dt.UTC)


def _mail(mailbox, record, subject, at, **kwargs):
    message = f.MessageFactory(mailbox=mailbox, subject=subject, date=at, **kwargs)
    f.FilingFactory(message=message, contact=record)
    return message


def _note(record, author, body, at):
    note = Note.objects.create(author=author, body=body, target_type="contact", contact=record)
    Note.objects.filter(pk=note.pk).update(created_at=at)
    return note


def _page(client, contact, **params):
    response = client.get(reverse("crm:contact_detail", args=[contact.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def _timeline(html):
    start = html.index('id="timeline"')
    return html[start : html.index("</section>", start)]


def test_mail_and_notes_interleaved_newest_first_with_links(client, teammate, shared_mailbox):
    contact = f.ContactFactory()
    oldest = _mail(shared_mailbox, contact, "Quote request", _at(1))
    _note(contact, teammate, "Called them back about the quote", _at(2))
    newest = _mail(shared_mailbox, contact, "Signed order", _at(4))
    _note(contact, teammate, "Order booked in the ERP", _at(5))
    client.force_login(teammate)
    timeline = _timeline(_page(client, contact))
    order = [
        timeline.index(text)
        for text in (
            "Order booked in the ERP",
            "Signed order",
            "Called them back about the quote",
            "Quote request",
        )
    ]
    assert order == sorted(order)
    assert re.findall(r'data-kind="(\w+)"', timeline) == ["note", "mail", "note", "mail"]
    # Each mail opens as its conversation and can be qualified, as on the Email tab.
    for message in (oldest, newest):
        assert reverse("inbox:conversation", args=[message.pk]) in timeline
        assert reverse("inbox:qualify_dialog", args=[message.pk]) in timeline
    # A note opens among the record's notes (a page of its own without JavaScript).
    assert reverse("notes:panel", args=["contact", contact.pk]) in timeline


@pytest.mark.parametrize(
    "privacy,subject,snippet,people",
    [
        ("full", True, True, True),
        ("subject", True, False, True),
        ("people", False, False, True),
        ("nothing", False, False, False),
    ],
)
def test_colleagues_personal_mail_only_at_the_owners_privacy_level(
    client, owner, teammate, personal_mailbox, privacy, subject, snippet, people
):
    personal_mailbox.privacy = privacy
    personal_mailbox.save(update_fields=["privacy"])
    contact = f.ContactFactory()
    message = _mail(
        personal_mailbox,
        contact,
        "Salary talk",
        _at(3),
        from_name="Ana Lopez",
        text_body="Between us, the offer is fine",
    )
    client.force_login(teammate)
    timeline = _timeline(_page(client, contact))
    assert ("Salary talk" in timeline) is subject
    assert ("Between us, the offer is fine" in timeline) is snippet
    assert ("Ana Lopez" in timeline) is people
    # Never a link to read it or Qualify it: the conversation is the owner's alone.
    assert reverse("inbox:conversation", args=[message.pk]) not in timeline
    assert reverse("inbox:qualify_dialog", args=[message.pk]) not in timeline
    # The owner sees her own mail in full, linked.
    client.force_login(owner)
    timeline = _timeline(_page(client, contact))
    assert "Salary talk" in timeline and "Between us, the offer is fine" in timeline
    assert reverse("inbox:conversation", args=[message.pk]) in timeline


def test_show_older_pages_through_everything_once(client, teammate, shared_mailbox, settings):
    settings.RELAY_PAGE_SIZE = 3
    contact = f.ContactFactory()
    expected = []
    for i in range(4):
        # Same times on purpose: a mail and a note at one instant never fall between pages.
        _mail(shared_mailbox, contact, f"Mail number {i}", _at(1 + i))
        _note(contact, teammate, f"Note number {i}", _at(1 + i))
        expected += [f"Mail number {i}", f"Note number {i}"]
    client.force_login(teammate)
    seen = []
    html = _page(client, contact)
    assert "Show older" in html
    for _ in range(5):
        timeline = _timeline(html)
        seen += re.findall(r"(?:Mail|Note) number \d", timeline)
        link = re.search(r'href="([^"]+)#timeline">Show older', timeline)
        if not link:
            break
        html = client.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert sorted(seen) == sorted(expected) and len(seen) == 8
    assert seen[0] == "Note number 3"  # notes sort after mail of the same time
    assert seen[-1] == "Mail number 0"


def test_a_malformed_cursor_starts_from_the_newest(client, teammate, shared_mailbox):
    contact = f.ContactFactory()
    _mail(shared_mailbox, contact, "Only mail", _at(2))
    client.force_login(teammate)
    for bad in ("nonsense", "2026-03-01T09:00:00~mail~x", "2026-03-01T09:00:00~mail~1"):
        assert "Only mail" in _timeline(_page(client, contact, before=bad))
    assert Cursor.parse("2026-03-01T09:00:00+00:00~note~4") == Cursor(_at(1), "note", 4)


def test_query_count_does_not_grow_with_entries(client, teammate, shared_mailbox, owner):
    personal = f.MailboxFactory(owner=owner, email_address="olivia2@relay.test", privacy="full")

    def fill(contact, n):
        for i in range(n):
            box = shared_mailbox if i % 3 else personal
            message = _mail(box, contact, f"Mail {i}", _at(1 + i % 27, i % 24))
            f.MessageAddressFactory(message=message, role="to", address=f"to{i}@x.example")
            _note(contact, owner if i % 2 else teammate, f"Note {i}", _at(1 + i % 27, i % 24))

    client.force_login(teammate)
    counts = []
    for n in (3, 30):
        contact = f.ContactFactory()
        fill(contact, n)
        _page(client, contact)  # warm caches (sessions, site settings)
        with CaptureQueriesContext(connection) as queries:
            html = _page(client, contact)
        assert html.count('data-kind="') == min(2 * n, 25)  # one page of the merged entries
        assert 'data-kind="mail"' in html and 'data-kind="note"' in html
        counts.append(len(queries))
    assert counts[0] == counts[1]


@pytest.mark.parametrize(
    "kind,factory",
    [
        ("contact", f.ContactFactory),
        ("account", f.AccountFactory),
        ("lead", f.LeadFactory),
        ("ticket", f.TicketFactory),
        ("opportunity", f.OpportunityFactory),
    ],
)
def test_a_records_notes_are_listed_once_on_its_timeline_and_adding_one_stays_easy(
    client, teammate, kind, factory
):
    """The record page listed each note twice, in the notes panel and on the timeline: the
    timeline alone lists them; the notes app gives the page its form only."""
    record = factory()
    body = f"Note about this {kind}: call back on Friday"
    note = Note.objects.create(author=teammate, body=body, target_type=kind, **{kind: record})
    client.force_login(teammate)
    page = client.get(reverse(f"crm:{kind}_detail", args=[record.pk])).content.decode()
    panel_url = reverse("notes:panel", args=[kind, record.pk])
    assert f"{panel_url}?view=form" in page
    panel = client.get(panel_url, {"view": "form"}, headers={"HX-Request": "true"})
    panel = panel.content.decode()
    assert "Add a note" in panel and body not in panel
    assert page.count(body) + panel.count(body) == 1
    assert page.count(body) == _timeline(page).count(body) == 1
    # Its author deletes it from the timeline.
    assert reverse("notes:delete", args=[note.pk]) in _timeline(page)
    # Adding from the form gives the form back, still without the list; the timeline reloads.
    response = client.post(
        panel_url, {"body": "A second note", "view": "form"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response["HX-Trigger"] == "relay-notes-changed"
    assert 'name="view" value="form"' in html and "A second note" not in html
    page = client.get(reverse(f"crm:{kind}_detail", args=[record.pk])).content.decode()
    assert _timeline(page).count("A second note") == 1
