"""Where new mail goes once it is stored: Email API documents are answered
(connector/emailapi/handler.py) and never filed, so an API document never opens a ticket of its
own; everything else is filed (connector/filing/apply.py). The filing task and the lost-task
sweep both come through here, so both obey that rule."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from inbox.models import Location, Message

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
    before its mailbox was connected counts as first-sync history (no tickets, no replies), and
    so does mail found again after a UIDVALIDITY reset (docs/reliability.md S-01)."""
    cutoff = timezone.now() - older_than
    found_again = Exists(
        Location.objects.filter(
            message=OuterRef("pk"),
            uidvalidity=F("folder__uidvalidity"),
            folder__history_below_uid__gt=F("uid"),
        )
    )
    rows = list(
        Message.objects.filter(filed_at__isnull=True, created_at__lt=cutoff)
        .annotate(found_again=found_again)
        .order_by("pk")
        .values_list("pk", "date", "mailbox__created_at", "found_again")[:limit]
    )

    def history(date, connected, again) -> bool:
        return again or (date is not None and date < connected)

    old = [pk for pk, date, connected, again in rows if history(date, connected, again)]
    new = [pk for pk, date, connected, again in rows if not history(date, connected, again)]
    if old:
        file_new_mail(message_ids=old, initial=True)
    if new:
        file_new_mail(message_ids=new, initial=False)
    return len(rows)
