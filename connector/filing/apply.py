"""Apply matching decisions: write filings and triage entries, create the contacts and tickets
the rules asked for, and queue acknowledgements and forwards in the outbox (docs/product.md §4).

One transaction per batch, so a batch is filed entirely or not at all; the messages are locked
first, so a retried task or a concurrent refile of the same messages waits and then finds the
work done (filings are unique per message and record, acknowledgements have deterministic
Message-IDs, a message already on a ticket never opens another).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from connector.filing import tokens
from connector.filing.matching import (
    Decision,
    Ref,
    among,
    decide_batch,
    load_facts,
    load_lookups,
)
from connector.ingest.bulk import insert_ignoring_conflicts
from connector.ingest.gcpause import gc_paused
from crm.models import ContactEmail, Ticket
from crm.services import contact_create, ticket_create
from inbox.models import Filing, Message, OutboxEntry, TriageEntry
from inbox.signals import mail_filed

log = logging.getLogger(__name__)

BATCH_SIZE = 1000  # messages per transaction; the bulk lookups cost the same for 20 or 1000


@dataclass
class FilingReport:
    messages: int = 0
    filings: int = 0
    triaged: int = 0
    contacts_created: int = 0
    tickets_opened: int = 0
    acknowledgements: int = 0
    forwards: int = 0

    def add(self, other: FilingReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self.__dataclass_fields__)


def file_messages(
    *, message_ids: Iterable[int], initial: bool = False, retroactive: bool = False, now=None
) -> FilingReport:
    """File messages (or, `retroactive`, re-match old ones) in batches of BATCH_SIZE. New mail
    comes here through connector/emailapi/intake.py, which answers Email API documents first."""
    ids = sorted(set(message_ids))
    report = FilingReport()
    for start in range(0, len(ids), BATCH_SIZE):
        with gc_paused():  # connector/ingest/gcpause.py: a quarter of filing's CPU otherwise
            report.add(
                file_batch(
                    message_ids=ids[start : start + BATCH_SIZE],
                    initial=initial,
                    retroactive=retroactive,
                    now=now,
                )
            )
    return report


def file_batch(
    *, message_ids: Iterable[int], initial: bool = False, retroactive: bool = False, now=None
) -> FilingReport:
    """File one batch in a transaction; then, in another once that one has committed, pass
    the thread's records on where the batch's order left them behind (see
    _pass_on_to_earlier_replies)."""
    now = now or timezone.now()
    message_ids = list(message_ids)
    report, facts, waiting = _file_batch(
        message_ids, initial=initial, retroactive=retroactive, now=now
    )
    if not retroactive:
        report.add(_pass_on_to_earlier_replies(facts, waiting, now=now))
    return report


@transaction.atomic
def _file_batch(message_ids: list[int], *, initial: bool, retroactive: bool, now):
    """(report, the batch's facts, its replies whose parents gave them nothing yet)."""
    facts = load_facts(message_ids, lock=True)
    lookups = load_lookups(facts, now=now)
    decisions = decide_batch(facts, lookups, initial=initial, retroactive=retroactive, now=now)
    report = apply_decisions(decisions, now=now, retroactive=retroactive)
    # A parent we hold that has no filings yet may be one another batch is filing right now,
    # unseen until it commits. (A parent we do not hold: its own filing passes its records on.)
    waiting = [
        f.pk
        for f in facts
        if any((f.mailbox_id, mid) in lookups.known_messages for _, mid in f.parents)
        and not any(lookups.thread_filings.get((f.mailbox_id, mid)) for _, mid in f.parents)
    ]
    if not initial and not retroactive:
        _customers_reopen_tickets(decisions, lookups)
    Message.objects.filter(pk__in=list(message_ids), filed_at__isnull=True).update(filed_at=now)
    # Listeners (notifications/receivers.py: a customer replied on a ticket) act on commit.
    mail_filed.send(
        sender=Message, message_ids=list(message_ids), initial=initial, retroactive=retroactive
    )
    return report, facts, waiting


THREAD_DEPTH = 5  # generations of earlier replies a late parent's records reach in one batch


@transaction.atomic
def _pass_on_to_earlier_replies(facts, waiting: list[int], *, now) -> FilingReport:
    """Replies filed before their parent inherit its records now (rule 1, with its checks).

    Mail is not always filed in the order it was written: a sync's filing chunks are separate
    tasks run by whichever worker processes are free (connector/scheduling/receivers.py), and a
    customer's answer in INBOX can be stored before our message in Sent. A reply filed first
    found nothing to inherit. Once a batch has committed, it looks for replies to its messages
    that were filed before them, and again at its own replies whose parents gave them nothing
    (their parent may have been filed by another batch at the same moment, unseen until both
    had committed: of two such batches, the one that commits second sees the other here). The
    parents' records reach those replies, then their own replies', up to THREAD_DEPTH
    generations. No lock on the replies: a concurrent filing of the same reply inserts the
    same filings, and a conflict is ignored."""
    report = FilingReport()
    parents = {(f.mailbox_id, f.message_id) for f in facts if f.message_id}
    seen = {f.pk for f in facts}
    again = list(waiting)
    for _ in range(THREAD_DEPTH):
        if not parents and not again:
            break
        # One array parameter (among), the batch's own messages left out here, not in SQL:
        # a thousand literals cost PostgreSQL more than the lookup (bench/matching.py).
        rows = Message.objects.filter(
            among(Message, "in_reply_to", {mid for _, mid in parents}),
            filed_at__isnull=False,
        ).values_list("pk", "mailbox_id", "in_reply_to")
        replies = again + [
            pk for pk, mailbox, parent in rows if (mailbox, parent) in parents and pk not in seen
        ]
        again = []
        if not replies:
            break
        seen.update(replies)
        replies_facts = load_facts(replies)
        lookups = load_lookups(replies_facts, now=now)
        decisions = decide_batch(replies_facts, lookups, thread_only=True, now=now)
        # retroactive: an UNFILED triage entry of a reply it now places is resolved.
        late = apply_decisions(decisions, now=now, retroactive=True)
        late.messages = 0  # counted when they were filed
        report.add(late)
        parents = {(f.mailbox_id, f.message_id) for f in replies_facts if f.message_id}
    return report


def _customers_reopen_tickets(decisions: list[Decision], lookups) -> None:
    """A customer's new mail filed on a resolved or closed ticket reopens it (docs/product.md
    §7.8), also when it starts a new thread that names the ticket. Through Ticket.save, so the
    ticket's conversations follow (inbox/receivers.py). Only new mail: filing runs once per
    message (filed_at), and history never comes here. Our own mail, automated mail and a
    sender our server failed to authenticate reopen nothing."""
    ids = {
        p.ref.record_id
        for d in decisions
        if not (
            d.unverified
            or d.facts.is_automated
            or d.facts.is_outgoing
            or d.facts.pk in lookups.in_sent_folder
            or d.facts.from_address in lookups.staff
            or d.facts.from_address == d.mailbox_address
        )
        for p in d.placements
        if p.ref.record_type == "ticket" and p.ref.record_id > 0
    }
    if not ids:
        return
    done = [Ticket.Status.RESOLVED, Ticket.Status.CLOSED]
    for ticket in Ticket.objects.select_for_update().filter(pk__in=ids, status__in=done):
        ticket.status = Ticket.Status.OPEN
        ticket.save(update_fields=["status", "updated_at"])


def apply_decisions(decisions: list[Decision], *, now, retroactive: bool = False) -> FilingReport:
    report = FilingReport(messages=len(decisions))
    created: dict[Ref, int] = {}
    tickets: dict[int, Ticket] = {}
    new_contacts = [d.new_contact for d in decisions if d.new_contact is not None]
    created.update(_contacts_created_meanwhile(new_contacts))
    for decision in decisions:
        new = decision.new_contact
        if new is not None and new.ref not in created:
            first, _, last = (new.name or new.address.partition("@")[0]).strip().rpartition(" ")
            contact = contact_create(
                first_name=(first or last)[:100],
                last_name=(last if first else "")[:100],
                account_id=new.account_id,
                emails=[new.address],
            )
            created[new.ref] = contact.pk
            report.contacts_created += 1
    forwards = [d for d in decisions if d.forward_to]
    wanted = [d.facts.pk for d in decisions if d.new_ticket is not None or d.forward_to]
    bodies = (
        dict(Message.objects.filter(pk__in=wanted).values_list("pk", "text_body")) if wanted else {}
    )
    for decision in decisions:
        new = decision.new_ticket
        if new is not None:
            contact_id = None
            if new.contact is not None:
                contact_id = created.get(new.contact, new.contact.record_id)
            ticket = ticket_create(
                subject=new.subject,
                description=new.description or bodies.get(decision.facts.pk, "")[:10_000],
                contact_id=contact_id,
                account_id=new.account_id,
            )
            created[new.ref] = ticket.pk
            tickets[ticket.pk] = ticket
            report.tickets_opened += 1

    filings, triage, outbox, filed = [], [], [], set()
    for decision in decisions:
        f = decision.facts
        for placement in decision.placements:
            ref = placement.ref
            record_id = created.get(ref, ref.record_id)
            if record_id < 0:
                continue  # a record the batch did not create (cannot happen; never write -1)
            filings.append(
                (
                    f.pk,
                    ref.record_type,
                    *(record_id if ref.record_type == n else None for n in Filing.RECORD_FIELDS),
                    placement.rule,
                    _evidence(placement.evidence, decision.unverified),
                    [a.as_json() for a in placement.alternatives],
                    bool(decision.unverified),
                    now,
                )
            )
            filed.add(f.pk)
        for reason, details in decision.triage:
            triage.append((f.pk, reason, details[:1000], now))
        if decision.acknowledge_to and decision.new_ticket is not None:
            ticket = tickets[created[decision.new_ticket.ref]]
            outbox.append(_acknowledgement(decision, ticket))
    outbox.extend(_forward(d, bodies.get(d.facts.pk, "")) for d in forwards)

    report.filings = insert_ignoring_conflicts(Filing, FILING_COLUMNS, filings)
    if triage:
        insert_ignoring_conflicts(TriageEntry, TRIAGE_COLUMNS, triage)
        report.triaged = len({t[0] for t in triage})
    if outbox:
        OutboxEntry.objects.bulk_create(outbox, ignore_conflicts=True)
        report.acknowledgements = sum(o.purpose == "acknowledgement" for o in outbox)
        report.forwards = sum(o.purpose == "forward_unplaced" for o in outbox)
    if filed and retroactive:
        # Mail that waited in triage because nothing placed it is placed now.
        TriageEntry.objects.filter(
            message_id__in=filed, reason=TriageEntry.Reason.UNFILED, resolved_at__isnull=True
        ).update(resolved_at=now)
    return report


FILING_COLUMNS = (
    "message_id",
    "record_type",
    *(f"{n}_id" for n in Filing.RECORD_FIELDS),
    "rule",
    "evidence",
    "alternatives",
    "sender_unverified",
    "created_at",
)
TRIAGE_COLUMNS = ("message_id", "reason", "details", "created_at")


def _contacts_created_meanwhile(new_contacts) -> dict[Ref, int]:
    """Two batches (two mailboxes) may meet the same unknown sender at once. Each takes a
    transaction lock on the address, then looks again: the second one uses the contact the
    first created instead of making a duplicate."""
    if not new_contacts:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for address in sorted(n.address for n in new_contacts):  # sorted: no deadlock
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [address])
    found: dict[str, int] = {}
    for email, contact_id in (
        ContactEmail.objects.filter(email__in=[n.address for n in new_contacts])
        .order_by("contact__created_at", "contact_id")
        .values_list("email", "contact_id")
    ):
        found.setdefault(email, contact_id)
    return {n.ref: found[n.address] for n in new_contacts if n.address in found}


