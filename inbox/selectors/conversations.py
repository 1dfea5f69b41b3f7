"""The Inbox: folders with unread counts, the conversation list with its filters and search, and
one conversation. Every query starts from inbox/permissions.py, so a message from a mailbox the
viewer may not read never reaches a template, and each page costs a fixed number of queries
whatever the number of messages (Exists/Subquery annotations, one bulk query per kind of thing).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
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
from django.utils import timezone

from crm.models import (
    RECORD_MODELS,
)

from ..models import (
    Filing,
    Folder,
    Location,
    Mailbox,
    Message,
    MessageAddress,
    PendingChange,
    Thread,
    ThreadEvent,
    ThreadRead,
)
from ..permissions import readable_mailbox_ids, readable_messages
from .qualify import RECORD_LABELS

# The Inbox's folder order: the folders people live in first, then the rest by name.
_SPECIAL_ORDER = ["inbox", "sent", "drafts", "archive", "flagged", "all", "junk", "trash"]


def unread_messages(
    messages: QuerySet[Message], *, user, mailbox: Mailbox | None
) -> QuerySet[Message]:
    """The messages of `messages` (all of `mailbox`) that are unread for `user`; with no
    `mailbox` (All mailboxes, docs/product.md §7.2) each message by its own mailbox's rule.

    On a shared mailbox reading is personal (docs/product.md §7.8): once a person has opened a
    conversation, their ThreadRead row decides (every message stored after it is unread for
    them); before that, the server's \\Seen does (history, mail read in another client). Our
    own mail is never unread. A personal mailbox has one reader: \\Seen alone."""
    if mailbox is not None and not mailbox.reads_per_user:
        return messages.filter(seen=False)
    mine = ThreadRead.objects.filter(user=user, thread=OuterRef("thread")).values("read_up_to")
    per_reader = (Q(my_read__isnull=True, seen=False) | Q(pk__gt=F("my_read"))) & Q(
        is_outgoing=False
    )
    if mailbox is None:
        per_reader = Q(mailbox__kind=Mailbox.Kind.PERSONAL, seen=False) | (
            Q(mailbox__kind=Mailbox.Kind.SHARED) & per_reader
        )
    return messages.annotate(my_read=Subquery(mine[:1])).filter(per_reader)


def in_scope(*, mailbox: Mailbox | None, user, through: str = "") -> Q:
    """The rows of one mailbox (which came from the permission gate), or with no `mailbox` of
    every mailbox `user` may read (All mailboxes, docs/product.md §7.2): the list's one access
    check. `through` is the path to the mailbox ("thread__" for a ThreadEvent)."""
    if mailbox is not None:
        return Q(**{f"{through}mailbox": mailbox})
    return Q(**{f"{through}mailbox__in": readable_mailbox_ids(user)})


def folders_with_unread(*, mailbox: Mailbox, user) -> list[Folder]:
    """The mailbox's folders with their unread counts (unread for `user`), in one query (a
    grouped count of the unread messages located in each folder)."""
    in_folder = Message.objects.filter(locations__folder=OuterRef("pk"))
    unread = (
        unread_messages(in_folder, user=user, mailbox=mailbox)
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


SEARCH_MAX = 200  # characters of a search that are used (docs/product.md §7.1)


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
    # The words typed were longer than SEARCH_MAX: their beginning is searched, and the list
    # says so (docs/product.md §7.1).
    shortened: bool = False

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
    search = search.strip()[:SEARCH_MAX]
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


def _filtered_messages(
    messages: QuerySet[Message], filters: MessageFilters, *, user, mailbox: Mailbox | None
) -> QuerySet:
    if filters.unread:
        messages = unread_messages(messages, user=user, mailbox=mailbox)
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


# --- Views: conversations by owner and state (docs/product.md §7.8) ---------------------------


def open_now(now: dt.datetime) -> Q:
    """Open, or snoozed until a moment already past: a snooze ends on time even when the beat
    that writes it (relay.wake_snoozed) runs late."""
    return Q(status=Thread.Status.OPEN) | Q(status=Thread.Status.SNOOZED, snoozed_until__lte=now)


@dataclass(frozen=True)
class ConversationView:
    """One entry of the inbox sidebar's views: a condition on Thread for a user at a moment.
    `shared_only` views make no sense with one reader (a personal mailbox)."""

    slug: str
    label: str
    condition: Callable[..., Q]
    shared_only: bool = False


VIEWS: list[ConversationView] = [
    ConversationView(
        "mine", "Mine", lambda user, now: open_now(now) & Q(assignee=user), shared_only=True
    ),
    ConversationView(
        "unassigned",
        "Unassigned",
        lambda user, now: open_now(now) & Q(assignee__isnull=True),
        shared_only=True,
    ),
    ConversationView("open", "All open", lambda user, now: open_now(now)),
    ConversationView("waiting", "Waiting", lambda user, now: Q(status=Thread.Status.WAITING)),
    ConversationView(
        "snoozed",
        "Snoozed",
        lambda user, now: Q(status=Thread.Status.SNOOZED, snoozed_until__gt=now),
    ),
    ConversationView("done", "Done", lambda user, now: Q(status=Thread.Status.DONE)),
]


def register_view(view: ConversationView, *, after: str | None = None) -> None:
    """Add a view to the sidebar (e.g. Mentions): its count and list come with it."""
    if any(v.slug == view.slug for v in VIEWS):
        return
    index = next((i + 1 for i, v in enumerate(VIEWS) if v.slug == after), len(VIEWS))
    VIEWS.insert(index, view)


def views_for(mailbox: Mailbox) -> list[ConversationView]:
    return [v for v in VIEWS if mailbox.reads_per_user or not v.shared_only]


def get_view(mailbox: Mailbox, slug: str) -> ConversationView | None:
    return next((v for v in views_for(mailbox) if v.slug == slug), None)


_OUT_OF_SIGHT = [Folder.SpecialUse.TRASH, Folder.SpecialUse.JUNK]


def live_threads(*, mailbox: Mailbox) -> QuerySet[Thread]:
    """The mailbox's conversations the views count: those with a message that is not only in
    Trash or Junk."""
    binned = Location.objects.filter(message=OuterRef("pk"), folder__special_use__in=_OUT_OF_SIGHT)
    kept = Message.objects.filter(thread=OuterRef("pk")).filter(~Exists(binned))
    return Thread.objects.filter(mailbox=mailbox).filter(Exists(kept))


def view_counts(*, mailbox: Mailbox, user, now: dt.datetime | None = None) -> dict[str, int]:
    """How many conversations each view holds for `user`: one query."""
    now = now or timezone.now()
    views = views_for(mailbox)
    if not views:
        return {}
    figures = live_threads(mailbox=mailbox).aggregate(
        **{v.slug: Count("pk", filter=v.condition(user, now)) for v in views}
    )
    return {slug: figures[slug] or 0 for slug in figures}


def conversations(
    *,
    mailbox: Mailbox | None,
    folder: Folder | None,
    filters: MessageFilters,
    user,
    view: ConversationView | None = None,
    now: dt.datetime | None = None,
) -> QuerySet[Thread]:
    """The conversations (threads) of a readable mailbox with at least one message in
    `folder` that passes the filters (or, for a view, the view's conversations across the
    mailbox), newest activity first. Each row carries its newest matching message's id and
    date, its unread count for `user`, whether any message is flagged or has attachments, and
    its assignee; `attach_latest` then fetches those newest messages in one query.

    The mailbox must come from the permission gate (get_mailbox_or_404). With no mailbox:
    every folder of every mailbox `user` may read (All mailboxes, docs/product.md §7.2)."""
    now = now or timezone.now()
    scope = in_scope(mailbox=mailbox, user=user)
    matching = Message.objects.filter(scope, thread=OuterRef("pk"))
    if mailbox is None:
        folder = view = None
    if folder is not None and view is None:
        matching = matching.filter(locations__folder=folder)
    matching = _filtered_messages(matching, filters, user=user, mailbox=mailbox)
    newest = matching.order_by(F("date").desc(nulls_last=True), "-pk")
    in_thread = Message.objects.filter(thread=OuterRef("pk"))
    unread = unread_messages(in_thread, user=user, mailbox=mailbox).order_by().values("thread")
    threads = Thread.objects.filter(scope)
    if view is not None:
        threads = live_threads(mailbox=mailbox).filter(view.condition(user, now))
    return (
        threads.filter(Exists(matching))
        .select_related("assignee")
        .annotate(
            latest_id=Subquery(newest.values("pk")[:1]),
            latest_date=Subquery(newest.values("date")[:1]),
            unread_count=Subquery(
                unread.annotate(n=Count("pk")).values("n"), output_field=IntegerField()
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


def effective_status(thread: Thread, now: dt.datetime | None = None) -> str:
    """The status people see: a snooze that ended is Open, whether or not the beat wrote it."""
    now = now or timezone.now()
    if thread.status == Thread.Status.SNOOZED and (
        thread.snoozed_until is None or thread.snoozed_until <= now
    ):
        return Thread.Status.OPEN
    return thread.status


def assignable_users(*, mailbox: Mailbox):
    """The people a conversation of `mailbox` may be given to, by name: whoever may read it
    (on a personal mailbox, its owner alone)."""
    users = get_user_model().objects.filter(is_active=True)
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        return users.filter(pk=mailbox.owner_id)
    return (
        users.filter(Q(granted_mailboxes=mailbox) | Q(groups__granted_mailboxes=mailbox))
        .distinct()
        .order_by("first_name", "last_name", "username")
    )


def timeline_events(*, thread_id: int | None) -> list[ThreadEvent]:
    """The conversation's events, oldest first, with who did them: one query."""
    if not thread_id:
        return []
    return list(ThreadEvent.objects.filter(thread=thread_id).select_related("actor"))


