"""Selectors that read mail for the pages. Every one starts from inbox.permissions, so a
message from a mailbox the viewer may not read never reaches a template.

Each returns what its page shows in a fixed number of queries, whatever the number of
messages: lists are paginated querysets with annotations (Exists/Subquery, never a query per
row), and what a page adds to its rows comes in one bulk query per kind of thing."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

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

from crm import selectors as crm_selectors
from crm.models import (
    RECORD_MODELS,
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Lead,
    LeadEmail,
    Opportunity,
    Ticket,
)

from .models import (
    Filing,
    Folder,
    LedgerEntry,
    Mailbox,
    Message,
    MessageAddress,
    PrimaryMailbox,
    Thread,
    TriageEntry,
    UserPreferences,
)
from .permissions import readable_mailbox_ids, readable_messages

RECORD_LABELS = {
    "account": "Account",
    "contact": "Contact",
    "lead": "Lead",
    "ticket": "Ticket",
    "opportunity": "Opportunity",
}

# The Inbox's folder order: the folders people live in first, then the rest by name.
_SPECIAL_ORDER = ["inbox", "sent", "drafts", "archive", "flagged", "all", "junk", "trash"]


# --- preferences -----------------------------------------------------------------------------


def user_preferences(*, user) -> UserPreferences:
    """The user's inbox preferences; an unsaved row with the defaults until they change one
    (reading a page never writes)."""
    prefs = UserPreferences.objects.filter(user=user).first()
    return prefs or UserPreferences(user=user)


def primary_mailbox_id(*, user) -> int | None:
    return PrimaryMailbox.objects.filter(user=user).values_list("mailbox_id", flat=True).first()


# --- the Inbox page --------------------------------------------------------------------------


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


# --- the conversation view -------------------------------------------------------------------


def conversation(*, user, message: Message) -> list[Message]:
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


# --- Qualify: suggestions and search ---------------------------------------------------------


@dataclass
class Candidate:
    record: object
    record_type: str
    why: str = ""
    filed: bool = False

    @property
    def key(self) -> str:
        return f"{self.record_type}:{self.record.pk}"

    @property
    def type_label(self) -> str:
        return RECORD_LABELS[self.record_type]


@dataclass
class QualifyContext:
    filings: list[Filing] = field(default_factory=list)
    suggestions: list[Candidate] = field(default_factory=list)


_TICKET_REF = re.compile(r"\b(TKT|OPP)-(\d{1,12})\b", re.IGNORECASE)


def qualify_context(*, message: Message, limit: int = 8) -> QualifyContext:
    """What the Qualify dialog shows for a message: its active filings (to unlink a wrong
    one) and suggested records, best first: the alternatives the matching rules recorded,
    references in the subject, the records owning the message's addresses, their accounts and
    open tickets, and the account owning the sender's domain. At most a dozen queries,
    whatever the data."""
    filings = list(
        Filing.objects.filter(message=message, unlinked_at__isnull=True).select_related(
            "by_person", *Filing.RECORD_FIELDS
        )
    )
    filed = {(f.record_type, getattr(f, f"{f.record_type}_id")) for f in filings}
    wanted: list[tuple[str, int, str]] = []  # (record_type, id, why), best first

    for alternative in Filing.objects.filter(message=message).values_list(
        "alternatives", flat=True
    ):
        for ref in alternative or []:
            if isinstance(ref, dict) and ref.get("record_type") in RECORD_MODELS:
                wanted.append((ref["record_type"], int(ref["id"]), "Also matched the rules"))

    for prefix, number in _TICKET_REF.findall(message.subject or "")[:4]:
        model = Ticket if prefix.upper() == "TKT" else Opportunity
        pk = model.objects.filter(number=int(number)).values_list("pk", flat=True).first()
        if pk:
            wanted.append((model.record_type, pk, f"{prefix.upper()}-{number} in the subject"))

    addresses = [a.address for a in message.addresses.all()] or [message.from_address]
    addresses = [a for a in dict.fromkeys(addresses) if a][:50]
    sender = message.from_address
    for email in ContactEmail.objects.filter(email__in=addresses).select_related("contact"):
        who = "Sender" if email.email == sender else "Recipient"
        wanted.append(("contact", email.contact_id, f"{who} {email.email}"))
        if email.contact.account_id:
            wanted.append(("account", email.contact.account_id, f"Account of {email.email}"))
    contact_ids = [pk for kind, pk, _ in wanted if kind == "contact"]
    for ticket_pk, ref in (
        Ticket.objects.filter(contact__in=contact_ids)
        .exclude(status__in=["resolved", "closed"])
        .values_list("pk", "number")[:5]
    ):
        wanted.append(("ticket", ticket_pk, f"Open ticket TKT-{ref} of this contact"))
    for email in LeadEmail.objects.filter(email__in=addresses):
        wanted.append(("lead", email.lead_id, f"Lead with {email.email}"))
    domain = sender.rpartition("@")[2]
    if domain:
        for account_pk in AccountDomain.objects.filter(domain=domain).values_list(
            "account_id", flat=True
        )[:5]:
            wanted.append(("account", account_pk, f"Domain {domain}"))

    seen: dict[tuple[str, int], str] = {}
    for record_type, pk, why in wanted:
        seen.setdefault((record_type, pk), why)
    keys = list(seen)[: limit * 2]
    by_type: dict[str, set[int]] = {}
    for record_type, pk in keys:
        by_type.setdefault(record_type, set()).add(pk)
    records = {
        (record_type, record.pk): record
        for record_type, pks in by_type.items()
        for record in _picker_queryset(record_type).filter(pk__in=pks)
    }
    suggestions = [
        Candidate(records[key], key[0], seen[key], filed=key in filed)
        for key in keys
        if key in records
    ]
    # Records it is already filed on are listed as filings, not suggested again.
    suggestions = [c for c in suggestions if not c.filed][:limit]
    return QualifyContext(filings=filings, suggestions=suggestions)


def _picker_queryset(record_type: str) -> QuerySet:
    if record_type == "contact":
        return Contact.objects.select_related("account").prefetch_related("emails")
    if record_type == "lead":
        return Lead.objects.prefetch_related("emails")
    if record_type in ("ticket", "opportunity"):
        return RECORD_MODELS[record_type].objects.select_related("account", "contact")
    return Account.objects.prefetch_related("domains")


def record_search(*, search: str, per_type: int = 5) -> list[Candidate]:
    """Records of every type matching `search` (name, address, domain, TKT-1042, ...), a few
    of each type, through the CRM's own list selectors: at most ten queries."""
    search = search.strip()[:200]
    if not search:
        return []
    listers = {
        "contact": crm_selectors.contact_list,
        "lead": crm_selectors.lead_list,
        "account": crm_selectors.account_list,
        "ticket": crm_selectors.ticket_list,
        "opportunity": crm_selectors.opportunity_list,
    }
    found = []
    for record_type, lister in listers.items():
        for record in lister(search=search)[:per_type]:
            found.append(Candidate(record, record_type))
    return found


