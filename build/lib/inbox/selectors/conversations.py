"""The Inbox: folders with unread counts, the conversation list with its filters and search, and
one conversation. Every query starts from inbox/permissions.py, so a message from a mailbox the
viewer may not read never reaches a template, and each page costs a fixed number of queries
whatever the number of messages (Exists/Subquery annotations, one bulk query per kind of thing).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from crm.models import (
    RECORD_MODELS,
)

from ..models import (
    Filing,
    Folder,
    Mailbox,
    Message,
    MessageAddress,
    Thread,
)
from ..permissions import readable_messages
from .qualify import RECORD_LABELS

# The Inbox's folder order: the folders people live in first, then the rest by name.
_SPECIAL_ORDER = ["inbox", "sent", "drafts", "archive", "flagged", "all", "junk", "trash"]


def folders_with_unread(*, mailbox: Mailbox) -> list[Folder]:
    """The mailbox's folders with their unread counts, in one query (a grouped count of the
    unread messages located in each folder)."""
    unread = (
        Message.objects.filter(locations__folder=OuterRef("pk"), seen=False)
        .order_by()
        .values("locations__folder")
        .annotate(n=Count("pk", distinct=True))
        .values("n")
    )
    order = Case(
        *[When(special_use=use, then=Value(i)) for i, use in enumerate(_SPECIAL_ORDER)],
        default=Value(len(_SPECIAL_ORDER)),
        output_field=IntegerField(),
    )
    return list(
        Folder.objects.filter(mailbox=mailbox, is_selectable=True)
        .filter(Q(is_active=True) | Q(is_local=True))
        .annotate(unread=Subquery(unread, output_field=IntegerField()), position=order)
        .order_by("position", "name", "pk")
    )


def default_folder(folders: list[Folder]) -> Folder | None:
    for folder in folders:
        if folder.special_use == Folder.SpecialUse.INBOX:
            return folder
    return folders[0] if folders else None


@dataclass(frozen=True)
class MessageFilters:
    """What the Inbox's search box and filter bar ask for (all optional)."""

    search: str = ""
    unread: bool = False
    unfiled: bool = False
    filed_on: str = ""  # a record type: filed on any account / contact / ...
    attachments: bool = False
    flagged: bool = False
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    @property
    def active(self) -> bool:
        return bool(self.search) or self.refined

    @property
    def refined(self) -> bool:
        """Any filter besides the search words (the filter panel opens to show them)."""
        return any(
            (
                self.unread,
                self.unfiled,
                self.filed_on,
                self.attachments,
                self.flagged,
                self.date_from,
                self.date_to,
            )
        )


def _active_filings() -> QuerySet[Filing]:
    return Filing.objects.filter(message=OuterRef("pk"), unlinked_at__isnull=True)


def _search_messages(messages: QuerySet[Message], search: str) -> QuerySet[Message]:
    """Search over subject, people and text.

    PostgreSQL: full-text search (websearch syntax: quoted phrases, OR, -word) over the
    subject, the sender and the text body, plus a substring match on every address and name
    of the message, because an address such as ana@globex.example is one token to the parser
    and people type parts of it ("globex").
    SQLite (the embedded one-machine default): a case-insensitive LIKE per word over the same
    fields. An FTS5 table kept in step by the ingest would be faster on a large mailbox, but a
    one-machine install searches one mailbox's folder at a time, where LIKE is quick enough.
    """
    search = search.strip()[:200]
    if not search:
        return messages
    people = MessageAddress.objects.filter(message=OuterRef("pk"))
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        vector = (
            SearchVector("subject", weight="A", config="simple")
            + SearchVector("from_name", "from_address", weight="B", config="simple")
            + SearchVector("text_body", weight="C", config="english")
        )
        query = SearchQuery(search, search_type="websearch", config="simple") | SearchQuery(
            search, search_type="websearch", config="english"
        )
        words = [w for w in re.split(r"\s+", search) if w and not w.startswith("-")][:4]
        people_match = Q()
        for word in words:
            word = word.strip('"')
            people_match &= Q(
                Exists(people.filter(Q(address__icontains=word) | Q(name__icontains=word)))
            )
        return messages.annotate(search_vector=vector).filter(
            Q(search_vector=query) | (people_match if words else Q(pk__in=[]))
        )
    for word in search.split()[:8]:
        messages = messages.filter(
            Q(subject__icontains=word)
            | Q(text_body__icontains=word)
            | Q(from_name__icontains=word)
            | Q(Exists(people.filter(Q(address__icontains=word) | Q(name__icontains=word))))
        )
    return messages


