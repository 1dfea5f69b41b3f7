"""A conversation's owner and state, and each person's read state (docs/product.md §7.8).

Everything that changes a conversation's assignee or status comes through here: the inbox's
buttons and shortcuts, bulk actions, the beat waking snoozed conversations, new mail noticed
by the store (connector/ingest/store.py), and a ticket's status changing (inbox/receivers.py).
Each change writes a ThreadEvent for the timeline; nothing here sends mail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from crm.models import Ticket

from .. import live
from ..models import Filing, Mailbox, Message, Thread, ThreadEvent, ThreadRead
from ..permissions import readable_mailboxes
from ..selectors.conversations import MOVE_ACTIONS, bulk_move_folders
from ..signals import conversation_assigned
from .messages import message_change_flag, message_delete, message_move

Status = Thread.Status

# A support mailbox's conversation and its ticket move together (docs/product.md §7.8 rule 5).
_TICKET_FOR_STATUS = {
    Status.OPEN: Ticket.Status.OPEN,
    Status.WAITING: Ticket.Status.PENDING,
    Status.DONE: Ticket.Status.RESOLVED,
}
_STATUS_FOR_TICKET = {
    Ticket.Status.OPEN: Status.OPEN,
    Ticket.Status.PENDING: Status.WAITING,
    Ticket.Status.RESOLVED: Status.DONE,
    Ticket.Status.CLOSED: Status.DONE,
}


def user_label(user) -> str:
    if user is None:
        return "Relay"
    return user.get_full_name() or user.first_name or user.get_username()


def may_be_assigned(*, mailbox: Mailbox, user) -> bool:
    """Only someone who may read the mailbox can own its conversations; on a personal mailbox
    that is its owner alone."""
    if user is None or not user.is_active:
        return False
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        return mailbox.owner_id == user.pk
    return readable_mailboxes(user).filter(pk=mailbox.pk).exists()


def _event(thread: Thread, *, actor, kind: str, now, **data) -> ThreadEvent:
    return ThreadEvent(thread=thread, actor=actor, kind=kind, data=data, created_at=now)


def _status_fields(thread: Thread, status: str, *, now, until=None) -> list[str]:
    thread.status = status
    thread.status_changed_at = now
    thread.snoozed_until = until if status == Status.SNOOZED else None
    fields = ["status", "status_changed_at", "snoozed_until"]
    if status == Status.DONE:
        thread.closed_at = now
        fields.append("closed_at")
    return fields


@transaction.atomic
def conversation_assign(*, actor, thread: Thread, assignee) -> bool:
    """Give the conversation to `assignee` (None: to nobody). Returns whether it changed."""
    thread = Thread.objects.select_for_update().select_related("mailbox").get(pk=thread.pk)
    if assignee is not None and not may_be_assigned(mailbox=thread.mailbox, user=assignee):
        raise ValidationError("Only someone who may read this mailbox can own its conversations.")
    if thread.assignee_id == (assignee.pk if assignee else None):
        return False
    now = timezone.now()
    thread.assignee = assignee
    thread.save(update_fields=["assignee"])
    if assignee is None:
        _event(thread, actor=actor, kind=ThreadEvent.Kind.UNASSIGNED, now=now).save()
    else:
        event = _event(
            thread,
            actor=actor,
            kind=ThreadEvent.Kind.ASSIGNED,
            now=now,
            assignee=assignee.pk,
            assignee_name=user_label(assignee),
        )
        event.save()
        conversation_assigned.send(
            sender=Thread,
            thread_id=thread.pk,
            assignee_id=assignee.pk,
            actor_id=actor.pk if actor else None,
            event_id=event.pk,
        )
    live.mailbox_event(live.CONVERSATION, mailbox_id=thread.mailbox_id, threads=[thread.pk])
    return True


@transaction.atomic
def conversation_set_status(
    *,
    actor,
    thread: Thread,
    status: str,
    until: dt.datetime | None = None,
    from_ticket: str = "",
) -> bool:
    """Open, Waiting, Done, or Snoozed `until` a moment in the future. Returns whether it
    changed. On a support mailbox the tickets the conversation is filed on follow, unless
    the change came from a ticket (`from_ticket`: its reference)."""
    if status not in Status.values:
        raise ValidationError(f"Unknown status {status!r}.")
    now = timezone.now()
    if status == Status.SNOOZED:
        if until is None or until <= now:
            raise ValidationError("Snooze until a moment in the future.")
    thread = Thread.objects.select_for_update().select_related("mailbox").get(pk=thread.pk)
    if thread.status == status and (status != Status.SNOOZED or thread.snoozed_until == until):
        return False
    thread.save(update_fields=_status_fields(thread, status, now=now, until=until))
    data = {"status": status}
    if until is not None:
        data["until"] = until.isoformat()
    if from_ticket:
        data.update(reason="ticket", ticket=from_ticket)
    _event(thread, actor=actor, kind=ThreadEvent.Kind.STATUS, now=now, **data).save()
    if not from_ticket:
        _tickets_follow(thread, status)
    live.mailbox_event(live.CONVERSATION, mailbox_id=thread.mailbox_id, threads=[thread.pk])
    return True


def conversation_snooze(*, actor, thread: Thread, until: dt.datetime) -> bool:
    return conversation_set_status(actor=actor, thread=thread, status=Status.SNOOZED, until=until)


BULK_ACTIONS = (
    "assign",
    "unassign",
    "assign_me",
    "done",
    "open",
    "waiting",
    "snooze",
    "mark_read",
    "mark_unread",
    "archive",
    "trash",
)


def conversations_bulk(
    *, actor, threads: Iterable[Thread], action: str, assignee=None, until=None
) -> int:
    """One action on many conversations (already permission-checked by the caller: each one
    against its own mailbox, docs/product.md §7.8), from one mailbox or several; each gets its
    own timeline event. All or nothing. Returns how many changed: moving to Archive or Trash
    leaves out the conversations whose mailbox has no such folder."""
    if action not in BULK_ACTIONS:
        raise ValidationError(f"Unknown action {action!r}.")
    threads = list(threads)
    folders = (
        bulk_move_folders(mailbox_ids=[t.mailbox_id for t in threads])
        if action in MOVE_ACTIONS
        else {}
    )
    changed = 0
    with transaction.atomic():
        for thread in threads:
            if action == "assign_me":
                changed += conversation_assign(actor=actor, thread=thread, assignee=actor)
            elif action == "assign":
                changed += conversation_assign(actor=actor, thread=thread, assignee=assignee)
            elif action == "unassign":
                changed += conversation_assign(actor=actor, thread=thread, assignee=None)
            elif action == "snooze":
                changed += conversation_snooze(actor=actor, thread=thread, until=until)
            elif action == "mark_read":
                conversation_mark_read(user=actor, thread=thread)
                changed += 1
            elif action == "mark_unread":
                newest = (
                    Message.objects.filter(thread=thread)
                    .order_by("is_outgoing", "-date", "-pk")
                    .first()
                )
                if newest is not None:
                    conversation_mark_unread(user=actor, message=newest)
                    changed += 1
            elif action in MOVE_ACTIONS:
                folder = folders.get((thread.mailbox_id, MOVE_ACTIONS[action]))
                if folder is None:
                    continue
                for message in Message.objects.filter(thread=thread):
                    if action == "archive":
                        message_move(user=actor, message=message, target_folder=folder)
                    else:
                        message_delete(user=actor, message=message)
                changed += 1
            else:
                changed += conversation_set_status(actor=actor, thread=thread, status=action)
    return changed


def wake_snoozed(*, now: dt.datetime | None = None) -> int:
    """Beat: conversations whose snooze ended go back to Open, with a "woke" event. The lists
    already count them as Open from that moment (inbox/selectors/conversations.py), so a late
    beat only delays the event."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Thread.objects.select_for_update(skip_locked=True).filter(
                status=Status.SNOOZED, snoozed_until__lte=now
            )[:1000]
        )
        for thread in due:
            thread.status, thread.snoozed_until, thread.status_changed_at = Status.OPEN, None, now
        Thread.objects.bulk_update(due, ["status", "snoozed_until", "status_changed_at"])
        ThreadEvent.objects.bulk_create(
            [_event(t, actor=None, kind=ThreadEvent.Kind.WOKE, now=now, status="open") for t in due]
        )
        woken: dict[int, list[int]] = {}
        for thread in due:
            woken.setdefault(thread.mailbox_id, []).append(thread.pk)
        for mailbox_id, threads in woken.items():
            live.mailbox_event(live.CONVERSATION, mailbox_id=mailbox_id, threads=threads)
    return len(due)


