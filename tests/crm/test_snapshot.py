"""crm/snapshot.py: the inbox list, its counts and its fingerprint are read in one snapshot, so a
change that lands while the list is read shows in the next poll instead of hiding behind a
fingerprint that already counts it (a Mine count stayed at 0 after Assign to me)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection

from crm.snapshot import read_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


def _create_elsewhere(username: str) -> None:
    """Commit a row on another connection, as a request served meanwhile would."""

    def create():
        try:
            User.objects.create(username=username)
        finally:
            connection.close()

    worker = threading.Thread(target=create)
    worker.start()
    worker.join()


def test_what_commits_after_the_first_read_is_not_seen_until_the_next_snapshot():
    User.objects.create(username="olivia")
    with read_snapshot():
        assert User.objects.count() == 1
        _create_elsewhere("tom")
        assert User.objects.count() == 1  # the list and its fingerprint agree
        assert not User.objects.filter(username="tom").exists()
    with read_snapshot():
        assert User.objects.count() == 2


def test_a_write_inside_a_snapshot_fails_loudly():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no read-only transactions")
    with pytest.raises(DatabaseError, match="read-only transaction"):
        with read_snapshot():
            User.objects.create(username="olivia")
    assert not User.objects.exists()
