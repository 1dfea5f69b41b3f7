"""Events of other layers that become notifications (docs/product.md §7.10). The mail engine
never imports this app: it sends the signals declared in inbox/signals.py, and these receivers
do their work once the sender's transaction has committed (so nothing is told about a change
that was rolled back)."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from crm.models import StaffEmail
from inbox.models import Filing, Mailbox, Message, OutboxEntry, Thread
from inbox.signals import (
    conversation_assigned,
    mail_filed,
    mailbox_grant_expiring,
    mailbox_needs_reconnect,
    outbox_entry_stuck,
)

from .models import Kind
from .services import notify, notify_assigned, notify_customer_replied, notify_many

log = logging.getLogger(__name__)


def _later(work) -> None:
    # robust: a notification must never fail the sync, the send or the save that caused it.
    transaction.on_commit(work, robust=True)


def mailbox_admins(mailbox: Mailbox) -> list:
    """Who must reconnect a mailbox: the owner of a personal one, the admins for a shared one
    (inbox/permissions.py can_manage_mailbox)."""
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        return [mailbox.owner] if mailbox.owner_id else []
    return list(get_user_model().objects.filter(is_superuser=True, is_active=True))


@receiver(mailbox_needs_reconnect)
def on_mailbox_needs_reconnect(sender, mailbox_id: int, reason: str = "", actor_id=None, **kw):
    def work() -> None:
        mailbox = Mailbox.objects.select_related("owner").filter(pk=mailbox_id).first()
        if mailbox is None or mailbox.state != Mailbox.State.NEEDS_RECONNECT:
            return
        actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
        since = mailbox.last_success_at or mailbox.created_at
        text = f"{mailbox.email_address} needs reconnecting"
        if reason:
            text += f": {reason}"
        notify_many(
            recipients=mailbox_admins(mailbox),
            kind=Kind.RECONNECT,
            text=text,
            url=reverse("inbox:mailbox_reconnect", args=[mailbox.pk]),
            # One notification per outage: a later one (after a good sync) is news again.
            key=f"mailbox:{mailbox.pk}:{since.isoformat()}",
            actor=actor,
        )

    _later(work)


@receiver(mailbox_grant_expiring)
def on_mailbox_grant_expiring(sender, mailbox_id: int, expires_at, **kwargs):
    """A week before a Google or Microsoft sign-in dies (docs/product.md §2.9): told as a
    "needs reconnecting", to the same people, once per expiry."""

    def work() -> None:
        mailbox = Mailbox.objects.select_related("owner").filter(pk=mailbox_id).first()
        if mailbox is None:
            return
        when = timezone.localtime(expires_at)
        notify_many(
            recipients=mailbox_admins(mailbox),
            kind=Kind.RECONNECT,
            text=(
                f"The {mailbox.get_connection_type_display()} sign-in of "
                f"{mailbox.email_address} expires on {when:%-d %b %Y, %H:%M}: reconnect it "
                "before then, or syncing and sending stop"
            ),
            url=reverse("inbox:mailbox_reconnect", args=[mailbox.pk]),
            key=f"mailbox:{mailbox.pk}:expires:{expires_at.isoformat()}",
        )

    _later(work)


def _entry_url(entry: OutboxEntry) -> str:
    """The Outbox page's "needs you" list, where the entry has its actions (send again, mark
    as sent, edit and resend: docs/product.md §5.4)."""
    return reverse("inbox:outbox") + f"?show=problems#outbox-{entry.pk}"


@receiver(outbox_entry_stuck)
def on_outbox_entry_stuck(sender, entry_id: int, state: str, **kwargs):
    def work() -> None:
        entry = OutboxEntry.objects.select_related("created_by").filter(pk=entry_id).first()
        if entry is None or entry.created_by is None or entry.state != state:
            return
        if state == OutboxEntry.State.VERIFY and entry.next_attempt_at is not None:
            return  # Relay still looks for it in the Sent folder: no person must decide yet
        subject = entry.subject or "(no subject)"
        to = ", ".join(entry.to[:3]) or "(no recipient)"
        if state == OutboxEntry.State.FAILED:
            text = f"Your message “{subject}” to {to} could not be sent: {entry.last_error}"
        else:
            text = (
                f"Nobody knows whether your message “{subject}” to {to} went out: send it "
                "again or mark it as sent"
            )
        notify(
            recipient=entry.created_by,
            kind=Kind.SEND_FAILED,
            text=text,
            url=_entry_url(entry),
            key=f"outbox:{entry.pk}:{state}",
        )

    _later(work)


def _from_a_person_outside(prefix: str = "") -> dict:
    """Incoming mail a person wrote: not ours, no auto-reply, bounce or list mail (the staff
    addresses are left out by the caller)."""
    flags = ("is_outgoing", "is_auto_reply", "is_bounce", "is_list")
    return {f"{prefix}{flag}": False for flag in flags}


@receiver(mail_filed)
def on_mail_filed(sender, message_ids, initial: bool = False, retroactive: bool = False, **kw):
    """A customer's new mail filed on a ticket tells the ticket's assignee. History (a first
    sync, re-filing after an address was added), our own mail, staff mail and automated mail
    tell no one."""
    if initial or retroactive:
        return
    ids = list(message_ids)

    def work() -> None:
        rows = list(
            Filing.objects.filter(
                message_id__in=ids,
                record_type="ticket",
                unlinked_at__isnull=True,
                ticket__assignee__isnull=False,
                ticket__assignee__is_active=True,
                **_from_a_person_outside("message__"),
            )
            .select_related("ticket__assignee", "message")
            .defer("message__text_body", "message__html_body", "message__headers")
        )
        # The conversations' owners too (docs/product.md §7.8): a customer's message on a
        # conversation assigned to someone.
        in_conversations = list(
            Message.objects.filter(
                pk__in=ids,
                **_from_a_person_outside(),
                thread__assignee__isnull=False,
                thread__assignee__is_active=True,
            )
            .select_related("thread__assignee")
            .only(
                "pk",
                "from_name",
                "from_address",
                "thread__subject",
                "thread__assignee",
            )
        )
        if not rows and not in_conversations:
            return
        staff = set(
            StaffEmail.objects.filter(
                email__in={r.message.from_address for r in rows}
                | {m.from_address for m in in_conversations},
                confirmed_at__isnull=False,
            ).values_list("email", flat=True)
        )
        told: set[tuple[int, int]] = set()  # (person, message): one notification per message
        for row in rows:
            if row.message.from_address in staff:
                continue
            ticket = row.ticket
            told.add((ticket.assignee_id, row.message.pk))
            notify_customer_replied(
                owner=ticket.assignee,
                label=f"{ticket.reference} {ticket.subject}",
                sender=row.message.from_name or row.message.from_address or "A customer",
                url=ticket.get_absolute_url(),
                key=f"message:{row.message.pk}:ticket:{ticket.pk}",
            )
        for message in in_conversations:
            owner = message.thread.assignee
            if message.from_address in staff or (owner.pk, message.pk) in told:
                continue
            told.add((owner.pk, message.pk))
            notify_customer_replied(
                owner=owner,
                label=f"“{message.thread.subject or '(no subject)'}”",
                sender=message.from_name or message.from_address or "A customer",
                url=reverse("inbox:conversation", args=[message.thread_id]),
                key=f"message:{message.pk}:thread:{message.thread_id}",
            )

    _later(work)


@receiver(conversation_assigned)
def on_conversation_assigned(
    sender, thread_id: int, assignee_id: int, actor_id=None, event_id=None, **kwargs
):
    """Someone was given a conversation (docs/product.md §7.8): they are told, unless they
    took it themselves (notify never tells people about their own actions)."""

    def work() -> None:
        thread = Thread.objects.select_related("assignee", "mailbox").filter(pk=thread_id).first()
        if thread is None or thread.assignee_id != assignee_id or not thread.assignee.is_active:
            return
        actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
        notify_assigned(
            assignee=thread.assignee,
            actor=actor,
            label=f"“{thread.subject or '(no subject)'}” ({thread.mailbox.email_address})",
            url=reverse("inbox:conversation", args=[thread.pk]),
            key=f"thread:{thread.pk}:assigned:{event_id}",
        )

    _later(work)
