"""The outbox as people act on it: queue an entry for sending, send a failed or unknown one
again, mark one as sent. connector/outbound/outbox.py does the sending.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import ports
from ..models import OutboxEntry
from ..permissions import may_send_as


def outbox_queue(entry) -> None:
    """Send the entry as soon as the transaction commits (the beat sends due entries anyway,
    so a lost request delays the mail, never drops it)."""
    ports.mail().send_soon(entry.pk)


@transaction.atomic
def outbox_send_again(*, user, entry):
    """A person sends a failed entry, or one whose outcome is unknown ("verify"), again.
    Never automatic for "verify": only the person can accept the risk of a second copy."""

    entry = OutboxEntry.objects.select_for_update().get(pk=entry.pk)
    may_send_as(user, entry.mailbox)
    if entry.state not in (OutboxEntry.State.FAILED, OutboxEntry.State.VERIFY):
        raise ValidationError("Only a failed message, or one not known to be sent, is resent.")
    entry.state = OutboxEntry.State.QUEUED
    entry.next_attempt_at = None
    entry.save(update_fields=["state", "next_attempt_at", "updated_at"])
    outbox_queue(entry)
    return entry


def outbox_mark_sent(*, user, entry):
    """A person confirms that a "verify" entry did arrive (e.g. the recipient answered)."""

    may_send_as(user, entry.mailbox)
    updated = OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.VERIFY).update(
        state=OutboxEntry.State.SENT,
        sent_at=timezone.now(),
        last_error="",
        # Then, as for any sent entry: stored, filed on its record, appended to Sent.
        next_attempt_at=timezone.now(),
    )
    if not updated:
        raise ValidationError("Only a message whose outcome is unknown can be marked as sent.")
    outbox_queue(entry)
