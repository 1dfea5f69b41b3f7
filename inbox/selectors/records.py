"""The Email tab of a record: its mail, from every mailbox the viewer may read, each message once,
with personal mail shown at the level its owner chose (docs/product.md §2.2).
"""

from __future__ import annotations

from django.db.models import (
    Case,
    Exists,
    F,
    IntegerField,
    OuterRef,
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
    Mailbox,
    Message,
    MessageAddress,
)
from ..permissions import readable_mailbox_ids

# How much of a message the viewer may see on a record's Email tab (lower is more).
FULL, FULL_BY_PRIVACY, SUBJECT, PEOPLE = 0, 1, 2, 3


def messages_for_record(*, user, record_type: str, record_id: int) -> QuerySet[Message]:
    """Mail filed on one record (active filings only: an unlinked filing is history), newest
    first, one entry per message, from

    - the mailboxes `user` may read (shown in full),
    - other users' personal mailboxes, at the level each owner chose (docs/product.md §2.2):
      everything, subject and people, or people and time; "nothing" hides them. Shared mailboxes the
      user is not granted are not shown at all.

    The same mail may reach several mailboxes (a customer writes to support@ and Cc's a
    salesperson): identical copies are one entry, the copy the viewer may see most of (then the
    oldest row). Copies are the same mail only when their bytes are (the content hash): a
    Message-ID, sender and date are whatever the sender wrote, and a forged copy matching them
    must show beside the genuine mail, never hide it (docs/reliability.md S-08). Each row is
    annotated with `visibility` (FULL ... PEOPLE), the filing's rule and whether a person made
    it. One query for the page and one for the count."""
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
    better_copy = visible.filter(sha256=OuterRef("sha256")).filter(
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


def annotate_for_display(messages) -> None:
    """What an Email tab or timeline row may show of each message (docs/product.md §2.2):
    `full` (text and attachments), `readable` (opens), `show_subject`, whether it is another
    user's personal mail, and the filing rule's label. No query."""
    rule_labels = dict(Filing.Rule.choices)
    for message in messages:
        message.filing_rule_label = rule_labels.get(message.filing_rule, message.filing_rule)
        message.full = message.visibility <= FULL_BY_PRIVACY
        message.readable = message.visibility == FULL
        message.show_subject = message.visibility <= SUBJECT
        message.is_personal_of_other = (
            not message.readable and message.mailbox.kind == Mailbox.Kind.PERSONAL
        )
