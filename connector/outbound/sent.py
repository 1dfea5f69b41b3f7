"""After the server's 250: the sent bytes become a Message of the mailbox, filed on the record
they were sent from, and are APPENDed to the Sent folder with APPENDUID recorded, so the next
Sent-folder sync finds the same content hash at a known UID and imports nothing. An entry
whose outcome is unknown is reconciled here by searching Sent for our Message-ID.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from connector.ingest import storage
from connector.ingest.mime import parse_message
from connector.ingest.prepare import Fetched, prepare
from connector.ingest.signals import messages_stored
from connector.ingest.store import message_from, store_batch, store_parts
from connector.ingest.threads import assign_threads
from connector.outbound.compose import SendError, record_of
from connector.outbound.states import (
    FINISH_CLAIM,
    FINISH_RETRY,
    PROVIDER_COPY_WAIT,
    VERIFY_FOR,
    VERIFY_RETRY,
    SendResult,
    kill_point,
)
from connector.transport import oauth
from connector.transport.errors import MailError
from inbox.models import (
    Filing,
    Folder,
    LedgerEntry,
    Location,
    Mailbox,
    Message,
    OutboxEntry,
)
from inbox.services.conversations import note_new_mail
from inbox.services.outbox import outbox_went_wrong

log = logging.getLogger(__name__)


def _provider_saves_sent(mailbox: Mailbox) -> bool:
    """Gmail files mail sent through its SMTP server in Sent itself: an APPEND would make a
    second copy. Configurable per provider (RELAY_OAUTH_PROVIDERS[...]["saves_sent"])."""
    providers = settings.RELAY_OAUTH_PROVIDERS
    config = providers.get(mailbox.connection_type) or {}
    return bool(config.get("saves_sent", False))


def _file_on_record(message: Message, record) -> None:
    """Filing rule "sent from this record" (the matching rules file it on the recipients)."""
    reference = getattr(record, "reference", "") or str(record)
    Filing.objects.get_or_create(
        message=message,
        **{record.record_type: record},
        defaults={
            "record_type": record.record_type,
            "rule": Filing.Rule.SENT_FROM_RECORD,
            "evidence": f"Sent from {reference}"[:1000],
        },
    )


def _link(entry: OutboxEntry, message: Message) -> None:
    """The entry became `message`: mark it ours and file it where it was sent from. Call
    inside a transaction."""
    Message.objects.filter(pk=message.pk, is_outgoing=False).update(is_outgoing=True)
    record = record_of(entry)
    if record is not None:
        _file_on_record(message, record)
    OutboxEntry.objects.filter(pk=entry.pk).update(sent_message=message)


def _store_sent(entry: OutboxEntry, raw: bytes) -> Message:
    """The sent bytes as a Message of the mailbox (the same content hash the Sent-folder sync
    will compute), filed on the record it was sent from. Idempotent."""
    digest = storage.sha256(raw)
    prepared = None
    with transaction.atomic():
        locked = OutboxEntry.objects.select_for_update().get(pk=entry.pk)
        message = Message.objects.filter(mailbox_id=entry.mailbox_id, sha256=digest).first()
        created = False
        if message is None:
            prepared = prepare(
                entry.mailbox_id,
                Fetched(uid=0, raw=raw, flags=("\\Seen",), internal_date=entry.sent_at),
                parse_message,
            )
            if prepared.parsed is None:
                raise SendError(f"our own message does not parse: {prepared.error}")
            try:
                with transaction.atomic():
                    message = message_from(entry.mailbox_id, prepared)
                    message.is_outgoing = True
                    message.seen = True
                    message.save()
                    store_parts([(message, prepared)])
                    assign_threads(mailbox_id=entry.mailbox_id, messages=[message])
                    # Our reply: the conversation waits on the customer (docs/product.md §7.8).
                    note_new_mail(messages=[message], mailbox=entry.mailbox, history=False)
                    created = True
            except IntegrityError:
                # The Sent-folder sync stored the same bytes a moment ago: that is the one.
                message = Message.objects.get(mailbox_id=entry.mailbox_id, sha256=digest)
        _link(locked, message)
        if created:
            # Matching files it on the records its recipients belong to (docs/product.md §5.3).
            ids = [message.pk]
            transaction.on_commit(
                lambda: messages_stored.send(
                    sender=Message, mailbox_id=entry.mailbox_id, message_ids=ids, initial=False
                ),
                robust=True,
            )
    return message


def _sent_folder(mailbox: Mailbox, session) -> Folder | None:
    folder = (
        Folder.objects.filter(
            mailbox=mailbox,
            special_use=Folder.SpecialUse.SENT,
            is_local=False,
            exists_on_server=True,
        )
        .order_by("pk")
        .first()
    )
    if folder is not None:
        return folder
    info = next((f for f in session.list_folders() if f.special_use == "sent"), None)
    if info is None:
        return None
    folder, _ = Folder.objects.get_or_create(
        mailbox=mailbox,
        name=info.name,
        defaults={
            "special_use": "sent",
            "delimiter": info.delimiter or "",
            # As the sync's folder discovery would: Sent is active unless the mailbox names
            # its active folders and Sent is not one of them.
            "is_active": not mailbox.active_folders or info.name in mailbox.active_folders,
        },
    )
    return folder


def _imap_connect(mailbox: Mailbox):
    return oauth.connect_imap(mailbox)


def _record_location(
    entry: OutboxEntry, folder: Folder, uidvalidity: int, uid: int, message: Message
) -> None:
    """Where our copy sits in Sent, with its ledger line (every UID is accounted for), in
    one transaction; a sync that got there first has written the same: nothing doubles."""
    with transaction.atomic():
        Location.objects.get_or_create(
            folder=folder,
            uidvalidity=uidvalidity,
            uid=uid,
            defaults={"message": message, "flags": ["\\Seen"]},
        )
        LedgerEntry.objects.get_or_create(
            folder=folder,
            uidvalidity=uidvalidity,
            uid=uid,
            defaults={
                "mailbox_id": entry.mailbox_id,
                "outcome": LedgerEntry.Outcome.STORED,
                "reason": "appended to Sent by the CRM after sending",
                "message": message,
            },
        )
        Message.objects.filter(pk=message.pk).update(on_server=True)
        OutboxEntry.objects.filter(pk=entry.pk).update(appended_to_sent=True, next_attempt_at=None)


def _append_to_sent(entry: OutboxEntry, raw: bytes, message: Message) -> None:
    mailbox = entry.mailbox
    with _imap_connect(mailbox) as session:
        folder = _sent_folder(mailbox, session)
        if folder is None:
            OutboxEntry.objects.filter(pk=entry.pk).update(
                appended_to_sent=True,
                next_attempt_at=None,
                last_error=(entry.last_error or "Sent, but the mailbox has no Sent folder.")[:2000],
            )
            return
        status = session.select(folder.name)
        # An earlier attempt may have appended and died before recording it: look first.
        found = session.search_uids(f'HEADER Message-ID "<{entry.message_id}>"')
        uid = None
        if found:
            digest = storage.sha256(raw)
            for fetched in session.fetch(found):
                if fetched.raw is not None and storage.sha256(fetched.raw) == digest:
                    uid = fetched.uid
                    break
            if uid is None:
                # A copy with other bytes (the server rewrote it): take it as the sent copy,
                # the sync stores it as what the server holds. Never append a second one.
                OutboxEntry.objects.filter(pk=entry.pk).update(
                    appended_to_sent=True, next_attempt_at=None
                )
                return
        else:
            uid = session.append(folder.name, raw, flags=["\\Seen"], date=entry.sent_at)
            kill_point("appended", entry)
        if uid is None:
            # No UIDPLUS (RFC 4315): the sync finds the copy by its content hash.
            OutboxEntry.objects.filter(pk=entry.pk).update(
                appended_to_sent=True, next_attempt_at=None
            )
            return
        _record_location(entry, folder, status.uidvalidity, uid, message)


@dataclass(frozen=True)
class SentCopy:
    found: bool  # our Message-ID is in the Sent folder: the mail went out
    message: Message | None = None  # the one copy, stored; None when none or several


def _find_in_sent(entry: OutboxEntry) -> SentCopy:
    """Copies of our message in the Sent folder, found by our Message-ID and stored as the
    sync stores them (the server's bytes: a provider may add headers). One copy is the
    message the entry became; several are all kept and none is linked (RFC 4549 4.2.2.2:
    when more than one message matches, the client MUST NOT use any of them)."""
    with _imap_connect(entry.mailbox) as session:
        folder = _sent_folder(entry.mailbox, session)
        if folder is None:
            return SentCopy(False)
        status = session.select(folder.name)
        uids = session.search_uids(f'HEADER Message-ID "<{entry.message_id}>"')
        if not uids:
            return SentCopy(False)
        fetched = [f for f in session.fetch(uids[:10]) if f.raw is not None]
    if fetched:
        store_batch(
            folder=folder,
            uidvalidity=status.uidvalidity,
            items=[
                Fetched(uid=f.uid, raw=f.raw, flags=tuple(f.flags), internal_date=f.internal_date)
                for f in fetched
            ],
            lease=None,
            advance_cursor=False,
        )
    if len(uids) != 1 or len(fetched) != 1:
        return SentCopy(True)
    location = (
        Location.objects.filter(folder=folder, uidvalidity=status.uidvalidity, uid=fetched[0].uid)
        .select_related("message")
        .first()
    )
    return SentCopy(True, location.message if location is not None else None)


def finish_sent(entry_id: int) -> SendResult:
    """After the 250: store and file the message, then APPEND it to Sent. Safe to repeat;
    a failure leaves the entry "sent" with the next try scheduled. One worker at a time: the
    composer's request and the tick's can both reach workers, and two finishing at once would
    both find nothing in Sent and both APPEND (docs/reliability.md S-23)."""
    now = timezone.now()
    claimed = (
        OutboxEntry.objects.filter(pk=entry_id, state=OutboxEntry.State.SENT)
        .filter(Q(finishing_until__isnull=True) | Q(finishing_until__lte=now))
        .update(finishing_until=now + FINISH_CLAIM)
    )
    if not claimed:
        state = OutboxEntry.objects.filter(pk=entry_id).values_list("state", flat=True).first()
        if state == OutboxEntry.State.SENT:
            return SendResult(entry_id, state, "being finished by another worker")
        return SendResult(entry_id, state or "missing", "not sent")
    try:
        result = _finish(entry_id)
    except Exception:
        _unclaim(entry_id)
        raise
    # Not in a `finally`: a worker that dies holds the claim until FINISH_CLAIM runs out.
    _unclaim(entry_id)
    return result


def _unclaim(entry_id: int) -> None:
    OutboxEntry.objects.filter(pk=entry_id).update(finishing_until=None)


def _finish(entry_id: int) -> SendResult:
    entry = OutboxEntry.objects.select_related("mailbox").get(pk=entry_id)
    try:
        raw = storage.read_raw(entry.raw_file)
        message = entry.sent_message
        if message is None and _provider_saves_sent(entry.mailbox):
            # Gmail files the mail in Sent itself, with bytes of its own: that copy is the
            # one the sync will import, so the entry becomes that copy. Storing ours as well
            # would show the mail twice (different content hash, same Message-ID).
            copy = _find_in_sent(entry)
            if copy.found and copy.message is None:
                # Several copies: all stay visible, none is taken for ours (RFC 4549).
                OutboxEntry.objects.filter(pk=entry.pk).update(
                    appended_to_sent=True, next_attempt_at=None
                )
                return SendResult(entry.pk, OutboxEntry.State.SENT, "several copies in Sent")
            if (
                not copy.found
                and timezone.now() - (entry.sent_at or timezone.now()) < PROVIDER_COPY_WAIT
            ):
                OutboxEntry.objects.filter(pk=entry.pk).update(
                    next_attempt_at=timezone.now() + FINISH_RETRY
                )
                return SendResult(entry.pk, OutboxEntry.State.SENT, "waiting for Sent copy")
            message = copy.message
            if message is not None:
                with transaction.atomic():
                    _link(entry, message)
        if message is None:
            # Ours: after PROVIDER_COPY_WAIT the provider's copy is not coming.
            message = _store_sent(entry, raw)
        kill_point("stored", entry)
        if not entry.appended_to_sent:
            if _provider_saves_sent(entry.mailbox):
                OutboxEntry.objects.filter(pk=entry.pk).update(
                    appended_to_sent=True, next_attempt_at=None
                )
            else:
                _append_to_sent(entry, raw, message)
        else:
            OutboxEntry.objects.filter(pk=entry.pk).update(next_attempt_at=None)
    except (MailError, OSError, SendError) as exc:
        OutboxEntry.objects.filter(pk=entry.pk).update(
            next_attempt_at=timezone.now() + FINISH_RETRY,
            last_error=f"Sent, but not yet saved to the Sent folder: {exc}"[:2000],
        )
        log.warning("outbox %s: sent, Sent-folder copy pending: %s", entry.pk, exc)
        return SendResult(entry.pk, OutboxEntry.State.SENT, f"Sent folder pending: {exc}")
    return SendResult(entry.pk, OutboxEntry.State.SENT)


def reconcile_entry(entry_id: int) -> SendResult:
    """A "verify" entry, or a "sending" one whose worker died (its claim ran out): never sent
    again automatically. If the Sent folder holds our Message-ID (providers that save SMTP
    mail there themselves), the mail went out: "sent", linked to that copy. Otherwise it
    stays "verify" for a person to send again or mark as sent (docs/reliability.md M-05, S-24)."""
    now = timezone.now()
    with transaction.atomic():
        entry = (
            OutboxEntry.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("mailbox")
            .filter(pk=entry_id)
            .filter(
                Q(state=OutboxEntry.State.VERIFY)
                | Q(state=OutboxEntry.State.SENDING, next_attempt_at__lte=now)
            )
            .first()
        )
        if entry is None:
            return SendResult(entry_id, "unchanged", "not due for reconciliation")
        if entry.state == OutboxEntry.State.SENDING:
            entry.state = OutboxEntry.State.VERIFY
            entry.last_error = (
                "The worker stopped during sending: the message may or may not have gone out."
            )
            entry.save(update_fields=["state", "last_error", "updated_at"])
            transaction.on_commit(lambda: outbox_went_wrong(entry_id))
    try:
        copy = _find_in_sent(entry)
    except MailError as exc:
        OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.VERIFY).update(
            next_attempt_at=timezone.now() + VERIFY_RETRY
        )
        return SendResult(entry.pk, OutboxEntry.State.VERIFY, f"Sent folder not searched: {exc}")
    if copy.found:
        with transaction.atomic():
            settled = OutboxEntry.objects.filter(
                pk=entry.pk, state=OutboxEntry.State.VERIFY
            ).update(
                state=OutboxEntry.State.SENT,
                sent_at=timezone.now(),
                appended_to_sent=True,
                last_error="Found in the Sent folder: it was sent.",
                next_attempt_at=None,
            )
            if settled and copy.message is not None:
                _link(entry, copy.message)
        return SendResult(entry.pk, OutboxEntry.State.SENT, "found in the Sent folder")
    # Only providers that file SMTP mail in Sent themselves can still show it later.
    again = _provider_saves_sent(entry.mailbox) and now - entry.updated_at < VERIFY_FOR
    waiting = OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.VERIFY).update(
        next_attempt_at=timezone.now() + VERIFY_RETRY if again else None,
        last_error=(
            "Not found in the Sent folder. The server may or may not have delivered it: "
            "send it again, or mark it as sent if the recipient has it."
        ),
    )
    if waiting and not again:
        # Now a person must decide: its author is told (inbox/services/outbox.py).
        outbox_went_wrong(entry.pk)
    return SendResult(entry.pk, OutboxEntry.State.VERIFY, "not found in the Sent folder")