def _filtered_messages(messages: QuerySet[Message], filters: MessageFilters) -> QuerySet:
    if filters.unread:
        messages = messages.filter(seen=False)
    if filters.flagged:
        messages = messages.filter(flagged=True)
    if filters.attachments:
        messages = messages.filter(has_attachments=True)
    if filters.unfiled:
        messages = messages.filter(~Exists(_active_filings()))
    if filters.filed_on in RECORD_MODELS:
        messages = messages.filter(Exists(_active_filings().filter(record_type=filters.filed_on)))
    if filters.date_from:
        messages = messages.filter(date__date__gte=filters.date_from)
    if filters.date_to:
        messages = messages.filter(date__date__lte=filters.date_to)
    return _search_messages(messages, filters.search)


def conversations(
    *, mailbox: Mailbox, folder: Folder | None, filters: MessageFilters
) -> QuerySet[Thread]:
    """The conversations (threads) of a readable mailbox with at least one message in
    `folder` that passes the filters, newest activity first. Each row carries its newest
    matching message's id and date, its unread count and whether any message is flagged or
    has attachments; `attach_latest` then fetches those newest messages in one query.

    The mailbox must come from the permission gate (get_mailbox_or_404)."""
    matching = Message.objects.filter(mailbox=mailbox, thread=OuterRef("pk"))
    if folder is not None:
        matching = matching.filter(locations__folder=folder)
    matching = _filtered_messages(matching, filters)
    newest = matching.order_by(F("date").desc(nulls_last=True), "-pk")
    in_thread = Message.objects.filter(thread=OuterRef("pk")).order_by().values("thread")
    return (
        Thread.objects.filter(mailbox=mailbox)
        .filter(Exists(matching))
        .annotate(
            latest_id=Subquery(newest.values("pk")[:1]),
            latest_date=Subquery(newest.values("date")[:1]),
            unread_count=Subquery(
                in_thread.filter(seen=False).annotate(n=Count("pk")).values("n"),
                output_field=IntegerField(),
            ),
            is_flagged=Exists(Message.objects.filter(thread=OuterRef("pk"), flagged=True)),
            with_attachments=Exists(
                Message.objects.filter(thread=OuterRef("pk"), has_attachments=True)
            ),
            is_filed=Exists(
                Filing.objects.filter(message__thread=OuterRef("pk"), unlinked_at__isnull=True)
            ),
        )
        .order_by(F("latest_date").desc(nulls_last=True), "-pk")
    )


def attach_latest(threads) -> None:
    """Give each thread of a page its newest matching message (`thread.latest`) and the
    records that thread's mail is filed on (`thread.records`): two queries for the page."""
    threads = list(threads)
    ids = [t.latest_id for t in threads if t.latest_id]
    latest = Message.objects.only(
        "pk",
        "subject",
        "from_name",
        "from_address",
        "snippet",
        "date",
        "seen",
        "flagged",
        "is_outgoing",
        "has_attachments",
        "thread_id",
        "mailbox_id",
    ).in_bulk(ids)
    filings = Filing.objects.filter(
        message__thread__in=[t.pk for t in threads], unlinked_at__isnull=True
    ).values_list("message__thread_id", "record_type", *[f"{f}_id" for f in Filing.RECORD_FIELDS])
    labels = _filing_record_labels(list(filings))
    # Sent mail is listed by whom it went to: one query for the page's sent messages.
    recipients: dict[int, list[str]] = {}
    outgoing = [m.pk for m in latest.values() if m.is_outgoing]
    for message_id, name, address in (
        MessageAddress.objects.filter(message__in=outgoing, role=MessageAddress.Role.TO)
        .order_by("message", "position")
        .values_list("message_id", "name", "address")
    ):
        recipients.setdefault(message_id, []).append(name or address)
    for thread in threads:
        thread.latest = latest.get(thread.latest_id)
        thread.records = labels.get(thread.pk, [])
        thread.recipients = ", ".join(recipients.get(thread.latest_id, [])) or "(no recipient)"