# --- New mail ---------------------------------------------------------------------------------


def note_new_mail(*, messages: Iterable[Message], mailbox: Mailbox, history: bool) -> None:
    """New messages were stored in their threads (connector/ingest/store.py, in its
    transaction; connector/outbound/sent.py for Relay's own). Called once per message ever,
    when it is created: a message found again (another folder, a UIDVALIDITY reset) is a
    duplicate and comes nowhere near here, so re-syncing never reopens anything
    (docs/reliability.md S-32).

    - A conversation a first sync brings in (`history`) starts Done: history is not work.
    - A customer's message reopens a Waiting, Done or Snoozed conversation.
    - Our own message (sent by Relay, from the mailbox's own or a staff address, or found in
      Sent) puts an Open conversation in Waiting when the mailbox says so.
    The newest message of each thread in the batch decides."""
    newest: dict[int, Message] = {}
    for message in messages:
        # An out-of-office answer or a bounce is nobody writing back (docs/product.md §4.3).
        if message.thread_id is None or message.is_auto_reply or message.is_bounce:
            continue
        current = newest.get(message.thread_id)
        key = (message.date is not None, message.date or 0, message.pk or 0)
        if current is None or key > (current.date is not None, current.date or 0, current.pk):
            newest[message.thread_id] = message
    if not newest:
        return
    now = timezone.now()
    if history:
        # Only conversations this batch started: an older one keeps what people made of it.
        Thread.objects.filter(pk__in=newest, status_changed_at__isnull=True).update(
            status=Status.DONE
        )
        return
    ours = _ours(mailbox, newest.values())
    events = []
    for thread in (
        Thread.objects.select_for_update().filter(pk__in=newest).select_related("mailbox")
    ):
        message = newest[thread.pk]
        if message.pk in ours:
            if thread.status == Status.OPEN and mailbox.reply_sets_waiting:
                thread.save(update_fields=_status_fields(thread, Status.WAITING, now=now))
                events.append(
                    _event(
                        thread,
                        actor=None,
                        kind=ThreadEvent.Kind.STATUS,
                        now=now,
                        status="waiting",
                        reason="reply",
                    )
                )
                _tickets_follow(thread, Status.WAITING)
        elif thread.status != Status.OPEN:
            thread.save(update_fields=_status_fields(thread, Status.OPEN, now=now))
            events.append(
                _event(
                    thread,
                    actor=None,
                    kind=ThreadEvent.Kind.REOPENED,
                    now=now,
                    status="open",
                    sender=message.from_name or message.from_address,
                )
            )
            _tickets_follow(thread, Status.OPEN)
    ThreadEvent.objects.bulk_create(events)


