"""tests/conftest.py _fast_flush: what a committing test leaves behind is gone before the next one,
as with Django's flush, and the content types and permissions every migrated database holds are
still there."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import TransactionTestCase

from inbox.models import Message
from tests import factories as f
from tests.inbox import mailkit


class _Flushing(TransactionTestCase):
    __test__ = False  # only its teardown is used

    def runTest(self):
        pass


@pytest.mark.django_db(transaction=True)
def test_a_committing_test_leaves_empty_tables_and_the_content_types():
    content_types, permissions = ContentType.objects.count(), Permission.objects.count()
    assert content_types and permissions
    owner = f.UserFactory(username="olivia")
    mailbox = f.MailboxFactory(owner=owner, email_address="olivia@relay.test")
    folder = f.FolderFactory(mailbox=mailbox, name="INBOX")
    mailkit.conversation(folder, subject="Left behind", day=3, seen=False)
    assert Message.objects.exists()

    _Flushing()._fixture_teardown()

    with connection.cursor() as cursor:
        left = {}
        for table in connection.introspection.django_table_names(only_existing=True):
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            left[table] = cursor.fetchone()[0]
    assert {t: n for t, n in left.items() if n} == {
        "django_content_type": content_types,
        "auth_permission": permissions,
    }
