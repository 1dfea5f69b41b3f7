"""Message bodies go to TOAST compressed with lz4 (inbox/migrations/0027_message_bodies_lz4.py):
pglz was the largest part of PostgreSQL's CPU storing real-sized mail (bench/sync.py, issue #17).
"""

from __future__ import annotations

import pytest
from django.db import connection

from inbox.models import Mailbox, Message

pytestmark = pytest.mark.django_db


def test_message_bodies_are_stored_with_lz4_and_read_back_whole():
    with connection.cursor() as cursor:
        cursor.execute("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
        row = cursor.fetchone()
        if row is None or "lz4" not in row[0]:
            pytest.skip("this PostgreSQL has no lz4: the migration leaves pglz, by design")
        cursor.execute(
            "SELECT attname, attcompression FROM pg_attribute "
            "WHERE attrelid = 'inbox_message'::regclass AND attname IN ('text_body', 'html_body')"
        )
        assert dict(cursor.fetchall()) == {"text_body": "l", "html_body": "l"}
    mailbox = Mailbox.objects.create(kind=Mailbox.Kind.SHARED, email_address="a@relay.example")
    html = "<table><tr><td>Offer \u2013 caf\xe9</td></tr></table>\n" * 2000  # ~90 KB: toasted
    message = Message.objects.create(mailbox=mailbox, sha256="a" * 64, html_body=html)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(html_body) FROM inbox_message WHERE id = %s",
            [message.pk],
        )
        assert cursor.fetchone()[0] == "lz4"
    assert Message.objects.get(pk=message.pk).html_body == html