def get_record_or_none(*, key: str):
    """ "contact:12" -> that Contact, or None for anything else."""
    record_type, _, pk = (key or "").partition(":")
    if record_type not in RECORD_MODELS or not pk.isdigit():
        return None
    return RECORD_MODELS[record_type].objects.filter(pk=int(pk)).first()


# --- Triage ----------------------------------------------------------------------------------


def triage_entries(*, user) -> QuerySet[TriageEntry]:
    """Open triage entries of messages the user may read, newest first, one row per entry
    (a message with two reasons shows both), with the message and its mailbox."""
    return (
        TriageEntry.objects.filter(
            resolved_at__isnull=True, message__mailbox__in=readable_mailbox_ids(user)
        )
        .select_related("message", "message__mailbox")
        .order_by("-created_at", "-pk")
    )


def held_entries(*, user) -> QuerySet[LedgerEntry]:
    """Messages the sync could not store or read (held, or failed and waiting for a retry),
    of the mailboxes the user may read."""
    return (
        LedgerEntry.objects.filter(
            outcome__in=[LedgerEntry.Outcome.HELD, LedgerEntry.Outcome.FAILED],
            mailbox__in=readable_mailbox_ids(user),
        )
        .select_related("folder", "mailbox", "message")
        .order_by("-updated_at", "-pk")
    )


