"""One snapshot of the database for a page that says what it shows.

The inbox list carries a fingerprint of the mail it shows; the poll gets nothing back while the
fingerprint holds (inbox/views/inbox.py). Read outside a transaction, each query sees the
database at its own moment: a list whose counts were read before an assignment landed and whose
fingerprint was read after it showed the old counts for good. Inside `read_snapshot()` every
query sees the database as of the first one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def read_snapshot() -> Iterator[None]:
    """A read-only transaction with one snapshot: REPEATABLE READ on PostgreSQL (a write inside
    fails loudly); SQLite's read transactions are one snapshot already. Inside a transaction
    someone else opened (a test's), that transaction's rules hold."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
