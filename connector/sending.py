"""Sending: outbox entries go out through the mailbox's own SMTP server, once (issue 5).

inbox.services writes an OutboxEntry ("queued"), having checked every header value and parsed
the recipients strictly. This module turns it into bytes and moves it through its states:

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
Message-ID (providers that save sent mail themselves), else left to a person (S-24, M-05).

The bytes are built once, on the first attempt, and kept in file storage (entry.raw_file).
After a 250 the same bytes become the Message (filed on the record the mail was sent from;
matching files it on the recipients) and are APPENDed to the Sent folder with APPENDUID
recorded, so the next Sent-folder sync finds the same content hash at a known UID and imports
nothing. A failed APPEND leaves the entry "sent" and is retried by the beat tick, after
looking for our Message-ID in Sent first so a copy is never stored twice (S-23).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from crm.models import RECORD_MODELS
from inbox.models import (
    AttachmentBlob,
    Filing,
    Folder,
    LedgerEntry,
    Location,
    Mailbox,
    Message,
    OutboxEntry,
)
from inbox.services import Recipient, check_header_value, parse_recipient, parse_recipients
from inbox.signals import messages_stored

from . import oauth, storage, tokens
from .errors import AuthenticationFailed, MailError, PermanentFailure, TemporaryFailure
from .ingest import Fetched, _message_from, _prepare, _store_parts, store_batch
from .mime import parse_message
from .smtp import SmtpSettings, mapped_errors, open_smtp
from .threader import assign_threads

log = logging.getLogger(__name__)

# How long a claimed ("sending") entry may stay so before its worker is presumed dead.
SENDING_CLAIM = dt.timedelta(minutes=10)
# Back-off after a temporary failure: 1, 2, 4 ... minutes, at most an hour; then give up.
FIRST_BACKOFF = dt.timedelta(minutes=1)
MAX_BACKOFF = dt.timedelta(hours=1)
MAX_ATTEMPTS = 12
# APPEND to Sent and storing the sent message: retried on this schedule by the beat tick.
FINISH_RETRY = dt.timedelta(minutes=2)
# How long to look for the copy a provider files in Sent itself before storing our own.
PROVIDER_COPY_WAIT = dt.timedelta(minutes=10)
# "verify" entries of providers that file SMTP-submitted mail in Sent themselves are searched
# again for this long (their copy may take a moment to appear), then left to a person.
VERIFY_FOR = dt.timedelta(minutes=30)
VERIFY_RETRY = dt.timedelta(minutes=2)

# 7-bit transfer encodings everywhere (quoted-printable/base64 bodies): any server takes the
# bytes without 8BITMIME, and IMAP APPEND stores them as they are. CRLF line ends.
SMTP_POLICY = email_policy.SMTP.clone(cte_type="7bit", max_line_length=78)


class SendError(Exception):
    """The entry cannot be built (a stored header value became invalid, a blob is missing)."""


class _OutcomeUnknown(Exception):
    """The connection died after the final "." of DATA: the server may have taken the mail."""


# Tests stand in for a worker dying at a named point by raising from here (a BaseException,
# so no handler below catches it): "built", "smtp_accepted", "sent_committed", "stored",
# "appended". Never set in production.
STEP_HOOK: Callable[[str, OutboxEntry], None] | None = None


def _step(name: str, entry: OutboxEntry) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name, entry)


@dataclass
class SendResult:
    entry_id: int
    state: str
    detail: str = ""
    recipients: dict = field(default_factory=dict)

    def summary(self) -> str:
        return f"outbox {self.entry_id}: {self.state}" + (
            f" ({self.detail})" if self.detail else ""
        )


# --- composing ----------------------------------------------------------------------------------


def _address(recipient) -> Address:
    local, _, domain = recipient.address.partition("@")
    return Address(display_name=recipient.name, username=local, domain=domain)


def _record_of(entry: OutboxEntry):
    model = RECORD_MODELS.get(entry.record_type or "")
    if model is None or entry.record_id is None:
        return None
    return model.objects.filter(pk=entry.record_id).first()


def final_message_id(entry: OutboxEntry) -> str:
    """Mail sent from a record carries the record's signed token (SPEC 4 rule 2, C-14);
    inbox.services gave the entry a random id because the token key lives here."""
    record = _record_of(entry)
    if record is None or tokens.check_message_id(entry.message_id).status == "valid":
        return entry.message_id
    return tokens.make_message_id(record, domain=entry.message_id.rpartition("@")[2] or None)


def _ids(value: str) -> list[str]:
    return [f"<{i.strip('<>')}>" for i in (value or "").split() if i.strip("<>")]


def build_message(entry: OutboxEntry, *, date: dt.datetime | None = None) -> bytes:
    """The entry as RFC 5322 bytes with CRLF line ends. Every header value is checked again
    (the row may have been written by other code than inbox.services): a line break in any
    of them raises SendError, whatever the Python version does (M-01)."""
    mailbox = entry.mailbox
    try:
        for label, value in (
            ("Subject", entry.subject),
            ("From", entry.from_address),
            ("Display name", mailbox.display_name),
            ("Message-ID", entry.message_id),
            ("In-Reply-To", entry.in_reply_to),
            ("References", entry.references),
        ):
            check_header_value(label, value)
        sender = Recipient(
            " ".join(mailbox.display_name.split()), parse_recipient(entry.from_address).address
        )
        to, cc = parse_recipients(entry.to), parse_recipients(entry.cc)
    except Exception as exc:  # ValidationError: the row is not sendable as it is
        raise SendError(f"cannot build the message: {exc}") from exc

    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = _address(sender)
    if to:
        msg["To"] = [_address(r) for r in to]
    if cc:
        msg["Cc"] = [_address(r) for r in cc]
    # Bcc never goes into the header (RFC 5322 3.6.3): it is only in the envelope.
    msg["Subject"] = entry.subject
    msg["Date"] = format_datetime(date or timezone.now())
    msg["Message-ID"] = f"<{entry.message_id}>"
    if entry.in_reply_to:
        msg["In-Reply-To"] = _ids(entry.in_reply_to)[0]
    references = _ids(entry.references)
    if entry.in_reply_to and _ids(entry.in_reply_to)[0] not in references:
        references.append(_ids(entry.in_reply_to)[0])
    if references:
        msg["References"] = " ".join(references)
    if entry.purpose in ("acknowledgement", "api_reply"):
        # RFC 3834 5: an automatic answer, so the other side's auto-responders stay quiet.
        msg["Auto-Submitted"] = "auto-replied"
    elif entry.purpose == "forward_unplaced":
        msg["Auto-Submitted"] = "auto-generated"
    msg["MIME-Version"] = "1.0"

    msg.set_content(entry.text_body or "\n", cte="quoted-printable")
    if entry.html_body:
        msg.add_alternative(entry.html_body, subtype="html", cte="quoted-printable")
    for item in entry.attachments or []:
        blob = AttachmentBlob.objects.filter(sha256=item.get("blob", "")).first()
        if blob is None:
            raise SendError(f"attachment {item.get('filename')!r} is missing from storage")
        with storage.open_blob(blob.file) as fh:
            data = fh.read()
        maintype, _, subtype = (item.get("content_type") or "application/octet-stream").partition(
            "/"
        )
        filename = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", item.get("filename") or "").split())
        msg.add_attachment(
            data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=filename or "attachment",
        )
    raw = msg.as_bytes(policy=SMTP_POLICY)
    # One line-end convention only: IMAP APPEND (imaplib maps every line end to CRLF) and the
    # server's FETCH must give back exactly these bytes, or the Sent-folder sync would see
    # another content hash (S-23).
    raw = re.sub(rb"\r?\n|\r", b"\r\n", raw)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw


# --- the send state machine -----------------------------------------------------------------


def _now() -> dt.datetime:
    return timezone.now()


def _backoff(attempts: int) -> dt.timedelta:
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


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
                return None
            entry.raw_file = storage.save_raw(
                mailbox_id=entry.mailbox_id, digest=storage.sha256(raw), raw=raw
            )
            fields.append("raw_file")
        entry.state = OutboxEntry.State.SENDING
        entry.attempts += 1
        entry.next_attempt_at = _now() + SENDING_CLAIM
        entry.save(update_fields=fields)
        _step("built", entry)
    return entry


def open_mailbox_smtp(mailbox: Mailbox) -> smtplib.SMTP:
    """A logged-in SMTP client for the mailbox: password, or XOAUTH2 with a token refreshed
    before it expires (and once more if the server refuses one we believed valid)."""
    # A server silent for this long after the final "." makes the outcome unknown (M-05).
    timeout = float(getattr(settings, "RELAY_SMTP_TIMEOUT", 60.0))
    if mailbox.connection_type not in oauth.OAUTH_TYPES:
        return open_smtp(SmtpSettings.from_mailbox(mailbox, timeout=timeout))
    token = oauth.ensure_access_token(mailbox.pk)
    try:
        fresh = Mailbox.objects.get(pk=mailbox.pk)
        return open_smtp(SmtpSettings.from_mailbox(fresh, timeout=timeout))
    except AuthenticationFailed:
        oauth.ensure_access_token(mailbox.pk, rejected=token)
        fresh = Mailbox.objects.get(pk=mailbox.pk)
        return open_smtp(SmtpSettings.from_mailbox(fresh, timeout=timeout))


def _envelope(entry: OutboxEntry) -> tuple[str, list[str]]:
    recipients = parse_recipients(list(entry.to) + list(entry.cc) + list(entry.bcc))
    return parse_recipient(entry.from_address).address, [r.address for r in recipients]


def _dot_stuffed(raw: bytes) -> bytes:
    # RFC 5321 4.5.2: a line starting with "." gets another; the data ends with CRLF.CRLF.
    return re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n"


def _transaction(client: smtplib.SMTP, sender: str, recipients: list[str], raw: bytes):
    """MAIL, RCPT per recipient, DATA; returns {recipient: (code, answer)} of the refused.
    smtplib.sendmail() is not used because it cannot tell a connection lost before the final
    "." (nothing delivered: retry) from one lost after it (outcome unknown: verify)."""
    options = []
    if client.has_extn("size"):
        options.append(f"SIZE={len(raw)}")
    with mapped_errors("SMTP MAIL FROM"):
        code, answer = client.mail(sender, options)
        if code != 250:
            client.rset()
            raise smtplib.SMTPSenderRefused(code, answer, sender)
    refused = {}
    with mapped_errors("SMTP RCPT TO"):
        for recipient in recipients:
            code, answer = client.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, answer.decode(errors="replace"))
    if len(refused) == len(recipients):
        with mapped_errors("SMTP RSET"):
            client.rset()
        codes = [code for code, _ in refused.values()]
        detail = "; ".join(f"{r}: {c} {a}" for r, (c, a) in refused.items())
        if any(400 <= c < 500 for c in codes):
            raise TemporaryFailure(f"every recipient was refused: {detail}")
        raise PermanentFailure(f"every recipient was refused: {detail}")
    with mapped_errors("SMTP DATA"):
        code, answer = client.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, answer)
        client.send(_dot_stuffed(raw))
    # From here on the server may have the whole message: losing the answer is not a failure
    # but an unknown outcome (RFC 1047).
    try:
        code, answer = client.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise _OutcomeUnknown(f"the connection was lost after the message was sent: {exc}") from exc
    if code != 250:
        with mapped_errors("SMTP DATA"):
            raise smtplib.SMTPDataError(code, answer)
    return refused


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
        refused = _transaction(client, sender, recipients, raw)
    except _OutcomeUnknown as exc:
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
            _quit(client)
    _step("smtp_accepted", entry)
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
            sent_at=_now(),
            recipient_status=statuses,
            last_error=detail[:2000],
            next_attempt_at=_now() + FINISH_RETRY,
        )
    log.info("outbox %s sent to %s recipients", entry.pk, len(recipients) - len(refused))
    _step("sent_committed", entry)
    finish_sent(entry.pk)
    return SendResult(entry.pk, OutboxEntry.State.SENT, detail, statuses)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _release(entry: OutboxEntry, **fields) -> None:
    OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.SENDING).update(**fields)


def _to_retry(entry: OutboxEntry, exc: Exception) -> SendResult:
    if entry.attempts >= MAX_ATTEMPTS:
        return _to_failed(entry, f"gave up after {entry.attempts} attempts: {exc}")
    _release(
        entry,
        state=OutboxEntry.State.RETRYING,
        last_error=str(exc)[:2000],
        next_attempt_at=_now() + _backoff(entry.attempts),
    )
    log.info("outbox %s: temporary failure, retrying: %s", entry.pk, exc)
    return SendResult(entry.pk, OutboxEntry.State.RETRYING, str(exc))


def _to_failed(entry: OutboxEntry, detail: str) -> SendResult:
    _release(entry, state=OutboxEntry.State.FAILED, last_error=detail[:2000], next_attempt_at=None)
    log.warning("outbox %s failed: %s", entry.pk, detail)
    return SendResult(entry.pk, OutboxEntry.State.FAILED, detail)


def _to_verify(entry: OutboxEntry, detail: str) -> SendResult:
    _release(
        entry,
        state=OutboxEntry.State.VERIFY,
        last_error=detail[:2000],
        next_attempt_at=_now() + VERIFY_RETRY,
    )
    log.warning("outbox %s: outcome unknown: %s", entry.pk, detail)
    return SendResult(entry.pk, OutboxEntry.State.VERIFY, detail)


def _login_refused(entry: OutboxEntry, exc: AuthenticationFailed) -> SendResult:
    """The SMTP login (or the OAuth grant) was refused: the mailbox needs a person, exactly as
    when the sync's login is refused (S-28); the entry waits, it is not failed."""
    Mailbox.objects.filter(pk=entry.mailbox_id).exclude(state=Mailbox.State.NEEDS_RECONNECT).update(
        state=Mailbox.State.NEEDS_RECONNECT, last_error=str(exc)[:2000], next_sync_at=None
    )
    _release(
        entry,
        state=OutboxEntry.State.RETRYING,
        last_error=f"Waiting for the mailbox to be reconnected: {exc}"[:2000],
        next_attempt_at=None,
    )
    return SendResult(entry.pk, OutboxEntry.State.RETRYING, str(exc))