def _evidence(evidence: str, unverified: str) -> str:
    if not unverified:
        return evidence
    return f"{evidence}; unverified sender ({unverified})"[:1000]


def _acknowledgement(decision: Decision, ticket: Ticket) -> OutboxEntry:
    f = decision.facts
    reference = ticket.reference
    references = " ".join([*f.references, f.message_id]).strip()
    return OutboxEntry(
        mailbox_id=f.mailbox_id,
        state=OutboxEntry.State.QUEUED,
        # Deterministic: filing the same message twice can never queue two acknowledgements.
        message_id=tokens.make_message_id(ticket, nonce=f"ack{f.pk:08d}"),
        from_address=decision.mailbox_address,
        to=[decision.acknowledge_to],
        subject=f"[{reference}] {f.subject or '(no subject)'}"[:1000],
        text_body=(
            f"Thank you for your message. We have opened ticket {reference} and will reply "
            f"as soon as we can.\n\nPlease keep [{reference}] in the subject when you write "
            "about this request.\n"
        ),
        in_reply_to=f.message_id,
        references=references,
        reply_to_message_id=f.pk,
        record_type="ticket",
        record_id=ticket.pk,
        purpose="acknowledgement",
    )


def _forward(decision: Decision, text_body: str) -> OutboxEntry:
    f = decision.facts
    reasons = "; ".join(details for _, details in decision.triage)
    return OutboxEntry(
        mailbox_id=f.mailbox_id,
        state=OutboxEntry.State.QUEUED,
        # Deterministic (one forward per message however often filing runs), not guessable.
        message_id=tokens.make_internal_message_id("forward", f.pk),
        from_address=decision.mailbox_address,
        to=[decision.forward_to],
        subject=f"Fwd: {f.subject or '(no subject)'}"[:1000],
        text_body=(
            f"No rule could place this message ({reasons}). It waits in the triage queue.\n\n"
            f"---------- Forwarded message ----------\n"
            f"From: {f.from_name} <{f.from_address}>\n"
            f"Date: {f.date}\nSubject: {f.subject}\n\n{text_body}"
        ),
        in_reply_to="",
        reply_to_message_id=f.pk,
        purpose="forward_unplaced",
    )
