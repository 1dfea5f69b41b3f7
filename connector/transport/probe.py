"""Connection tests a person waits for: "Test connection / Retrieve folders" in the connect
wizard and on Reconnect (IMAP, and SMTP when set), and "Test SMTP connection" on the mailbox's
settings page. Reads only: EXAMINE and SEARCH; the errors a person sees are the fixed messages
of their category, so the answer tells nothing about an internal network
(docs/reliability.md C-08)."""

from __future__ import annotations

import datetime as dt
import logging

from inbox.models import Mailbox
from inbox.ports import ConnectionReport, FolderPreview

from .errors import MailError, PermanentFailure, TemporaryFailure
from .imap import imap_date, open_session
from .smtp import open_mailbox_smtp, quit_quietly, test_smtp_connection

log = logging.getLogger(__name__)


def test_connection(
    mailbox, sync_from: dt.date | None = None, *, timeout: float = 20.0, check_smtp: bool = True
) -> ConnectionReport:
    """ "Test connection / Retrieve folders" (docs/product.md §2.4): log in to IMAP (and SMTP when
    set), list the folders with their special use, message counts and what the first sync would
    bring from ``sync_from`` (default: the mailbox's). Reads only: EXAMINE and SEARCH."""
    sync_from = sync_from or getattr(mailbox, "sync_from", None)
    report = ConnectionReport(ok=False)
    try:
        with open_session(mailbox, timeout=timeout) as session:
            report.capabilities = session.capabilities
            for info in session.list_folders():
                preview = FolderPreview(
                    name=info.name, special_use=info.special_use, selectable=info.selectable
                )
                if info.selectable:
                    try:
                        status = session.select(info.name, readonly=True)
                        preview.messages = status.messages
                        if sync_from is not None:
                            preview.since_count = (
                                len(session.search_uids(f"SINCE {imap_date(sync_from)}"))
                                if status.messages
                                else 0
                            )
                    except TemporaryFailure:
                        raise
                    except PermanentFailure:
                        # One folder the server lists but will not open (shared namespace,
                        # no rights) must not fail the whole test: it shows without counts.
                        preview.messages = preview.since_count = None
                report.folders.append(preview)
        report.ok = True
    except MailError as exc:
        report.error, report.error_category = exc.user_message, exc.category
    if check_smtp and getattr(mailbox, "smtp_host", ""):
        try:
            test_smtp_connection(mailbox, timeout=timeout)
            report.smtp_ok = True
        except MailError as exc:
            report.smtp_ok, report.smtp_error = False, exc.user_message
    return report


test_connection.__test__ = False  # a product function, not a pytest test


def smtp_connection_check(mailbox: Mailbox) -> str | None:
    """SMTP settings, "Test SMTP connection": None when the login worked, else the fixed
    user-facing message of the failure's category (docs/reliability.md C-08: no oracle for internal
    networks)."""
    try:
        quit_quietly(open_mailbox_smtp(mailbox))
    except MailError as exc:
        log.info("SMTP test mailbox=%s failed: %s", mailbox.pk, exc)
        return exc.user_message
    return None
