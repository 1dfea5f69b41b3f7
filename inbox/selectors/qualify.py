"""Qualify: the records a message probably belongs on (its people, their accounts, the tickets and
opportunities it names) and a search across every record type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db.models import (
    QuerySet,
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

from ..models import (
    Filing,
    Message,
)

RECORD_LABELS = {
    "account": "Account",
    "contact": "Contact",
    "lead": "Lead",
    "ticket": "Ticket",
    "opportunity": "Opportunity",
}


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
    # The contacts and leads that already have the sender's address: offered before "create"
    # (docs/product.md §4.6), filed or not.
    existing: list[Candidate] = field(default_factory=list)


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
        who = "Sender" if email.email == sender else "Lead with"
        wanted.append(("lead", email.lead_id, f"{who} {email.email}"))
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
    sender_keys = {(kind, pk) for kind, pk, why in wanted if sender and why == f"Sender {sender}"}
    existing = [c for c in suggestions if (c.record_type, c.record.pk) in sender_keys]
    for candidate in existing:
        candidate.why = f"Already has {sender}"
    # Records it is already filed on are listed as filings, not suggested again.
    suggestions = [c for c in suggestions if not c.filed and c not in existing][:limit]
    return QualifyContext(filings=filings, suggestions=suggestions, existing=existing)


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