# --- the Email tab ---------------------------------------------------------------------------

# How much of a message the viewer may see on a record's Email tab (lower is more).
FULL, FULL_BY_PRIVACY, SUBJECT, PEOPLE = 0, 1, 2, 3


def messages_for_record(*, user, record_type: str, record_id: int) -> QuerySet[Message]:
    """Mail filed on one record (active filings only: an unlinked filing is history), newest
    first, one entry per message, from

    - the mailboxes `user` may read (shown in full),
    - other users' personal mailboxes, at the level each owner chose (SPEC 2): everything,
      subject and people, or people and time; "nothing" hides them. Shared mailboxes the user
      is not granted are not shown at all.

    The same mail often reaches several mailboxes (a customer writes to support@ and Cc's a
    salesperson): it is one entry, the copy the viewer may see most of (then the oldest row).
    Copies are the same mail when they have the same content hash, or the same Message-ID,
    sender and date. Each row is annotated with `visibility` (FULL ... PEOPLE), the filing's
    rule and whether a person made it. One query for the page and one for the count."""
    if record_type not in RECORD_MODELS:
        raise ValueError(f"Unknown record type {record_type!r}")
    filings = Filing.objects.filter(
        message=OuterRef("pk"),
        record_type=record_type,
        unlinked_at__isnull=True,
        **{f"{record_type}_id": record_id},
    ).order_by("created_at", "pk")
    readable = readable_mailbox_ids(user)
    visibility = Case(
        When(mailbox__in=readable, then=Value(FULL)),
        When(mailbox__privacy=Mailbox.Privacy.FULL, then=Value(FULL_BY_PRIVACY)),
        When(mailbox__privacy=Mailbox.Privacy.SUBJECT, then=Value(SUBJECT)),
        default=Value(PEOPLE),
        output_field=IntegerField(),
    )
    visible = (
        Message.objects.filter(Exists(filings))
        .filter(
            Q(mailbox__in=readable)
            | (
                Q(mailbox__kind=Mailbox.Kind.PERSONAL)
                & ~Q(mailbox__privacy=Mailbox.Privacy.NOTHING)
            )
        )
        .annotate(visibility=visibility)
    )
    same_mail = Q(sha256=OuterRef("sha256")) | Q(
        message_id=OuterRef("message_id"),
        from_address=OuterRef("from_address"),
        date=OuterRef("date"),
        message_id__gt="",
    )
    better_copy = visible.filter(same_mail).filter(
        Q(visibility__lt=OuterRef("visibility"))
        | Q(visibility=OuterRef("visibility"), pk__lt=OuterRef("pk"))
    )
    return (
        visible.filter(~Exists(better_copy))
        .annotate(
            filing_rule=Subquery(filings.values("rule")[:1]),
            filed_by_person=Subquery(filings.values("by_person_id")[:1]),
        )
        .select_related("mailbox", "mailbox__owner")
        .order_by(F("date").desc(nulls_last=True), "-pk")
    )


def attach_recipients(messages) -> None:
    """`message.recipients`: the To and Cc addresses of each message of an Email tab page
    (people are shown at every privacy level but "nothing"): one query."""
    messages = list(messages)
    by_message: dict[int, list[MessageAddress]] = {}
    for address in MessageAddress.objects.filter(
        message__in=[m.pk for m in messages],
        role__in=[MessageAddress.Role.TO, MessageAddress.Role.CC],
    ).order_by("message", "role", "position"):
        by_message.setdefault(address.message_id, []).append(address)
    for message in messages:
        message.recipients = by_message.get(message.pk, [])