_TICKET_WORDS = {"open": "open again", "waiting": "waiting on the customer", "done": "resolved"}


def event_text(event: ThreadEvent) -> str:
    """ "Sofia assigned this to Lukas", "Done by Daniel", "Reopened by a reply from Ana"."""
    from ..services.conversations import user_label

    who = user_label(event.actor) if event.actor_id else "Relay"
    data = event.data or {}
    if event.kind == ThreadEvent.Kind.ASSIGNED:
        target = data.get("assignee_name", "someone")
        if event.actor_id and data.get("assignee") == event.actor_id:
            return f"{who} took this"
        return f"{who} assigned this to {target}"
    if event.kind == ThreadEvent.Kind.UNASSIGNED:
        return f"{who} unassigned this"
    if event.kind == ThreadEvent.Kind.REOPENED:
        return f"Reopened by a reply from {data.get('sender') or 'the customer'}"
    if event.kind == ThreadEvent.Kind.WOKE:
        return "Back from snooze"
    status = data.get("status", "")
    if status == Thread.Status.SNOOZED:
        until = data.get("until", "")
        try:
            moment = timezone.localtime(dt.datetime.fromisoformat(until))
            until = f"{moment.day} {moment:%b}, {moment:%H:%M}"
        except ValueError:
            pass
        return f"Snoozed until {until} by {who}"
    if data.get("reason") == "reply":
        return "Waiting on the customer after our reply"
    label = Thread.Status(status).label if status in Thread.Status.values else status
    if data.get("reason") == "ticket":
        ticket = data.get("ticket") or "its ticket"
        return f"{label}: {ticket} is {_TICKET_WORDS.get(status, status)}"
    if status == Thread.Status.WAITING:
        return f"{who} set this to wait on the customer"
    return f"{label} by {who}" if status != Thread.Status.OPEN else f"Reopened by {who}"


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
        # The sender's own contact is the row's sender already: the tags name the others
        # (the account, the ticket...). A thread filed only there is still not "Unfiled".
        shown = thread.latest
        sender = (shown.from_name or "").strip().casefold() if shown else ""
        thread.records = [
            label for label in labels.get(thread.pk, []) if label.casefold() != sender or not sender
        ]
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


