"""Helpers for sync tests: a mailbox on the test Dovecot, realistic messages, and the oracle of
docs/reliability.md §8.1 (server truth against the database)."""

from __future__ import annotations

import itertools
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from django.utils import timezone

from inbox.models import Location, Mailbox, Message
from tests import factories as f

_counter = itertools.count(1)


def make_mailbox(user, *, owner=None, **fields) -> Mailbox:
    """A personal mailbox logging in to the test Dovecot as `user` (an ImapUser)."""
    server = user.server
    defaults = dict(
        owner=owner or f.UserFactory(),
        email_address=user.login if "@" in user.login else f"{user.login}@relay.test",
        login=user.login,
        imap_host=server.host,
        imap_port=server.port,
        imap_security="none",
        active_folders=[],
        password=user.password,
    )
    defaults.update(fields)
    return f.MailboxFactory(**defaults)


def make_raw(
    subject: str | None = None,
    *,
    sender: str = "Ana Customer <ana@customer.example>",
    to: str = "support@relay.test",
    body: str | None = None,
    message_id: str | None | bool = True,
    in_reply_to: str | None = None,
    date=None,
    extra_headers: dict | None = None,
) -> bytes:
    n = next(_counter)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject or f"Question number {n}"
    msg["Date"] = format_datetime(date or timezone.now())
    if message_id is True:
        msg["Message-ID"] = make_msgid(domain="customer.example")
    elif message_id:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(body or f"Hello, this is message {n}.\nRegards, Ana\n")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def db_truth(mailbox: Mailbox) -> set[tuple]:
    """(folder, uidvalidity, uid, sha256, flags) of every location of the mailbox."""
    return {
        (loc.folder.name, loc.uidvalidity, loc.uid, loc.message.sha256, frozenset(loc.flags))
        for loc in Location.objects.filter(
            message__mailbox=mailbox, folder__is_local=False
        ).select_related("folder", "message")
    }


def server_truth(user, folders=None) -> set[tuple]:
    truth = user.server.server_truth(user.login)
    return {
        (m.folder, m.uidvalidity, m.uid, m.sha256, m.flags)
        for m in truth
        if folders is None or m.folder in folders
    }


def assert_in_step(mailbox: Mailbox, user, *, flags: bool = True) -> None:
    """Lost 0, phantom 0, duplicates 0 (and, by default, the same flags)."""
    mailbox.refresh_from_db()
    active = set(mailbox.folders.filter(is_active=True).values_list("name", flat=True))
    server = server_truth(user, active)
    db = db_truth(mailbox)
    if not flags:
        server = {s[:4] for s in server}
        db = {d[:4] for d in db}
    lost = server - db
    phantom = db - server
    assert not lost and not phantom, f"lost={sorted(lost)} phantom={sorted(phantom)}"
    shas = list(Message.objects.filter(mailbox=mailbox).values_list("sha256", flat=True))
    assert len(shas) == len(set(shas)), "duplicate messages"


def row_counts(mailbox: Mailbox) -> dict[str, int]:
    from inbox.models import LedgerEntry, Thread

    return {
        "messages": Message.objects.filter(mailbox=mailbox).count(),
        "locations": Location.objects.filter(message__mailbox=mailbox).count(),
        "ledger": LedgerEntry.objects.filter(mailbox=mailbox).count(),
        "threads": Thread.objects.filter(mailbox=mailbox).count(),
    }
