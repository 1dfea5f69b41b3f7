"""Mail as the inbox pages see it, made fast: folders, threads, messages, their locations and
addresses, in bulk (300 messages in a handful of INSERTs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

from inbox.models import Folder, Location, Message, MessageAddress, Thread
from tests import factories as f

_numbers = itertools.count(1)


def folders(mailbox) -> dict[str, Folder]:
    return {
        "inbox": f.FolderFactory(mailbox=mailbox, name="INBOX", special_use="inbox"),
        "sent": f.FolderFactory(mailbox=mailbox, name="Sent", special_use="sent"),
        "archive": f.FolderFactory(mailbox=mailbox, name="Archive", special_use="archive"),
        "trash": f.FolderFactory(mailbox=mailbox, name="Trash", special_use="trash"),
    }


def at(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2026, 5, 1, hour, 0, tzinfo=dt.UTC) + dt.timedelta(days=day)


def conversation(
    folder: Folder,
    *,
    size: int = 1,
    subject: str = "",
    sender: str = "",
    name: str = "",
    to: str = "",
    day: int = 1,
    seen: bool = True,
    **fields,
) -> list[Message]:
    """A thread of `size` messages in `folder`, the last one newest; returns its messages."""
    mailbox = folder.mailbox
    n = next(_numbers)
    subject = subject or f"Conversation {n}"
    thread = Thread.objects.create(
        mailbox=mailbox,
        subject=subject,
        message_count=size,
        last_message_at=at(day) + dt.timedelta(minutes=size),
    )
    messages = Message.objects.bulk_create(
        Message(
            mailbox=mailbox,
            thread=thread,
            sha256=hashlib.sha256(f"msg-{n}-{i}".encode()).hexdigest(),
            message_id=f"<m{n}.{i}@customer.example>",
            subject=subject if i == 0 else f"Re: {subject}",
            from_address=sender or f"sender{n}@customer.example",
            from_name=name or f"Sender {n}",
            date=at(day) + dt.timedelta(minutes=i + 1),
            text_body=f"Body of message {i} in conversation {n}",
            snippet=f"Body of message {i} in conversation {n}",
            seen=seen,
            **fields,
        )
        for i in range(size)
    )
    Location.objects.bulk_create(
        Location(message=m, folder=folder, uidvalidity=1, uid=m.pk, flags=[]) for m in messages
    )
    MessageAddress.objects.bulk_create(
        [MessageAddress(message=m, role="from", address=m.from_address) for m in messages]
        + [
            MessageAddress(message=m, role="to", address=to or mailbox.email_address)
            for m in messages
        ]
    )
    return messages


def many_conversations(folder: Folder, count: int, *, start_day: int = 100) -> None:
    """`count` one-message conversations, half unread, in few queries."""
    mailbox = folder.mailbox
    base = next(_numbers) * 10_000
    threads = Thread.objects.bulk_create(
        Thread(mailbox=mailbox, subject=f"Bulk {base + i}", message_count=1) for i in range(count)
    )
    messages = Message.objects.bulk_create(
        Message(
            mailbox=mailbox,
            thread=thread,
            sha256=hashlib.sha256(f"bulk-{base + i}".encode()).hexdigest(),
            message_id=f"<b{base + i}@customer.example>",
            subject=thread.subject,
            from_address=f"bulk{i}@customer.example",
            from_name=f"Bulk {i}",
            date=at(start_day) + dt.timedelta(minutes=i),
            text_body="bulk text",
            snippet="bulk text",
            seen=bool(i % 2),
        )
        for i, thread in enumerate(threads)
    )
    Location.objects.bulk_create(
        Location(message=m, folder=folder, uidvalidity=1, uid=m.pk, flags=[]) for m in messages
    )
    MessageAddress.objects.bulk_create(
        MessageAddress(message=m, role="from", address=m.from_address) for m in messages
    )