def list_fingerprint(*, mailbox: Mailbox | None, folder: Folder | None, user) -> str:
    """Changes when the folder's mail changes in a way the list shows (new mail, read or
    unread, a message leaving, a conversation assigned or closed by anyone): the inbox polls
    with it and gets nothing back while it holds. Three aggregate queries. No mailbox: every
    mailbox `user` may read (All mailboxes)."""
    messages = Message.objects.filter(in_scope(mailbox=mailbox, user=user))
    if folder is not None:
        messages = messages.filter(locations__folder=folder)
    thread_scope = in_scope(mailbox=mailbox, user=user, through="thread__")
    events = ThreadEvent.objects.filter(thread_scope).aggregate(n=Max("pk"))["n"]
    reads = ThreadRead.objects.filter(thread_scope, user=user).aggregate(n=Max("read_at"))["n"]
    state = f"{events or 0}-{reads.timestamp() if reads else 0}-"
    figures = messages.aggregate(
        newest=Max("pk"),
        total=Count("pk", distinct=True),
        unread=Count("pk", filter=Q(seen=False), distinct=True),
        flagged=Count("pk", filter=Q(flagged=True), distinct=True),
        filings=Count("filings", filter=Q(filings__unlinked_at__isnull=True), distinct=True),
    )
    return state + "-".join(
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


@dataclass
class FiledRecord:
    """One record a conversation is filed on, for the conversation's side panel: the record
    once, however many of its messages are filed there, with every reason and its evidence."""

    record: object
    record_type: str
    type_label: str
    label: str
    filing_id: int  # one of its filings: the panel's Remove takes the conversation off it
    messages: int = 0
    reasons: list[dict] = field(default_factory=list)
    unverified: bool = False


def conversation_filings(thread: list[Message]) -> list[FiledRecord]:
    """The records `thread`'s messages are filed on (docs/product.md §7.12), each once, in the
    order they were first filed, from the filings conversation_messages prefetched: no query.
    Each reason is the rule in words ("Sender is a contact") with its evidence (the address,
    header or reference that made it) and how many messages it filed."""
    records: dict[tuple[str, int], FiledRecord] = {}
    for message in thread:
        for filing in getattr(message, "active_filings", []):
            record = filing.record
            key = (filing.record_type, record.pk)
            item = records.get(key)
            if item is None:
                item = records[key] = FiledRecord(
                    record=record,
                    record_type=filing.record_type,
                    type_label=RECORD_LABELS.get(filing.record_type, "Record"),
                    label=record_short_label(record),
                    filing_id=filing.pk,
                )
            item.messages += 1
            item.unverified = item.unverified or filing.sender_unverified
            # A person's filing says who and when; its evidence is only "Filed by hand".
            evidence = "" if filing.by_person_id else (filing.evidence or "")[:300]
            why = filing_reason(filing)
            known = next(
                (r for r in item.reasons if r["why"] == why and r["evidence"] == evidence), None
            )
            if known is None:
                item.reasons.append({"why": why, "evidence": evidence, "messages": 1})
            else:
                known["messages"] += 1
    return list(records.values())


def pending_change_retryable(change: PendingChange) -> bool:
    """Whether writing `change` again can still do what it said: its copy is where it was
    (same folder, same UIDVALIDITY) and was not left flagged for deletion by a server that
    cannot expunge one message (a second move would copy it twice, docs/reliability.md S-30)."""
    location = change.location
    return (
        bool(change.error)
        and change.done_at is not None
        and location is not None
        and location.uidvalidity == change.uidvalidity
        and "\\Deleted" not in location.flags
    )


def failed_server_writes(*, message_ids: list[int]) -> list[PendingChange]:
    """The changes made in the CRM to these messages that the server refused (docs/product.md
    §7.12, docs/reliability.md X-19), newest first, each once: one a later change of the same
    kind to the same copy replaced is left out, and so is one that can no longer be retried
    (the copy moved, or was left flagged for deletion: the health page lists those). Two
    queries."""
    later = PendingChange.objects.filter(
        location=OuterRef("location"), action=OuterRef("action"), pk__gt=OuterRef("pk")
    )
    changes = (
        PendingChange.objects.filter(location__message__in=message_ids, done_at__isnull=False)
        .exclude(error="")
        .filter(~Exists(later))
        .select_related("location")
        .order_by("-done_at", "-pk")
    )
    return [c for c in changes if pending_change_retryable(c)]


def get_pending_change_or_404(*, user, pk: int) -> PendingChange:
    """A change to a message the user may read (the same 404 as a missing one otherwise)."""
    from django.http import Http404

    change = (
        PendingChange.objects.filter(pk=pk, location__message__in=readable_messages(user))
        .select_related("location", "location__message")
        .first()
    )
    if change is None:
        raise Http404("No such change.")
    return change


# Bulk moves need the folder on the server: a conversation whose mailbox has none is left alone.
MOVE_ACTIONS = {"archive": Folder.SpecialUse.ARCHIVE, "trash": Folder.SpecialUse.TRASH}


def bulk_move_folders(*, mailbox_ids: Iterable[int]) -> dict[tuple[int, str], Folder]:
    """{(mailbox id, "archive" | "trash"): the server folder}, for the mailboxes that have
    them: one query."""
    found = {}
    for folder in Folder.objects.filter(
        mailbox_id__in=set(mailbox_ids),
        is_local=False,
        special_use__in=list(MOVE_ACTIONS.values()),
    ).order_by("pk"):
        found.setdefault((folder.mailbox_id, folder.special_use), folder)
    return found
