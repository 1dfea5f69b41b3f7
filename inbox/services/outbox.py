"""The outbox as people act on it (docs/product.md §5.2, §5.4): queue an entry for sending,
send a failed or unknown one again, mark one as sent, cancel a queued one, edit a failed one
and send the corrected mail. connector/outbound/outbox.py does the sending, and calls
outbox_went_wrong() whenever an entry becomes failed or its outcome unknown.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from .. import ports
from ..models import Draft, Mailbox, OutboxEntry
from ..permissions import readable_mailboxes
from ..signals import outbox_entry_stuck

log = logging.getLogger(__name__)

# What a person may still do something about (shown on the Outbox page and in the
# conversation): waiting, under way, or gone wrong.
OPEN_STATES = (
    OutboxEntry.State.SCHEDULED,
    OutboxEntry.State.QUEUED,
    OutboxEntry.State.SENDING,
    OutboxEntry.State.RETRYING,
    OutboxEntry.State.FAILED,
    OutboxEntry.State.VERIFY,
)
PROBLEM_STATES = (OutboxEntry.State.FAILED, OutboxEntry.State.VERIFY)
CANCELLABLE_STATES = (
    OutboxEntry.State.SCHEDULED,
    OutboxEntry.State.QUEUED,
    OutboxEntry.State.RETRYING,
)


def may_act_on_outbox(user, mailbox: Mailbox) -> None:
    """Who may send an entry again, mark it sent, cancel or edit it: whoever may send as its
    mailbox (docs/reliability.md M-06), and admins for a shared mailbox. A personal
    mailbox's entries are its owner's only, admins included (docs/product.md §2.2)."""
    if user is None:
        return
    if mailbox.kind == Mailbox.Kind.SHARED and user.is_superuser:
        return
    if not readable_mailboxes(user).filter(pk=mailbox.pk).exists():
        raise PermissionDenied("You may not act on this mailbox's outbox.")


def outbox_queue(entry) -> None:
    """Send the entry as soon as the transaction commits (the beat sends due entries anyway,
    so a lost request delays the mail, never drops it). A held ("scheduled") entry is asked
    for once its hold is over; the worker checks the time again (connector/outbound/outbox.py)."""
    if entry.state == OutboxEntry.State.SCHEDULED and entry.next_attempt_at is not None:
        delay = (entry.next_attempt_at - timezone.now()).total_seconds()
        ports.mail().send_soon(entry.pk, delay_seconds=max(delay, 0) + 0.5)
        return
    ports.mail().send_soon(entry.pk)


def outbox_went_wrong(entry_id: int) -> None:
    """The one place where an entry has just become "failed" or "verify" (outcome unknown):
    connector/outbound/ calls it after committing the change. Whatever should follow (a
    notification to whoever wrote the mail) hooks in here."""
    entry = (
        OutboxEntry.objects.filter(pk=entry_id)
        .values("state", "created_by_id", "mailbox_id")
        .first()
    )
    if entry is None:
        return
    log.info(
        "outbox %s went wrong: state=%s created_by=%s mailbox=%s",
        entry_id,
        entry["state"],
        entry["created_by_id"],
        entry["mailbox_id"],
    )
    # Whoever listens (notifications/receivers.py) hears it through inbox/signals.py; an
    # unknown outcome that Relay will still look for in Sent tells no one yet.
    outbox_entry_stuck.send(sender=OutboxEntry, entry_id=entry_id, state=entry["state"])


@transaction.atomic
def outbox_send_again(*, user, entry):
    """A person sends a failed entry, or one whose outcome is unknown ("verify"), again.
    Never automatic for "verify": only the person can accept the risk of a second copy."""

    entry = OutboxEntry.objects.select_for_update().select_related("mailbox").get(pk=entry.pk)
    may_act_on_outbox(user, entry.mailbox)
    if entry.replaced_by_id:
        raise ValidationError("This message was edited and sent again as a new one.")
    if entry.state not in PROBLEM_STATES:
        raise ValidationError("Only a failed message, or one not known to be sent, is resent.")
    entry.state = OutboxEntry.State.QUEUED
    entry.next_attempt_at = None
    entry.save(update_fields=["state", "next_attempt_at", "updated_at"])
    outbox_queue(entry)
    return entry


def outbox_mark_sent(*, user, entry):
    """A person confirms that a "verify" entry did arrive (e.g. the recipient answered)."""

    may_act_on_outbox(user, entry.mailbox)
    updated = OutboxEntry.objects.filter(
        pk=entry.pk, state=OutboxEntry.State.VERIFY, replaced_by__isnull=True
    ).update(
        state=OutboxEntry.State.SENT,
        sent_at=timezone.now(),
        last_error="",
        # Then, as for any sent entry: stored, filed on its record, appended to Sent.
        next_attempt_at=timezone.now(),
    )
    if not updated:
        raise ValidationError("Only a message whose outcome is unknown can be marked as sent.")
    outbox_queue(entry)


def outbox_cancel(*, user, entry) -> None:
    """Cancel an entry no worker has taken yet. One conditional UPDATE on the state: a worker
    claims an entry the same way (queued/retrying -> sending under a row lock), so exactly
    one of the two wins and a cancelled entry is never sent (docs/product.md §5.4)."""

    may_act_on_outbox(user, entry.mailbox)
    updated = OutboxEntry.objects.filter(pk=entry.pk, state__in=CANCELLABLE_STATES).update(
        state=OutboxEntry.State.CANCELLED,
        cancelled_by=user,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    if not updated:
        raise ValidationError(
            "Too late to cancel: the message is already being sent (or no longer waiting)."
        )
    # A held message's draft (docs/product.md §5.5) goes with it: the cancelled entry keeps
    # what was written.
    Draft.objects.filter(sent_entry_id=entry.pk).delete()


@transaction.atomic
def outbox_edit_resend(*, user, entry, to, cc, bcc, subject: str, text_body: str):
    """Correct a failed entry and send the corrected mail: a new entry with a new Message-ID
    (the same thread, record and attachments); the failed one stays, marked as replaced by
    it, and can no longer be sent again."""
    from crm.models import RECORD_MODELS

    from .composing import outbox_compose

    entry = OutboxEntry.objects.select_for_update().select_related("mailbox").get(pk=entry.pk)
    may_act_on_outbox(user, entry.mailbox)
    if entry.state != OutboxEntry.State.FAILED or entry.replaced_by_id:
        raise ValidationError("Only a failed message can be edited and sent again.")
    record = None
    if entry.record_type in RECORD_MODELS and entry.record_id:
        record = RECORD_MODELS[entry.record_type].objects.filter(pk=entry.record_id).first()
    new = outbox_compose(
        user=user,
        mailbox=entry.mailbox,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text_body=text_body,
        attachments=list(entry.attachments or ()),
        record=record,
        reply_to_message=entry.reply_to_message,
        in_reply_to=entry.in_reply_to,
        references=entry.references,
        purpose=entry.purpose,
        include_signature=False,  # the text being edited already carries it
    )
    entry.replaced_by = new
    entry.save(update_fields=["replaced_by", "updated_at"])
    return new


@transaction.atomic
def outbox_undo(*, user, entry):
    """Undo send: a held ("scheduled") entry goes back to its author's editor as a draft and
    is never sent. One conditional UPDATE against the worker's promotion (scheduled -> queued,
    connector/outbound/outbox.py), so exactly one of the two wins: mail that went out is never
    reported undone, and undone mail never goes out (docs/reliability.md M-12)."""
    from .drafts import draft_from_entry

    if entry.created_by_id != getattr(user, "pk", None):
        raise PermissionDenied("Only its author can undo a message.")
    updated = OutboxEntry.objects.filter(
        pk=entry.pk, state=OutboxEntry.State.SCHEDULED, created_by=user
    ).update(
        state=OutboxEntry.State.CANCELLED,
        cancelled_by=user,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    if not updated:
        raise ValidationError("Too late to undo: the message has gone out.")
    entry.refresh_from_db()
    draft = draft_from_entry(user=user, entry=entry)
    # What was undone lives on as the draft (Draft.sent_entry becomes null with the delete);
    # the outbox keeps no trace of it.
    OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.CANCELLED).delete()
    draft.refresh_from_db()
    return draft
