"""Where new mail goes once it is stored: Email API documents are answered
(connector/emailapi/handler.py) and never filed, so an API document never opens a ticket of its
own; everything else is filed (connector/filing/apply.py). The filing task and the lost-task
sweep both come through here, so both obey that rule."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone

from inbox.models import Message

from ..filing.apply import FilingReport, file_messages
from .handler import take_documents


def file_new_mail(*, message_ids: Iterable[int], initial: bool = False, now=None) -> FilingReport:
    """Answer the Email API documents among new messages, file the rest. The first sync's
    history (`initial`) is only filed: nothing old is answered."""
    ids = sorted(set(message_ids))
    if not initial:
        answered = take_documents(ids, now=now)
        ids = [pk for pk in ids if pk not in answered]
    return file_messages(message_ids=ids, initial=initial, now=now)


def file_pending(*, older_than: timedelta = timedelta(minutes=2), limit: int = 5000) -> int:
    """The safety net: messages stored a while ago whose filing task never ran (lost with a
    broker restart) are filed now. A lost signal delays filing, never drops it. Mail dated
    before its mailbox was connected counts as first-sync history (no tickets, no replies)."""
    cutoff = timezone.now() - older_than
    rows = list(
        Message.objects.filter(filed_at__isnull=True, created_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", "date", "mailbox__created_at")[:limit]
    )
    old = [pk for pk, date, connected in rows if date is not None and date < connected]
    new = [pk for pk, date, connected in rows if not (date is not None and date < connected)]
    if old:
        file_new_mail(message_ids=old, initial=True)
    if new:
        file_new_mail(message_ids=new, initial=False)
    return len(rows)
