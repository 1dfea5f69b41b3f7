"""Functions of the connector that inbox views call, filled in by connector's AppConfig.ready().

inbox may not import connector (the import-linter layers contract: connector > inbox > crm),
yet "Test connection" has to log in to a mail server while the person waits. The connector
puts its function here at start-up; inbox calls it through `test_connection` below without
ever importing the connector package.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

# connector.imap.test_connection(mailbox, sync_from=None, *, timeout=..., check_smtp=True)
# -> ConnectionReport(ok, error, error_category, folders, smtp_ok, smtp_error)
connection_tester = None

# Seconds a Test connection may take: fixed, so the time it takes tells nothing about the
# target (RELIABILITY C-08).
TEST_TIMEOUT = 20.0


def test_connection(mailbox, *, sync_from=None):
    """Log in to the mailbox's servers (an unsaved Mailbox is fine) and list its folders."""
    if connection_tester is None:
        raise ImproperlyConfigured("The connector app is not installed: nothing can log in.")
    return connection_tester(mailbox, sync_from=sync_from, timeout=TEST_TIMEOUT)


test_connection.__test__ = False  # a product function, not a pytest test