def _ours(mailbox: Mailbox, messages: Iterable[Message]) -> set[int]:
    """Which of these messages the team wrote: sent by Relay, from the mailbox's own address
    or a confirmed staff address. One query."""
    from crm.models import StaffEmail

    messages = list(messages)
    staff = set(
        StaffEmail.objects.filter(
            email__in={m.from_address for m in messages if m.from_address},
            confirmed_at__isnull=False,
        ).values_list("email", flat=True)
    )
    return {
        m.pk
        for m in messages
        if m.is_outgoing
        or getattr(m, "in_sent_folder", False)
        or (m.from_address and (m.from_address == mailbox.email_address or m.from_address in staff))
    }


# --- Tickets ----------------------------------------------------------------------------------


def _tickets_follow(thread: Thread, status: str) -> None:
    """On a support mailbox, the tickets the conversation is filed on take its status
    (queryset UPDATE: no model signal, so the ticket does not echo back here)."""
    if not thread.mailbox.create_tickets or status not in _TICKET_FOR_STATUS:
        return
    ticket_ids = Filing.objects.filter(
        message__thread=thread, ticket__isnull=False, unlinked_at__isnull=True
    ).values("ticket_id")
    target = _TICKET_FOR_STATUS[status]
    tickets = Ticket.objects.filter(pk__in=ticket_ids).exclude(status=target)
    if status == Status.DONE:
        # A closed ticket stays closed; "resolved" is what Done means for an open one.
        tickets = tickets.exclude(status=Ticket.Status.CLOSED)
    tickets.update(status=target, updated_at=timezone.now())


def ticket_status_changed(*, ticket: Ticket, actor=None) -> int:
    """A ticket's status changed (its form, the admin, the Email API): its conversations on
    support mailboxes follow. Returns how many changed."""
    status = _STATUS_FOR_TICKET.get(ticket.status)
    if status is None:
        return 0
    threads = Thread.objects.filter(
        mailbox__create_tickets=True,
        pk__in=Filing.objects.filter(ticket=ticket, unlinked_at__isnull=True).values(
            "message__thread"
        ),
    )
    changed = 0
    for thread in threads:
        changed += conversation_set_status(
            actor=actor, thread=thread, status=status, from_ticket=ticket.reference
        )
    return changed


# --- Reading ----------------------------------------------------------------------------------


@transaction.atomic
def conversation_mark_read(*, user, thread: Thread) -> None:
    """`user` has read the whole conversation. On a shared mailbox that is their own state
    (ThreadRead); the server's \\Seen is written only when the mailbox says so."""
    mailbox = thread.mailbox
    if mailbox.reads_per_user:
        newest = Message.objects.filter(thread=thread).aggregate(top=Max("pk"))["top"] or 0
        ThreadRead.objects.update_or_create(
            user=user, thread=thread, defaults={"read_up_to": newest, "read_at": timezone.now()}
        )
    if not mailbox.reads_per_user or mailbox.writes_seen:
        for message in Message.objects.filter(thread=thread, seen=False):
            message_change_flag(
                user=user, message=message, action="mark_read", write=mailbox.writes_seen
            )


@transaction.atomic
def conversation_mark_unread(*, user, message: Message) -> None:
    """`message` is unread again, for `user` alone on a shared mailbox."""
    mailbox = message.mailbox
    if mailbox.reads_per_user and message.thread_id:
        # Our own mail is never unread: the newest customer message up to this one is.
        incoming = (
            Message.objects.filter(
                thread_id=message.thread_id, is_outgoing=False, pk__lte=message.pk
            ).aggregate(top=Max("pk"))["top"]
            or message.pk
        )
        ThreadRead.objects.update_or_create(
            user=user,
            thread_id=message.thread_id,
            defaults={"read_up_to": incoming - 1, "read_at": timezone.now()},
        )
        # Mail read by Relay's writes before is this person's again: their own row rules.
        if not mailbox.writes_seen:
            return
    message_change_flag(user=user, message=message, action="mark_unread", write=mailbox.writes_seen)
