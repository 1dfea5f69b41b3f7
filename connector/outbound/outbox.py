"""The outbox state machine: entries go out through the mailbox's own SMTP server, once.

inbox/services/composing.py writes an OutboxEntry ("queued"), having checked every header
value and parsed the recipients strictly. This module turns it into bytes and moves it
through its states:

    queued/retrying --claim, commit--> sending --SMTP 250, commit--> sent
                                              \\-> retrying  4xx or network error before the
                                              |             final "." (nothing was accepted)
                                              \\-> failed    5xx: the server's answer is kept
                                              \\-> verify    the connection died after the
                                                            final "." (RFC 5321 4.1.1.4: the
                                                            outcome is unknown, RFC 1047)

"sending" is committed before the SMTP transaction starts and "sent" right after the 250, so
a worker that dies in between leaves a "sending" row that is never blindly sent again: when
its claim runs out it becomes "verify" and is reconciled by searching the Sent folder for our
Message-ID (providers that save sent mail themselves), else left to a person
(docs/reliability.md S-24, M-05).

The bytes are built once, on the first attempt (connector/outbound/compose.py), and kept in
file storage (entry.raw_file). After a 250 the same bytes become the Message (filed on the
record the mail was sent from; matching files it on the recipients) and are APPENDed to the
Sent folder with APPENDUID recorded (connector/outbound/sent.py), so the next Sent-folder sync
finds the same content hash at a known UID and imports nothing. A failed APPEND leaves the
entry "sent" and is retried by the beat tick, after looking for our Message-ID in Sent first
so a copy is never stored twice (S-23).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connector.ingest import storage
from connector.outbound.compose import SendError, build_message, final_message_id
from connector.outbound.sent import finish_sent, reconcile_entry
from connector.outbound.states import (
    DISPATCH_CLAIM,
    FINISH_RETRY,
    MAX_ATTEMPTS,
    SENDING_CLAIM,
    VERIFY_RETRY,
    SendResult,
    kill_point,
    retry_delay,
)
from connector.transport.errors import (
    AuthenticationFailed,
    MailError,
    PermanentFailure,
    TemporaryFailure,
)
from connector.transport.smtp import (
    OutcomeUnknown,
    open_mailbox_smtp,
    quit_quietly,
    send_transaction,
)
from crm.selectors import mail_on
from inbox.addresses import parse_recipient, parse_recipients
from inbox.models import (
    Draft,
    Mailbox,
    OutboxEntry,
)
from inbox.services.outbox import outbox_went_wrong
from inbox.signals import mailbox_needs_reconnect

log = logging.getLogger(__name__)


def _claim(entry_id: int) -> OutboxEntry | None:
    """queued/retrying -> sending, committed before any byte goes to the server. Builds the
    message on the first attempt. None when another worker has it or there is nothing to do."""
    with transaction.atomic():
        entry = (
            OutboxEntry.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("mailbox")
            .filter(pk=entry_id)
            .first()
        )
        if entry is None or entry.state not in (
            OutboxEntry.State.QUEUED,
            OutboxEntry.State.RETRYING,
        ):
            return None
        if entry.mailbox.state == Mailbox.State.NEEDS_RECONNECT:
            # No retry storm against a refused login: the entry waits, and is picked up by
            # the beat tick once the mailbox is reconnected.
            OutboxEntry.objects.filter(pk=entry.pk).update(
                last_error="Waiting: the mailbox needs to be reconnected.", next_attempt_at=None
            )
            return None
        if not mail_on():
            # The site's mail switch is off (docs/product.md §8.1): the entry waits, says why
            # in the Outbox, and is due again the moment the switch is on.
            OutboxEntry.objects.filter(pk=entry.pk).update(
                last_error=MAIL_OFF_WAIT, next_attempt_at=None
            )
            return None
        fields = ["state", "attempts", "next_attempt_at", "updated_at"]
        if not entry.raw_file:
            message_id = final_message_id(entry)
            if message_id != entry.message_id:
                entry.message_id = message_id
                fields.append("message_id")
            try:
                raw = build_message(entry)
            except SendError as exc:
                entry.state = OutboxEntry.State.FAILED
                entry.last_error = str(exc)[:2000]
                entry.save(update_fields=["state", "last_error", "updated_at", *fields[4:]])
                failed_id = entry.pk
                transaction.on_commit(lambda: outbox_went_wrong(failed_id))
                return None
            entry.raw_file = storage.save_raw(
                mailbox_id=entry.mailbox_id, digest=storage.sha256(raw), raw=raw
            )
            fields.append("raw_file")
        entry.state = OutboxEntry.State.SENDING
        entry.attempts += 1
        entry.next_attempt_at = timezone.now() + SENDING_CLAIM
        entry.save(update_fields=fields)
        kill_point("built", entry)
    return entry


def _envelope(entry: OutboxEntry) -> tuple[str, list[str]]:
    recipients = parse_recipients(list(entry.to) + list(entry.cc) + list(entry.bcc))
    return parse_recipient(entry.from_address).address, [r.address for r in recipients]


def send_entry(entry_id: int) -> SendResult:
    """One attempt to send a queued or retrying entry."""
    entry = _claim(entry_id)
    if entry is None:
        state = OutboxEntry.objects.filter(pk=entry_id).values_list("state", flat=True).first()
        return SendResult(entry_id, state or "missing", "not claimed")
    raw = storage.read_raw(entry.raw_file)
    client = None
    try:
        sender, recipients = _envelope(entry)
        client = open_mailbox_smtp(entry.mailbox)
        refused = send_transaction(client, sender, recipients, raw)
    except OutcomeUnknown as exc:
        return _to_verify(entry, str(exc))
    except AuthenticationFailed as exc:
        return _login_refused(entry, exc)
    except TemporaryFailure as exc:
        return _to_retry(entry, exc)
    except (PermanentFailure, MailError) as exc:
        return _to_failed(entry, str(exc))
    except Exception as exc:  # ValidationError of a stored address, storage errors
        log.exception("outbox %s: cannot send", entry.pk)
        return _to_failed(entry, f"{type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            quit_quietly(client)
    kill_point("smtp_accepted", entry)
    statuses = {r: "accepted" for r in recipients}
    for recipient, (code, answer) in refused.items():
        statuses[recipient] = f"refused: {code} {answer}"[:500]
    detail = ""
    if refused:
        detail = f"{len(recipients) - len(refused)} of {len(recipients)} recipients accepted; " + (
            "; ".join(f"{r} refused ({c} {a})" for r, (c, a) in refused.items())
        )
    with transaction.atomic():
        OutboxEntry.objects.filter(pk=entry.pk).update(
            state=OutboxEntry.State.SENT,
            sent_at=timezone.now(),
            recipient_status=statuses,
            last_error=detail[:2000],
            next_attempt_at=timezone.now() + FINISH_RETRY,
        )
    log.info("outbox %s sent to %s recipients", entry.pk, len(recipients) - len(refused))
    kill_point("sent_committed", entry)
    finish_sent(entry.pk)
    return SendResult(entry.pk, OutboxEntry.State.SENT, detail, statuses)


def _release(entry: OutboxEntry, **fields) -> None:
    OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.SENDING).update(**fields)


def _to_retry(entry: OutboxEntry, exc: Exception) -> SendResult:
    if entry.attempts >= MAX_ATTEMPTS:
        return _to_failed(entry, f"gave up after {entry.attempts} attempts: {exc}")
    _release(
        entry,
        state=OutboxEntry.State.RETRYING,
        last_error=str(exc)[:2000],
        next_attempt_at=timezone.now() + retry_delay(entry.attempts),
    )
    log.info("outbox %s: temporary failure, retrying: %s", entry.pk, exc)
    return SendResult(entry.pk, OutboxEntry.State.RETRYING, str(exc))


def _to_failed(entry: OutboxEntry, detail: str) -> SendResult:
    _release(entry, state=OutboxEntry.State.FAILED, last_error=detail[:2000], next_attempt_at=None)
    log.warning("outbox %s failed: %s", entry.pk, detail)
    # Its author is told (inbox/services/outbox.py, then notifications/receivers.py).
    outbox_went_wrong(entry.pk)
    return SendResult(entry.pk, OutboxEntry.State.FAILED, detail)


def _to_verify(entry: OutboxEntry, detail: str) -> SendResult:
    _release(
        entry,
        state=OutboxEntry.State.VERIFY,
        last_error=detail[:2000],
        next_attempt_at=timezone.now() + VERIFY_RETRY,
    )
    log.warning("outbox %s: outcome unknown: %s", entry.pk, detail)
    outbox_went_wrong(entry.pk)
    return SendResult(entry.pk, OutboxEntry.State.VERIFY, detail)


def _login_refused(entry: OutboxEntry, exc: AuthenticationFailed) -> SendResult:
    """The SMTP login (or the OAuth grant) was refused: the mailbox needs a person, exactly as
    when the sync's login is refused (docs/reliability.md S-28); the entry waits, it is not
    failed."""
    stopped = (
        Mailbox.objects.filter(pk=entry.mailbox_id)
        .exclude(state=Mailbox.State.NEEDS_RECONNECT)
        .update(
            state=Mailbox.State.NEEDS_RECONNECT,
            last_error=str(exc)[:2000],
            next_sync_at=None,
            refused_by="smtp",
        )
    )
    if stopped:
        mailbox_needs_reconnect.send(
            sender=Mailbox, mailbox_id=entry.mailbox_id, reason="the SMTP server refused the login"
        )
    _release(
        entry,
        state=OutboxEntry.State.RETRYING,
        last_error=f"Waiting for the mailbox to be reconnected: {exc}"[:2000],
        next_attempt_at=None,
    )
    return SendResult(entry.pk, OutboxEntry.State.RETRYING, str(exc))


def release_held(entry_id: int, *, now=None) -> bool:
    """A held ("scheduled") entry whose hold is over becomes "queued": one conditional UPDATE
    that also checks the time, so no worker ever sends it early and Undo (the same kind of
    UPDATE, inbox/services/outbox.py outbox_undo) and this never both win
    (docs/reliability.md M-12)."""
    now = now or timezone.now()
    with transaction.atomic():
        released = OutboxEntry.objects.filter(
            pk=entry_id, state=OutboxEntry.State.SCHEDULED, next_attempt_at__lte=now
        ).update(
            state=OutboxEntry.State.QUEUED,
            # Due at once: if this worker's claim is skipped (Undo's losing UPDATE may still
            # hold the row for a moment), the next tick sends it; a second enqueue finds it
            # claimed (_claim).
            next_attempt_at=None,
            updated_at=now,
        )
        if released:
            # The draft it was sent from is done with (docs/product.md §5.5).
            Draft.objects.filter(sent_entry_id=entry_id).delete()
    return bool(released)


MAIL_OFF_WAIT = "Waiting: mail is switched off for the whole site (Site settings)."
SERVER_WORK = (OutboxEntry.State.SENDING, OutboxEntry.State.VERIFY, OutboxEntry.State.SENT)


def process_entry(entry_id: int) -> SendResult:
    """The one function the task calls: whatever the entry needs next."""
    state = OutboxEntry.objects.filter(pk=entry_id).values_list("state", flat=True).first()
    if state in SERVER_WORK and not mail_on():
        # Reconciling and filing in Sent talk to the servers too: left for the tick that
        # finds the switch on again. A queued entry says why it waits (_claim).
        return SendResult(entry_id, state, "held: mail is switched off")
    if state == OutboxEntry.State.SCHEDULED:
        if not release_held(entry_id):
            return SendResult(entry_id, state, "held: can still be undone")
        state = OutboxEntry.State.QUEUED
    if state in (OutboxEntry.State.QUEUED, OutboxEntry.State.RETRYING):
        return send_entry(entry_id)
    if state in (OutboxEntry.State.SENDING, OutboxEntry.State.VERIFY):
        return reconcile_entry(entry_id)
    if state == OutboxEntry.State.SENT:
        return finish_sent(entry_id)
    return SendResult(entry_id, state or "missing", "nothing to do")


def due_entries(now=None):
    now = now or timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return OutboxEntry.objects.exclude(mailbox__state=Mailbox.State.NEEDS_RECONNECT).filter(
        (Q(state=OutboxEntry.State.QUEUED) & due)
        | (Q(state=OutboxEntry.State.RETRYING) & Q(next_attempt_at__lte=now))
        | (Q(state=OutboxEntry.State.RETRYING, next_attempt_at__isnull=True))
        | Q(state=OutboxEntry.State.SENDING, next_attempt_at__lte=now)
        | Q(state=OutboxEntry.State.VERIFY, next_attempt_at__lte=now)
        | Q(state=OutboxEntry.State.SENT, next_attempt_at__lte=now)
        | Q(state=OutboxEntry.State.SCHEDULED, next_attempt_at__lte=now)
    )


def dispatch_due(*, enqueue: Callable[[int], None], now=None, limit: int = 500) -> list[int]:
    """Enqueue every entry that needs work, each once per DISPATCH_CLAIM: the conditional
    UPDATE is the claim, so overlapping ticks never enqueue an entry twice. A "sending" entry
    keeps its next_attempt_at (it is the dead-worker deadline) and is claimed by moving it.
    Nothing while the site's mail switch is off (docs/product.md §8.1): every entry stays due."""
    if not mail_on():
        return []
    now = now or timezone.now()
    dispatched = []
    rows = due_entries(now).order_by("pk").values_list("pk", "state", "next_attempt_at")[:limit]
    for pk, state, next_at in rows:
        claim = OutboxEntry.objects.filter(pk=pk, state=state)
        claim = (
            claim.filter(next_attempt_at__isnull=True)
            if next_at is None
            else claim.filter(next_attempt_at=next_at)
        )
        if state == OutboxEntry.State.SENDING:
            # Its worker died holding it (the claim ran out): from now on the outcome is
            # unknown, and it is reconciled, never sent again blindly (docs/reliability.md S-24).
            updated = claim.update(
                state=OutboxEntry.State.VERIFY,
                last_error="The worker stopped during sending: the message may or may not "
                "have gone out.",
                next_attempt_at=now + DISPATCH_CLAIM,
            )
            if updated:
                outbox_went_wrong(pk)
        elif state == OutboxEntry.State.SCHEDULED:
            # Its hold is over: released to "queued" by the same conditional UPDATE as the
            # task's (release_held), so Undo and the tick never both win.
            updated = int(release_held(pk, now=now))
        else:
            # For the other states the claim is only this: the entry is not enqueued again
            # while its task waits in the broker (_claim and the state checks do the rest).
            updated = claim.update(next_attempt_at=now + DISPATCH_CLAIM)
        if updated:
            enqueue(pk)
            dispatched.append(pk)
    return dispatched