def _filing_record_labels(rows) -> dict[int, list[str]]:
    """thread id -> short labels of the distinct records its mail is filed on ("Ana Lopez",
    "TKT-1042"), from (thread_id, record_type, account_id, contact_id, ...) rows: one query
    per record type present, at most five."""
    wanted: dict[str, set[int]] = {}
    for _thread_id, record_type, *ids in rows:
        record_id = ids[Filing.RECORD_FIELDS.index(record_type)]
        wanted.setdefault(record_type, set()).add(record_id)
    names = {
        (record_type, record.pk): record_short_label(record)
        for record_type, pks in wanted.items()
        for record in RECORD_MODELS[record_type].objects.filter(pk__in=pks)
    }
    labels: dict[int, list[str]] = {}
    for thread_id, record_type, *ids in rows:
        label = names.get((record_type, ids[Filing.RECORD_FIELDS.index(record_type)]))
        if label and label not in labels.setdefault(thread_id, []):
            labels[thread_id].append(label)
    return labels


def record_short_label(record) -> str:
    if record.record_type in ("ticket", "opportunity"):
        return record.reference
    return str(record)


def list_fingerprint(*, mailbox: Mailbox, folder: Folder | None) -> str:
    """Changes when the folder's mail changes in a way the list shows (new mail, read or
    unread, a message leaving): the inbox polls with it and gets nothing back while it holds.
    One aggregate query."""
    messages = Message.objects.filter(mailbox=mailbox)
    if folder is not None:
        messages = messages.filter(locations__folder=folder)
    figures = messages.aggregate(
        newest=Max("pk"),
        total=Count("pk", distinct=True),
        unread=Count("pk", filter=Q(seen=False), distinct=True),
        flagged=Count("pk", filter=Q(flagged=True), distinct=True),
        filings=Count("filings", filter=Q(filings__unlinked_at__isnull=True), distinct=True),
    )
    return "-".join(
        str(figures[k] or 0) for k in ("newest", "total", "unread", "flagged", "filings")
    )


def conversation_messages(*, user, message: Message) -> list[Message]:
    """Every message of `message`'s thread (its mailbox only, which the gate already let the
    user read), oldest first, with addresses, attachments and active filings (and their
    records and the people who made them) in one query each."""
    messages = readable_messages(user).filter(mailbox=message.mailbox_id)
    if message.thread_id:
        messages = messages.filter(thread=message.thread_id)
    else:
        messages = messages.filter(pk=message.pk)
    filings = Filing.objects.filter(unlinked_at__isnull=True).select_related(
        "by_person", *Filing.RECORD_FIELDS
    )
    return list(
        messages.select_related("mailbox")
        .prefetch_related(
            Prefetch("addresses", queryset=MessageAddress.objects.order_by("role", "position")),
            "attachments",
            Prefetch("filings", queryset=filings, to_attr="active_filings"),
        )
        .order_by(F("date").asc(nulls_first=True), "pk")
    )


def move_targets(*, message: Message) -> list[Folder]:
    """Folders of the message's mailbox on the server that it can be moved to."""
    return list(
        Folder.objects.filter(
            mailbox=message.mailbox_id, is_local=False, is_selectable=True, exists_on_server=True
        )
        .filter(Q(is_active=True) | ~Q(special_use=""))
        .order_by("name")
    )


def filing_reason(filing: Filing) -> str:
    """Why a message is on a record, as a person reads it: "Sender is a contact", "Ticket
    reference in subject", "Filed by Ana, 3 May"."""
    if filing.by_person_id:
        person = filing.by_person
        name = (person.first_name or person.get_username()) if person else "someone"
        return f"Filed by {name}, {filing.created_at.day} {filing.created_at:%b}"
    if filing.rule == Filing.Rule.SUBJECT_REFERENCE:
        kind = RECORD_LABELS.get(filing.record_type, "Record").lower()
        return f"{kind.capitalize()} reference in subject"
    return filing.get_rule_display()


def get_filing_or_404(*, user, pk: int) -> Filing:
    """A filing of a message the user may read (the same 404 as a missing one otherwise)."""
    from django.http import Http404

    filing = (
        Filing.objects.filter(pk=pk, message__in=readable_messages(user))
        .select_related("message", "message__mailbox")
        .first()
    )
    if filing is None:
        raise Http404("No such filing.")
    return filing
