"""All mailboxes (docs/product.md §7.2): one conversation list, and its search, across every
folder of every mailbox the user may read; each row names its mailbox; a colleague's personal
mailbox never shows, whoever asks (admins included)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests import factories as f
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
ALL = reverse("inbox:inbox_page") + "?mailbox=all"


@pytest.fixture
def boxes(owner, personal_mailbox):
    """Olivia's personal mailbox, the shared support@ granted to her, and her colleague Tom's
    personal mailbox (not hers to read)."""
    personal_mailbox.display_name = "Olivia"
    personal_mailbox.save(update_fields=["display_name"])
    shared = f.SharedMailboxFactory(email_address="support@relay.test", display_name="Support")
    shared.granted_users.add(owner)
    colleague = f.MailboxFactory(
        owner=f.UserFactory(username="tom"), email_address="tom@relay.test", display_name="Tom"
    )
    return {
        "personal": mailkit.folders(personal_mailbox),
        "shared": mailkit.folders(shared),
        "colleague": mailkit.folders(colleague),
    }


SUBJECT = re.compile(r'class="inbox-thread-subject">(?:<span[^>]*>[^<]*</span>)?([^<]*)<')


def _rows(html: str) -> list[tuple[str, str]]:
    """(mailbox tag, subject) of each conversation row, as the list shows them."""
    rows = []
    for row in html.split('<li class="inbox-thread')[1:]:
        tag = re.search(r'class="inbox-mailbox-tag"[^>]*>([^<]*)<', row)
        subject = SUBJECT.search(row)
        rows.append((tag.group(1) if tag else "", subject.group(1).strip()))
    return rows


def test_all_mailboxes_lists_and_searches_every_readable_mailbox_and_folder(client, owner, boxes):
    mailkit.conversation(boxes["personal"]["inbox"], subject="Invoice for Globex", day=1)
    mailkit.conversation(boxes["shared"]["archive"], subject="Globex printer broken", day=2)
    mailkit.conversation(boxes["shared"]["inbox"], subject="Lunch on Friday", day=3)
    mailkit.conversation(boxes["colleague"]["inbox"], subject="Globex salary SECRET", day=4)
    client.force_login(owner)

    html = client.get(ALL).content.decode()
    assert _rows(html) == [
        ("Support", "Lunch on Friday"),
        ("Support", "Globex printer broken"),  # archived: every folder, not only the inbox
        ("Olivia", "Invoice for Globex"),
    ]
    assert "SECRET" not in html
    assert 'placeholder="Search all mailboxes"' in html

    # The search box searches there, and keeps searching there.
    for headers in ({}, HTMX):
        html = client.get(ALL + "&q=globex", headers=headers).content.decode()
        assert _rows(html) == [
            ("Support", "Globex printer broken"),
            ("Olivia", "Invoice for Globex"),
        ]
        assert "SECRET" not in html
    assert 'name="mailbox" value="all"' in client.get(ALL + "&q=globex").content.decode()

    # A result opens as its conversation with the same list beside it.
    shared_message = boxes["shared"]["archive"].locations.get().message
    url = reverse("inbox:conversation", args=[shared_message.pk]) + "?mailbox=all&q=globex"
    html = client.get(url).content.decode()
    assert "Globex printer broken" in html
    assert [s for _, s in _rows(html)] == ["Globex printer broken", "Invoice for Globex"]


def test_one_mailbox_still_lists_only_its_own(client, owner, boxes):
    mailkit.conversation(boxes["personal"]["inbox"], subject="Invoice for Globex")
    mailkit.conversation(boxes["shared"]["inbox"], subject="Globex printer broken")
    client.force_login(owner)
    mailbox = boxes["shared"]["inbox"].mailbox_id
    html = client.get(reverse("inbox:inbox_page") + f"?mailbox={mailbox}&q=globex").content
    assert _rows(html.decode()) == [("", "Globex printer broken")]


def test_all_mailboxes_costs_the_same_queries_for_3_and_30_conversations(client, owner, boxes):
    client.force_login(owner)
    urls = [
        (ALL, {}),
        (ALL + "&q=bulk&unread=on", {}),
        (ALL + "&q=bulk", HTMX),
        (reverse("inbox:inbox_poll") + "?mailbox=all&since=x", HTMX),
    ]

    def queries():
        counts = []
        for url, headers in urls:
            with CaptureQueriesContext(connection) as captured:
                response = client.get(url, headers=headers)
            assert response.status_code == 200, url
            counts.append(len(captured))
        return counts

    mailkit.many_conversations(boxes["personal"]["inbox"], 2, start_day=100)
    mailkit.many_conversations(boxes["shared"]["archive"], 1, start_day=101)
    few = queries()
    assert len(_rows(client.get(ALL).content.decode())) == 3
    mailkit.many_conversations(boxes["personal"]["inbox"], 13, start_day=102)
    mailkit.many_conversations(boxes["shared"]["inbox"], 14, start_day=103)
    many = queries()
    rows = _rows(client.get(ALL).content.decode())
    assert {tag for tag, _ in rows} == {"Olivia", "Support"}
    assert few == many, (few, many)