# --- after a 250: the Message, its filing, the Sent folder ----------------------------------


def _provider_saves_sent(mailbox: Mailbox) -> bool:
    """Gmail files mail sent through its SMTP server in Sent itself: an APPEND would make a
    second copy. Configurable per provider (RELAY_OAUTH_PROVIDERS[...]["saves_sent"])."""
    providers = getattr(settings, "RELAY_OAUTH_PROVIDERS", {})
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
    record = _record_of(entry)
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
            prepared = _prepare(
                entry.mailbox_id,
                Fetched(uid=0, raw=raw, flags=("\\Seen",), internal_date=entry.sent_at),
                parse_message,
            )
            if prepared.parsed is None:
                raise SendError(f"our own message does not parse: {prepared.error}")
            try:
                with transaction.atomic():
                    message = _message_from(entry.mailbox_id, prepared)
                    message.is_outgoing = True
                    message.seen = True
                    message.save()
                    _store_parts([(message, prepared)])
                    assign_threads(mailbox_id=entry.mailbox_id, messages=[message])
                    created = True
            except IntegrityError:
                # The Sent-folder sync stored the same bytes a moment ago: that is the one.
                message = Message.objects.get(mailbox_id=entry.mailbox_id, sha256=digest)
        _link(locked, message)
        if created:
            # Matching files it on the records its recipients belong to (SPEC 3, Sending).
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
            _step("appended", entry)
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
    a failure leaves the entry "sent" with the next try scheduled."""
    entry = OutboxEntry.objects.select_related("mailbox").get(pk=entry_id)
    if entry.state != OutboxEntry.State.SENT:
        return SendResult(entry.pk, entry.state, "not sent")
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
            if not copy.found and _now() - (entry.sent_at or _now()) < PROVIDER_COPY_WAIT:
                OutboxEntry.objects.filter(pk=entry.pk).update(
                    next_attempt_at=_now() + FINISH_RETRY
                )
                return SendResult(entry.pk, OutboxEntry.State.SENT, "waiting for Sent copy")
            message = copy.message
            if message is not None:
                with transaction.atomic():
                    _link(entry, message)
        if message is None:
            # Ours: after PROVIDER_COPY_WAIT the provider's copy is not coming.
            message = _store_sent(entry, raw)
        _step("stored", entry)
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
            next_attempt_at=_now() + FINISH_RETRY,
            last_error=f"Sent, but not yet saved to the Sent folder: {exc}"[:2000],
        )
        log.warning("outbox %s: sent, Sent-folder copy pending: %s", entry.pk, exc)
        return SendResult(entry.pk, OutboxEntry.State.SENT, f"Sent folder pending: {exc}")
    return SendResult(entry.pk, OutboxEntry.State.SENT)


# --- outcome unknown ----------------------------------------------------------------------------


def reconcile_entry(entry_id: int) -> SendResult:
    """A "verify" entry, or a "sending" one whose worker died (its claim ran out): never sent
    again automatically. If the Sent folder holds our Message-ID (providers that save SMTP
    mail there themselves), the mail went out: "sent", linked to that copy. Otherwise it
    stays "verify" for a person to send again or mark as sent (M-05, S-24)."""
    now = _now()
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
    try:
        copy = _find_in_sent(entry)
    except MailError as exc:
        OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.VERIFY).update(
            next_attempt_at=_now() + VERIFY_RETRY
        )
        return SendResult(entry.pk, OutboxEntry.State.VERIFY, f"Sent folder not searched: {exc}")
    if copy.found:
        with transaction.atomic():
            settled = OutboxEntry.objects.filter(
                pk=entry.pk, state=OutboxEntry.State.VERIFY
            ).update(
                state=OutboxEntry.State.SENT,
                sent_at=_now(),
                appended_to_sent=True,
                last_error="Found in the Sent folder: it was sent.",
                next_attempt_at=None,
            )
            if settled and copy.message is not None:
                _link(entry, copy.message)
        return SendResult(entry.pk, OutboxEntry.State.SENT, "found in the Sent folder")
    # Only providers that file SMTP mail in Sent themselves can still show it later.
    again = _provider_saves_sent(entry.mailbox) and now - entry.updated_at < VERIFY_FOR
    OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.VERIFY).update(
        next_attempt_at=_now() + VERIFY_RETRY if again else None,
        last_error=(
            "Not found in the Sent folder. The server may or may not have delivered it: "
            "send it again, or mark it as sent if the recipient has it."
        ),
    )
    return SendResult(entry.pk, OutboxEntry.State.VERIFY, "not found in the Sent folder")


# --- what the beat tick and the task call ---------------------------------------------------


def process_entry(entry_id: int) -> SendResult:
    """The one function the task calls: whatever the entry needs next."""
    state = OutboxEntry.objects.filter(pk=entry_id).values_list("state", flat=True).first()
    if state in (OutboxEntry.State.QUEUED, OutboxEntry.State.RETRYING):
        return send_entry(entry_id)
    if state in (OutboxEntry.State.SENDING, OutboxEntry.State.VERIFY):
        return reconcile_entry(entry_id)
    if state == OutboxEntry.State.SENT:
        return finish_sent(entry_id)
    return SendResult(entry_id, state or "missing", "nothing to do")


# How long a dispatched entry is left alone before the tick may dispatch it again if its task
# never ran (a lost broker message delays, never drops, I-02).
DISPATCH_CLAIM = dt.timedelta(minutes=5)


def due_entries(now=None):
    now = now or _now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return OutboxEntry.objects.exclude(mailbox__state=Mailbox.State.NEEDS_RECONNECT).filter(
        (Q(state=OutboxEntry.State.QUEUED) & due)
        | (Q(state=OutboxEntry.State.RETRYING) & Q(next_attempt_at__lte=now))
        | (Q(state=OutboxEntry.State.RETRYING, next_attempt_at__isnull=True))
        | Q(state=OutboxEntry.State.SENDING, next_attempt_at__lte=now)
        | Q(state=OutboxEntry.State.VERIFY, next_attempt_at__lte=now)
        | Q(state=OutboxEntry.State.SENT, next_attempt_at__lte=now)
    )


def dispatch_due(*, enqueue: Callable[[int], None], now=None, limit: int = 500) -> list[int]:
    """Enqueue every entry that needs work, each once per DISPATCH_CLAIM: the conditional
    UPDATE is the claim, so overlapping ticks never enqueue an entry twice. A "sending" entry
    keeps its next_attempt_at (it is the dead-worker deadline) and is claimed by moving it."""
    now = now or _now()
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
            # unknown, and it is reconciled, never sent again blindly (S-24).
            updated = claim.update(
                state=OutboxEntry.State.VERIFY,
                last_error="The worker stopped during sending: the message may or may not "
                "have gone out.",
                next_attempt_at=now + DISPATCH_CLAIM,
            )
        else:
            # For the other states the claim is only this: the entry is not enqueued again
            # while its task waits in the broker (_claim and the state checks do the rest).
            updated = claim.update(next_attempt_at=now + DISPATCH_CLAIM)
        if updated:
            enqueue(pk)
            dispatched.append(pk)
    return dispatched


def smtp_connection_check(mailbox: Mailbox) -> str | None:
    """SMTP settings, "Test SMTP connection": None when the login worked, else the fixed
    user-facing message of the failure's category (C-08: no oracle for internal networks)."""
    try:
        _quit(open_mailbox_smtp(mailbox))
    except MailError as exc:
        log.info("SMTP test mailbox=%s failed: %s", mailbox.pk, exc)
        return exc.user_message
    return None


__all__ = [
    "SendResult",
    "build_message",
    "dispatch_due",
    "finish_sent",
    "process_entry",
    "reconcile_entry",
    "send_entry",
    "smtp_connection_check",
]
