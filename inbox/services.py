"""Services that write inbox state. Keyword-only, transactional; bad input raises
ValidationError before anything is saved."""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from html.parser import HTMLParser
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Mailbox, PrimaryMailbox
from .permissions import can_manage_mailbox, readable_mailboxes
from .signals import outbox_queued, smtp_test_requested, sync_requested


@transaction.atomic
def mailbox_set_primary(*, user, mailbox: Mailbox) -> PrimaryMailbox:
    """Make `mailbox` the user's primary one (one per user: the row is keyed by the user)."""
    if not readable_mailboxes(user).filter(pk=mailbox.pk).exists():
        raise ValidationError("You can only make one of your own mailboxes primary.")
    primary, _ = PrimaryMailbox.objects.update_or_create(user=user, defaults={"mailbox": mailbox})
    return primary


def mailboxes_for_user(*, user) -> list[Mailbox]:
    """The user's readable mailboxes, primary first, then by address."""
    mailboxes = list(readable_mailboxes(user).order_by("email_address", "pk"))
    primary_id = (
        PrimaryMailbox.objects.filter(user=user).values_list("mailbox_id", flat=True).first()
    )
    mailboxes.sort(key=lambda m: m.pk != primary_id)
    return mailboxes


def mailbox_request_sync(*, mailbox: Mailbox) -> None:
    """ "Sync now": record the wish (the beat tick honours it even if the signal is lost)."""
    Mailbox.objects.filter(pk=mailbox.pk).update(sync_requested_at=timezone.now())
    transaction.on_commit(lambda: sync_requested.send(sender=Mailbox, mailbox_id=mailbox.pk))


def mailbox_pause(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.PAUSED)


def mailbox_resume(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk, state=Mailbox.State.PAUSED).update(
        state=Mailbox.State.ACTIVE, next_sync_at=None, consecutive_failures=0
    )


# --- two-way changes: written here as PendingChange rows, applied to the server by the sync --

_FLAG_EFFECT = {
    "mark_read": ("\\Seen", True),
    "mark_unread": ("\\Seen", False),
    "flag": ("\\Flagged", True),
    "unflag": ("\\Flagged", False),
}


def _server_locations(message):
    from .models import Location

    return list(
        Location.objects.filter(message=message, folder__is_local=False).select_related("folder")
    )


def _queue_server_changes(*, user, message, locations, action: str, target: str = "") -> int:
    """One pending change per server copy, and a sync to write them: the sync engine applies
    them before it reads anything (connector/sync.py push_pending_changes)."""
    from .models import PendingChange

    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=action,
                target_folder=target,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


@transaction.atomic
def message_change_flag(*, user, message, action: str) -> int:
    """Mark read/unread or flag/unflag `message` (already permission-checked by the caller).
    The local state changes at once; each server copy gets a pending change. Returns how many
    server writes were queued."""
    from .models import Location, Message

    if action not in _FLAG_EFFECT:
        raise ValidationError(f"Unknown action {action!r}.")
    flag, on = _FLAG_EFFECT[action]
    locations = _server_locations(message)
    for location in locations:
        flags = set(location.flags)
        flags.add(flag) if on else flags.discard(flag)
        location.flags = sorted(flags)
    Location.objects.bulk_update(locations, ["flags"])
    field = "seen" if flag == "\\Seen" else "flagged"
    Message.objects.filter(pk=message.pk).update(**{field: on})
    return _queue_server_changes(user=user, message=message, locations=locations, action=action)


@transaction.atomic
def message_move(*, user, message, target_folder) -> int:
    """Move every server copy of `message` to `target_folder` (a Folder of the same mailbox)."""
    from .models import PendingChange

    if target_folder.mailbox_id != message.mailbox_id or target_folder.is_local:
        raise ValidationError("Pick a folder of this mailbox on the server.")
    locations = [loc for loc in _server_locations(message) if loc.folder_id != target_folder.pk]
    return _queue_server_changes(
        user=user,
        message=message,
        locations=locations,
        action=PendingChange.Action.MOVE,
        target=target_folder.name,
    )


@transaction.atomic
def message_delete(*, user, message) -> int:
    """Delete = move to Trash on the server (expunge only when there is no Trash). The message
    stays in the CRM, filed where it was, marked no longer on the server once it is gone."""
    from .models import PendingChange

    return _queue_server_changes(
        user=user,
        message=message,
        locations=_server_locations(message),
        action=PendingChange.Action.DELETE,
    )


# --- Qualify: people file mail by hand (issue 4) ---------------------------------------------


def _record_field(record) -> str:
    from .models import Filing

    record_type = getattr(record, "record_type", "")
    if record_type not in Filing.RECORD_FIELDS or record.pk is None:
        raise ValidationError("Pick an account, contact, lead, ticket or opportunity.")
    return record_type


@transaction.atomic
def message_link(*, user, message, record, evidence: str = ""):
    """File `message` on `record` by hand (the caller checked that `user` may read it). A
    filing the person or automation made before is taken over, an unlinked one relinked: the
    person's word is the last one. Open triage entries of the message are resolved."""
    from .models import Filing, TriageEntry

    record_type = _record_field(record)
    filing, created = Filing.objects.select_for_update().get_or_create(
        message=message,
        **{record_type: record},
        defaults={
            "record_type": record_type,
            "rule": Filing.Rule.MANUAL,
            "by_person": user,
            "evidence": evidence or "Filed by hand",
        },
    )
    if not created and (filing.unlinked_at is not None or filing.by_person_id is None):
        filing.unlinked_at = None
        filing.unlinked_by = None
        filing.rule = Filing.Rule.MANUAL
        filing.by_person = user
        filing.evidence = evidence or "Filed by hand"
        filing.save(update_fields=["unlinked_at", "unlinked_by", "rule", "by_person", "evidence"])
    TriageEntry.objects.filter(message=message, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )
    return filing


@transaction.atomic
def message_unlink(*, user, filing):
    """Take a message off a record. The row stays (unlinked_at/unlinked_by), so automation
    never files the message there again and the history shows who did it."""
    from .models import Filing

    filing = Filing.objects.select_for_update().get(pk=filing.pk)
    if filing.unlinked_at is None:
        filing.unlinked_at = timezone.now()
        filing.unlinked_by = user
        filing.save(update_fields=["unlinked_at", "unlinked_by"])
    return filing


@transaction.atomic
def message_qualify(*, user, message, record=None, create: str = "", **fields):
    """Qualify: link `message` to `record`, or create a contact or lead from its sender
    (`create="contact"` / `"lead"`, with optional name fields and, for contacts, `account`)
    and link it. Returns the filing."""
    from crm import services as crm_services

    if record is None:
        if not message.from_address:
            raise ValidationError("This message has no sender address to create a record from.")
        name = (message.from_name or "").strip()
        first, _, last = name.rpartition(" ")
        fields.setdefault("first_name", (first or last)[:100])
        fields.setdefault("last_name", (last if first else "")[:100])
        if create == "contact":
            record = crm_services.contact_create(emails=[message.from_address], **fields)
        elif create == "lead":
            record = crm_services.lead_create(emails=[message.from_address], **fields)
        else:
            raise ValidationError("Pick a record, or create a contact or a lead.")
    return message_link(user=user, message=message, record=record)


def exclusion_patterns_preview(*, patterns, mailbox=None, limit: int = 100) -> list[dict]:
    """What these exclusion patterns would exclude among the last `limit` messages (of one
    mailbox, or all): the settings page shows it before the patterns are saved."""
    from .models import ExclusionPattern, Message

    cleaned = [p.strip().lower() for p in patterns if p and p.strip()]
    messages = Message.objects.exclude(from_address="").order_by("-date", "-id")
    if mailbox is not None:
        messages = messages.filter(mailbox=mailbox)
    hits = []
    for pk, address, subject in messages.values_list("pk", "from_address", "subject")[:limit]:
        pattern = ExclusionPattern.first_match(address, cleaned)
        if pattern:
            hits.append({"message_id": pk, "from": address, "subject": subject, "pattern": pattern})
    return hits


# --- sending (issue 5): outbox entries, sent by connector/sending.py ---------------------------
#
# A user action that sends mail writes an OutboxEntry (state "queued") and sends the
# outbox_queued signal on commit; nothing here talks to a server. Everything a header will
# carry is checked here, before the row exists: line breaks and control characters are refused
# whatever the Python version (RELIABILITY M-01, CVE-2024-6923), recipients are parsed strictly
# (M-03, CVE-2023-27043), and only users who may read a mailbox may send as it (M-06).

MAX_RECIPIENTS = 200
# What the big providers accept per message (Gmail and Microsoft 365: 25 MB and 35 MB before
# encoding; base64 adds a third): more would only bounce later.
MAX_ATTACHMENT_BYTES = 18 * 1024 * 1024
MAX_REFERENCES = 20  # RFC 5322 3.6.4 lets a client trim References; keep the first and the last
# C0 controls (CR, LF, NUL...), DEL, and the characters str.splitlines() and some mail
# libraries also take for line ends (NEL, LS, PS): none belongs in a header value.
_HEADER_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# RFC 5322 3.2.3 dot-atom: no quoted local parts, no comments, no spaces (M-03).
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_NAME_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,."]')
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_FORWARD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|wg|tr)\s*:\s*)+", re.I)


class Recipient(NamedTuple):
    name: str
    address: str  # the normalised addr-spec: exactly what is sent to and what matching uses

    def __str__(self) -> str:
        if not self.name:
            return self.address
        name = self.name
        if _NAME_NEEDS_QUOTES.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.address}>"


def check_header_value(label: str, value: str) -> str:
    """`value` unchanged, or ValidationError if it holds a line break or control character."""
    if _HEADER_FORBIDDEN.search(value or ""):
        raise ValidationError(f"{label} may not contain line breaks or control characters.")
    return value or ""


def _split_recipients(value: str) -> list[str]:
    """Split at commas and semicolons that are outside quotes and angle brackets."""
    items, current, quoted, angle, escaped = [], [], False, False, False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\" and quoted:
            current.append(ch)
            escaped = True
            continue
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch in ",;" and not quoted and not angle:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quoted:
        raise ValidationError(f"“{value}”: a quotation mark is not closed.")
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _parse_addr_spec(spec: str, original: str) -> str:
    from crm.normalize import normalize_domain

    spec = spec.strip()
    if spec.count("@") != 1:
        raise ValidationError(f"“{original}” is not one email address.")
    local, domain = spec.split("@")
    if not local.isascii():
        raise ValidationError(
            f"“{original}”: addresses with non-ASCII characters before the @ cannot be sent to."
        )
    if not _DOT_ATOM.match(local):
        # Quoted local parts and comments are legal in RFC 5322 and the root of parser
        # differentials (CVE-2023-27043): "a@b"@evil.example is refused, not guessed at.
        raise ValidationError(f"“{original}” is not a plain email address.")
    if len(local) > 64:
        raise ValidationError(f"“{original}”: the part before the @ is too long.")
    return f"{local.lower()}@{normalize_domain(domain)}"


def parse_recipient(value: str) -> Recipient:
    """`ana@example.com`, `Ana <ana@example.com>` or `"Doe, Ana" <ana@example.com>`; nothing
    else. Raises ValidationError with the offending text."""
    item = check_header_value("Recipients", value).strip()
    if "(" in item.replace('\\"', "").split('"')[-1] or ")" in item.split('"')[-1]:
        raise ValidationError(f"“{value}”: comments in addresses are not allowed.")
    if not item.endswith(">"):
        if "<" in item or ">" in item or '"' in item:
            raise ValidationError(f"“{value}” is not a valid recipient.")
        return Recipient("", _parse_addr_spec(item, value))
    open_at = item.rfind("<")
    if open_at < 0:
        raise ValidationError(f"“{value}” is not a valid recipient.")
    name, spec = item[:open_at].strip(), item[open_at + 1 : -1]
    if "<" in spec or ">" in spec:
        raise ValidationError(f"“{value}” is not a valid recipient.")
    if name.startswith('"'):
        if not name.endswith('"') or len(name) < 2:
            raise ValidationError(f"“{value}”: the name's quotation marks do not match.")
        body = name[1:-1]
        if re.search(r'(?<!\\)"', body.replace("\\\\", "")):
            raise ValidationError(f"“{value}”: the name's quotation marks do not match.")
        name = re.sub(r"\\(.)", r"\1", body)
    elif any(ch in name for ch in '"<>()'):
        raise ValidationError(f"“{value}”: put a name with special characters in quotes.")
    return Recipient(" ".join(name.split()), _parse_addr_spec(spec, value))


def parse_recipients(value) -> list[Recipient]:
    """A recipient field (one string with commas or semicolons, or a list of strings) as
    unique recipients, in order. Raises ValidationError naming the first bad one."""
    if value is None:
        return []
    raw_items = [value] if isinstance(value, str) else list(value)
    recipients: dict[str, Recipient] = {}
    for raw in raw_items:
        if isinstance(raw, Recipient):
            items = [str(raw)]
        else:
            check_header_value("Recipients", raw)
            items = _split_recipients(raw)
        for item in items:
            recipient = parse_recipient(item)
            recipients.setdefault(recipient.address, recipient)
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationError(f"At most {MAX_RECIPIENTS} recipients per message.")
    return list(recipients.values())


def normalise_subject(value: str) -> str:
    """A subject taken from received mail: any line break or control character (a decoded
    encoded-word may hold CR LF, M-02) becomes a space, runs of spaces one space."""
    return " ".join(_HEADER_FORBIDDEN.sub(" ", value or "").split())


def _may_send_as(user, mailbox: Mailbox) -> None:
    if user is None:
        return  # automation (acknowledgements, forwards) acts as the mailbox itself
    if not readable_mailboxes(user).filter(pk=mailbox.pk).exists():
        raise PermissionDenied("You may not send from this mailbox.")


def _sent_from_reference(record, subject: str) -> str:
    """Mail sent from a ticket or an opportunity carries its reference in the subject, so a
    reply that loses its headers still finds its way back (SPEC 4, rule 2)."""
    reference = getattr(record, "reference", "") if record is not None else ""
    if reference and f"[{reference}]".lower() not in subject.lower():
        subject = f"[{reference}] {subject}".strip()
    return subject


def _html_from_text(text: str) -> str:
    return "<div>" + html.escape(text).replace("\n", "<br>\n") + "</div>"


class _TextFromHtml(HTMLParser):
    _BREAKS = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head") and self._skip:
            self._skip -= 1
        elif tag in ("p", "div", "tr"):
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def text_from_html(value: str) -> str:
    parser = _TextFromHtml()
    parser.feed(value)
    parser.close()
    text = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _with_signature(text: str, html_body: str, signature: str) -> tuple[str, str]:
    signature = (signature or "").strip("\n")
    if not signature:
        return text, html_body
    # "-- " on a line of its own is the signature separator clients recognise (RFC 3676 4.3).
    text = f"{text.rstrip()}\n\n-- \n{signature}\n"
    if html_body:
        html_body = f'{html_body}\n<div class="signature">-- <br>\n' + (
            html.escape(signature).replace("\n", "<br>\n") + "</div>"
        )
    return text, html_body


def _attachment_rows(attachments) -> list[dict]:
    """New attachments (UploadedFile, or (filename, content_type, bytes)) stored once by
    content hash, as the sync stores received ones; the entry keeps only references."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from .models import AttachmentBlob

    rows, total = [], 0
    for item in attachments or ():
        if isinstance(item, dict) and "blob" in item:
            rows.append(item)
            continue
        if isinstance(item, tuple | list):
            filename, content_type, data = item
        else:
            filename, content_type = item.name, item.content_type
            data = item.read()
        filename = " ".join(_HEADER_FORBIDDEN.sub(" ", filename or "").split())[:200]
        content_type = (content_type or "application/octet-stream").lower()
        if not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", content_type):
            content_type = "application/octet-stream"
        total += len(data)
        if total > MAX_ATTACHMENT_BYTES:
            raise ValidationError(
                f"Attachments may add up to {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB at most."
            )
        digest = hashlib.sha256(data).hexdigest()
        # The same content-addressed layout as connector/storage.py, so a blob saved here and
        # the same bytes arriving by sync are one file and one row.
        path = f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"
        if not default_storage.exists(path):
            saved = default_storage.save(path, ContentFile(data))
            if saved != path:
                default_storage.delete(saved)
        AttachmentBlob.objects.get_or_create(
            sha256=digest, defaults={"size": len(data), "file": path}
        )
        rows.append({"blob": digest, "filename": filename, "content_type": content_type})
    return rows


def _queue(entry) -> None:
    from .models import OutboxEntry

    transaction.on_commit(
        lambda: outbox_queued.send(sender=OutboxEntry, entry_id=entry.pk), robust=True
    )


def _new_message_id(mailbox: Mailbox) -> str:
    """128 random bits: nobody can guess it to thread a forged reply onto our mail (M-07).
    Mail sent from a record gets the record's signed token instead when it is first sent
    (connector.sending; the key lives there)."""
    domain = (mailbox.email_address or settings.RELAY_DEFAULT_FROM_EMAIL).rpartition("@")[2]
    return f"relay-{secrets.token_hex(16)}@{domain or 'relay.invalid'}"


@transaction.atomic
def outbox_compose(
    *,
    user,
    mailbox: Mailbox,
    to,
    cc=(),
    bcc=(),
    subject: str,
    text_body: str = "",
    html_body: str = "",
    attachments=(),
    record=None,
    reply_to_message=None,
    in_reply_to: str = "",
    references: str = "",
    purpose: str = "compose",
    include_signature: bool = True,
):
    """Queue a message from `mailbox`. `record` (a CRM record) is the record it is sent
    from: its reference goes into the subject, its token into the Message-ID, and the sent
    message is filed there. Raises PermissionDenied or ValidationError before any row exists."""
    from .models import OutboxEntry

    _may_send_as(user, mailbox)
    to_list, cc_list, bcc_list = (parse_recipients(v) for v in (to, cc, bcc))
    if not (to_list or cc_list or bcc_list):
        raise ValidationError("Add at least one recipient.")
    subject = check_header_value("Subject", subject).strip()
    check_header_value("The mailbox's display name", mailbox.display_name)
    subject = _sent_from_reference(record, subject)[:900]
    if len(subject) > 900:
        raise ValidationError("The subject is too long.")
    if not text_body and html_body:
        text_body = text_from_html(html_body)
    if include_signature:
        text_body, html_body = _with_signature(text_body, html_body, mailbox.signature)
    if not html_body:
        html_body = _html_from_text(text_body)
    for label, value in (("In-Reply-To", in_reply_to), ("References", references)):
        check_header_value(label, value)
    entry = OutboxEntry.objects.create(
        mailbox=mailbox,
        created_by=user,
        state=OutboxEntry.State.QUEUED,
        message_id=_new_message_id(mailbox),
        from_address=mailbox.email_address or settings.RELAY_DEFAULT_FROM_EMAIL,
        to=[str(r) for r in to_list],
        cc=[str(r) for r in cc_list],
        bcc=[str(r) for r in bcc_list],
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        in_reply_to=in_reply_to.strip("<> "),
        references=references.strip(),
        reply_to_message=reply_to_message,
        record_type=getattr(record, "record_type", "") if record is not None else "",
        record_id=record.pk if record is not None else None,
        purpose=purpose,
        attachments=_attachment_rows(attachments),
    )
    _queue(entry)
    return entry


def _message_addresses(message, role: str) -> list[Recipient]:
    return [
        Recipient(" ".join(_HEADER_FORBIDDEN.sub(" ", name).split()), address)
        for name, address in message.addresses.filter(role=role)
        .order_by("position")
        .values_list("name", "address")
    ]


def reply_recipients(*, message, mailbox: Mailbox, reply_all: bool = False):
    """(to, cc) of a reply: to Reply-To, else From; to the original recipients when we sent
    the original ourselves; reply-all adds the other To and Cc, never our own address."""
    own = {(mailbox.email_address or "").lower()}
    sender = _message_addresses(message, "from")
    if sender and sender[0].address in own:
        to = _message_addresses(message, "to")
    else:
        to = _message_addresses(message, "reply_to") or sender
    cc: list[Recipient] = []
    if reply_all:
        taken = own | {r.address for r in to}
        for recipient in _message_addresses(message, "to") + _message_addresses(message, "cc"):
            if recipient.address not in taken:
                cc.append(recipient)
                taken.add(recipient.address)
    return [r for r in to if r.address not in own] or to, cc


def _default_record(message):
    """The ticket (else opportunity) a message is filed on: where a reply is sent from."""
    from .models import Filing

    for record_type in ("ticket", "opportunity"):
        filing = (
            Filing.objects.filter(
                message=message, record_type=record_type, unlinked_at__isnull=True
            )
            .select_related(record_type)
            .order_by("created_at", "pk")
            .first()
        )
        if filing is not None:
            return filing.record
    return None


def _quote_text(message) -> str:
    when = message.date.strftime("%a, %d %b %Y %H:%M") if message.date else "an earlier date"
    who = message.from_name or message.from_address or "someone"
    original = (message.text_body or "")[:20000]
    quoted = "\n".join(f"> {line}" if line else ">" for line in original.splitlines())
    return f"On {when}, {who} wrote:\n{quoted}\n"


def _references_for(message) -> str:
    ids = [i for i in (message.references or "").split() if i] + [message.message_id]
    ids = [i.strip("<>") for i in ids if i.strip("<>")]
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1) :]
    return " ".join(f"<{i}>" for i in ids)


def message_reply(
    *,
    user,
    message,
    text_body: str = "",
    html_body: str = "",
    reply_all: bool = False,
    to=None,
    cc=None,
    bcc=(),
    subject: str | None = None,
    attachments=(),
    record=None,
    mailbox: Mailbox | None = None,
    quote: bool = True,
):
    """Reply (or reply-all) to `message` from its mailbox (or `mailbox`). Recipients default
    to reply_recipients(); In-Reply-To and References thread it (RFC 5322 3.6.4)."""
    from .permissions import readable_messages

    if not readable_messages(user).filter(pk=message.pk).exists():
        raise PermissionDenied("You may not reply to this message.")
    mailbox = mailbox or message.mailbox
    default_to, default_cc = reply_recipients(message=message, mailbox=mailbox, reply_all=reply_all)
    if subject is None:
        base = _REPLY_PREFIX.sub("", normalise_subject(message.subject))
        subject = f"Re: {base}" if base else "Re:"
    if record is None:
        record = _default_record(message)
    # The signature goes above the quoted original, where people look for it.
    text_body, html_body = _with_signature(text_body, html_body, mailbox.signature)
    if quote and message.text_body:
        text_body = f"{text_body.rstrip()}\n\n{_quote_text(message)}"
        if html_body:
            html_body += "\n<blockquote>" + _html_from_text(_quote_text(message)) + "</blockquote>"
    return outbox_compose(
        user=user,
        mailbox=mailbox,
        to=default_to if to is None else to,
        cc=default_cc if cc is None else cc,
        bcc=bcc,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        attachments=attachments,
        record=record,
        reply_to_message=message,
        in_reply_to=message.message_id,
        references=_references_for(message),
        include_signature=False,
    )


def message_forward(
    *,
    user,
    message,
    to,
    cc=(),
    bcc=(),
    text_body: str = "",
    html_body: str = "",
    attachments=(),
    include_attachments: bool = True,
    record=None,
    mailbox: Mailbox | None = None,
):
    """Forward `message` with its attachments (stored blobs: nothing is downloaded again)."""
    from .permissions import readable_messages

    if not readable_messages(user).filter(pk=message.pk).exists():
        raise PermissionDenied("You may not forward this message.")
    base = _FORWARD_PREFIX.sub("", normalise_subject(message.subject))
    recipients = ", ".join(
        str(r) for r in _message_addresses(message, "to") + _message_addresses(message, "cc")
    )
    header = "---------- Forwarded message ----------\n"
    header += f"From: {message.from_name} <{message.from_address}>\n"
    if message.date:
        header += f"Date: {message.date:%a, %d %b %Y %H:%M %z}\n"
    header += f"Subject: {normalise_subject(message.subject)}\nTo: {recipients}\n\n"
    forwarded = header + (message.text_body or "")
    mailbox = mailbox or message.mailbox
    text_body, html_body = _with_signature(text_body, html_body, mailbox.signature)
    text_body = f"{text_body.rstrip()}\n\n{forwarded}".lstrip("\n")
    if html_body:
        html_body += "\n<blockquote>" + _html_from_text(forwarded) + "</blockquote>"
    rows = list(_attachment_rows(attachments))
    if include_attachments:
        for attachment in message.attachments.select_related("blob").order_by("position"):
            rows.append(
                {
                    "blob": attachment.blob.sha256,
                    "filename": attachment.filename,
                    "content_type": attachment.content_type,
                    "content_id": attachment.content_id if attachment.is_inline else "",
                }
            )
    return outbox_compose(
        user=user,
        mailbox=mailbox,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=f"Fwd: {base}" if base else "Fwd:",
        text_body=text_body,
        html_body=html_body,
        attachments=rows,
        record=record,
        reply_to_message=message,
        include_signature=False,
    )


def mailbox_send_test_email(*, user, mailbox: Mailbox, to: str):
    """SMTP settings, "Send test email": one message to an address the user gives."""
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("Only the mailbox's owner or an admin can send a test email.")
    return outbox_compose(
        user=None,
        mailbox=mailbox,
        to=to,
        subject="Relay CRM test email",
        text_body=(
            f"This is a test email from Relay CRM, sent from {mailbox.email_address} through "
            f"{mailbox.smtp_host}:{mailbox.smtp_port}.\nIf you can read it, sending works.\n"
        ),
        purpose="test",
        include_signature=False,
    )


def ask_connector(signal, **kwargs):
    """The answer of the one connector receiver of `signal` (exceptions propagate)."""
    responses = signal.send(sender=Mailbox, **kwargs)
    if not responses:
        raise ImproperlyConfigured(f"No connector receiver for {signal!r}: is it installed?")
    return responses[0][1]


def mailbox_test_smtp(*, user, mailbox: Mailbox) -> str | None:
    """SMTP settings, "Test SMTP connection": log in and out now. None when it worked, else
    the fixed user-facing message of the failure's category (RELIABILITY C-08)."""
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("Only the mailbox's owner or an admin can test its settings.")
    return ask_connector(smtp_test_requested, mailbox=mailbox)


@transaction.atomic
def outbox_send_again(*, user, entry):
    """A person sends a failed entry, or one whose outcome is unknown ("verify"), again.
    Never automatic for "verify": only the person can accept the risk of a second copy."""
    from .models import OutboxEntry

    entry = OutboxEntry.objects.select_for_update().get(pk=entry.pk)
    _may_send_as(user, entry.mailbox)
    if entry.state not in (OutboxEntry.State.FAILED, OutboxEntry.State.VERIFY):
        raise ValidationError("Only a failed message, or one not known to be sent, is resent.")
    entry.state = OutboxEntry.State.QUEUED
    entry.next_attempt_at = None
    entry.save(update_fields=["state", "next_attempt_at", "updated_at"])
    _queue(entry)
    return entry


def outbox_mark_sent(*, user, entry):
    """A person confirms that a "verify" entry did arrive (e.g. the recipient answered)."""
    from .models import OutboxEntry

    _may_send_as(user, entry.mailbox)
    updated = OutboxEntry.objects.filter(pk=entry.pk, state=OutboxEntry.State.VERIFY).update(
        state=OutboxEntry.State.SENT,
        sent_at=timezone.now(),
        last_error="",
        # Then, as for any sent entry: stored, filed on its record, appended to Sent.
        next_attempt_at=timezone.now(),
    )
    if not updated:
        raise ValidationError("Only a message whose outcome is unknown can be marked as sent.")
    _queue(entry)


# --- OAuth (issue 5): what the connect/reconnect callback saves ----------------------------


def _provider_settings(provider: str) -> dict:
    providers = getattr(settings, "RELAY_OAUTH_PROVIDERS", {})
    if provider not in providers:
        raise ValidationError(f"Unknown OAuth provider {provider!r}.")
    return providers[provider]


@transaction.atomic
def mailbox_oauth_connected(
    *,
    user,
    provider: str,
    email: str,
    access_token: str,
    refresh_token: str,
    expires_at,
    mailbox: Mailbox | None = None,
) -> Mailbox:
    """Save what an OAuth sign-in returned. With `mailbox` (Reconnect) the account must be
    the same address: another one is refused and nothing changes. Without, a new personal
    mailbox is created paused, for the connect wizard to pick folders and the sync-from date
    (or, if the user has one with that address, it is reconnected)."""
    from crm.normalize import normalize_email

    config = _provider_settings(provider)
    email = normalize_email(email)
    if mailbox is None:
        mailbox = (
            Mailbox.objects.filter(kind=Mailbox.Kind.PERSONAL, owner=user, email_address=email)
            .order_by("pk")
            .first()
        )
    if mailbox is not None:
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        if not can_manage_mailbox(user, mailbox):
            raise PermissionDenied("You may not reconnect this mailbox.")
        if normalize_email(mailbox.email_address) != email:
            raise ValidationError(
                f"You signed in as {email}, but this mailbox is {mailbox.email_address}. "
                f"Sign in with {mailbox.email_address} to reconnect it; nothing was changed."
            )
        if mailbox.connection_type != provider:
            raise ValidationError(
                f"This mailbox connects with {mailbox.get_connection_type_display()}, not "
                f"{provider}; nothing was changed."
            )
        mailbox.set_oauth_tokens(
            access_token=access_token, refresh_token=refresh_token, expires_at=expires_at
        )
        fields = ["oauth_access_token_encrypted", "oauth_refresh_token_encrypted"]
        fields += ["oauth_expires_at", "updated_at"]
        if mailbox.state in (Mailbox.State.NEEDS_RECONNECT, Mailbox.State.ERROR):
            # Folder cursors are untouched: the next sync carries on where it stopped, so
            # nothing is imported twice (SPEC 2, Reconnect).
            mailbox.state = Mailbox.State.ACTIVE
            mailbox.last_error = ""
            mailbox.consecutive_failures = 0
            mailbox.next_sync_at = None
            fields += ["state", "last_error", "consecutive_failures", "next_sync_at"]
        mailbox.save(update_fields=fields)
        return mailbox
    mailbox = Mailbox(
        kind=Mailbox.Kind.PERSONAL,
        owner=user,
        email_address=email,
        connection_type=provider,
        imap_host=config["imap_host"],
        imap_port=config.get("imap_port", 993),
        imap_security=config.get("imap_security", "ssl"),
        smtp_host=config["smtp_host"],
        smtp_port=config.get("smtp_port", 465),
        smtp_security=config.get("smtp_security", "ssl"),
        state=Mailbox.State.PAUSED,
    )
    mailbox.set_oauth_tokens(
        access_token=access_token, refresh_token=refresh_token, expires_at=expires_at
    )
    mailbox.save()
    return mailbox


# --- mailbox settings (issue 6): connect, reconnect, options, retry held messages -------------

_CONNECT_FIELDS = (
    "display_name",
    "login",
    "imap_host",
    "imap_port",
    "imap_security",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "allow_insecure_cert",
    "sync_from",
    "create_contacts",
    "refresh_interval",
    "signature",
    "privacy",
)


def mailbox_audit_insecure_cert(user, mailbox: Mailbox) -> None:
    import logging

    if mailbox.allow_insecure_cert:
        # RELIABILITY C-04: the opt-in out of certificate checks is visible and audit-logged.
        logging.getLogger("relay.audit").warning(
            "mailbox=%s %s allows an untrusted certificate (set by user=%s)",
            mailbox.pk,
            mailbox.email_address,
            user.pk,
        )


@transaction.atomic
def mailbox_connect(
    *,
    user,
    kind: str,
    email_address: str,
    password: str,
    active_folders: list[str],
    **fields,
) -> Mailbox:
    """Create a mailbox from the connect wizard (the view has tested the connection), encrypt
    its password and ask for the first sync. The password is never logged. A user's first
    personal mailbox becomes their primary one."""
    from crm.normalize import normalize_email

    unknown = set(fields) - set(_CONNECT_FIELDS)
    if unknown:
        raise TypeError(f"Unknown mailbox fields: {sorted(unknown)}")
    if kind == Mailbox.Kind.SHARED and not user.is_superuser:
        raise PermissionDenied("Only admins create shared mailboxes.")
    if kind not in Mailbox.Kind.values:
        raise ValidationError("Pick a personal or a shared mailbox.")
    if not password:
        raise ValidationError({"password": "Enter the password."})
    if not active_folders:
        raise ValidationError({"active_folders": "Pick at least one folder to sync."})
    if not fields.get("sync_from"):
        raise ValidationError({"sync_from": "Pick the date to sync mail from."})
    email_address = normalize_email(email_address)
    owner = user if kind == Mailbox.Kind.PERSONAL else None
    clash = Mailbox.objects.filter(email_address=email_address, kind=kind)
    if owner is not None:
        clash = clash.filter(owner=owner)
    if clash.exists():
        raise ValidationError({"email_address": "This address is connected already."})
    mailbox = Mailbox(
        kind=kind,
        owner=owner,
        email_address=email_address,
        connection_type=Mailbox.ConnectionType.IMAP,
        active_folders=list(active_folders),
        state=Mailbox.State.ACTIVE,
        **fields,
    )
    mailbox.set_password(password)
    mailbox.full_clean(exclude=["password_encrypted"])
    mailbox.save()
    mailbox_audit_insecure_cert(user, mailbox)
    if owner is not None and not PrimaryMailbox.objects.filter(user=user).exists():
        PrimaryMailbox.objects.create(user=user, mailbox=mailbox)
    mailbox_request_sync(mailbox=mailbox)
    return mailbox


@transaction.atomic
def mailbox_reconnect(
    *,
    user,
    mailbox: Mailbox,
    password: str,
    active_folders: list[str] | None = None,
    email_address: str | None = None,
) -> Mailbox:
    """Reconnect with a new password. It must be the same mailbox: another address is refused
    and nothing changes. Folders and their cursors are left as they are, so the next sync
    carries on where the last one stopped and nothing is imported twice (SPEC 2)."""
    from crm.normalize import normalize_email

    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not reconnect this mailbox.")
    if mailbox.connection_type != Mailbox.ConnectionType.IMAP:
        raise ValidationError("This mailbox signs in with its provider: use its sign-in button.")
    if email_address is not None and normalize_email(email_address) != mailbox.email_address:
        raise ValidationError(
            f"This is {mailbox.email_address}: another address cannot be connected in its "
            "place. Nothing was changed."
        )
    if not password:
        raise ValidationError({"password": "Enter the password."})
    mailbox.set_password(password)
    fields = ["password_encrypted", "updated_at"]
    if active_folders is not None:
        if not active_folders:
            raise ValidationError({"active_folders": "Pick at least one folder to sync."})
        mailbox.active_folders = list(active_folders)
        fields.append("active_folders")
        mailbox.folders.filter(is_local=False).exclude(name__in=active_folders).update(
            is_active=False
        )
        mailbox.folders.filter(name__in=active_folders).update(is_active=True)
    if mailbox.state != Mailbox.State.PAUSED:
        mailbox.state = Mailbox.State.ACTIVE
        mailbox.next_sync_at = None
        fields += ["state", "next_sync_at"]
    mailbox.last_error = ""
    mailbox.consecutive_failures = 0
    fields += ["last_error", "consecutive_failures"]
    mailbox.save(update_fields=fields)
    if mailbox.state == Mailbox.State.ACTIVE:
        mailbox_request_sync(mailbox=mailbox)
    return mailbox


def mailbox_update_options(*, user, mailbox: Mailbox, **fields) -> Mailbox:
    """Display name, signature, refresh interval, create contacts, privacy: what may change
    after connecting (never the address or the sync-from date)."""
    allowed = {"display_name", "create_contacts", "refresh_interval", "signature", "privacy"}
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not change this mailbox.")
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"These cannot be changed here: {sorted(unknown)}")
    if "refresh_interval" in fields and not 30 <= int(fields["refresh_interval"]) <= 86400:
        raise ValidationError({"refresh_interval": "Between 30 seconds and a day."})
    for name, value in fields.items():
        setattr(mailbox, name, value)
    mailbox.save(update_fields=[*fields, "updated_at"])
    return mailbox


@transaction.atomic
def ledger_retry(*, user, entry) -> None:
    """Try a held message again: it goes back to "failed" with its attempts reset, so the next
    sync fetches it once more (connector.sync retries failed UIDs), and a sync is requested."""
    from .models import LedgerEntry

    entry = LedgerEntry.objects.select_for_update().select_related("mailbox").get(pk=entry.pk)
    if not can_manage_mailbox(user, entry.mailbox):
        raise PermissionDenied("You may not retry messages of this mailbox.")
    if entry.outcome != LedgerEntry.Outcome.HELD or entry.message_id is not None:
        # A held entry with a message was stored as unreadable: fetching it again changes
        # nothing. Only a message that was never stored can be retried.
        raise ValidationError("Only a message that could not be stored can be tried again.")
    entry.outcome = LedgerEntry.Outcome.FAILED
    entry.reason = "retry requested"
    entry.attempts = 0
    entry.save(update_fields=["outcome", "reason", "attempts", "updated_at"])
    mailbox_request_sync(mailbox=entry.mailbox)


@transaction.atomic
def mailbox_finish_setup(
    *, user, mailbox: Mailbox, sync_from, active_folders: list[str], **options
) -> Mailbox:
    """The wizard's last step for a mailbox that a Google or Microsoft sign-in created (paused,
    without folders or a sync-from date): save the choices and start the first sync. Refused
    once the mailbox has a sync-from date: it cannot change afterwards (SPEC 2)."""
    allowed = {"create_contacts", "refresh_interval", "signature", "privacy"}
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if not can_manage_mailbox(user, mailbox):
        raise PermissionDenied("You may not set up this mailbox.")
    if set(options) - allowed:
        raise TypeError(f"Unknown options: {sorted(set(options) - allowed)}")
    if mailbox.sync_from is not None or mailbox.first_sync_done:
        raise ValidationError("This mailbox is set up already; its sync-from date cannot change.")
    if not sync_from:
        raise ValidationError({"sync_from": "Pick the date to sync mail from."})
    if not active_folders:
        raise ValidationError({"active_folders": "Pick at least one folder to sync."})
    for name, value in options.items():
        setattr(mailbox, name, value)
    mailbox.sync_from = sync_from
    mailbox.active_folders = list(active_folders)
    mailbox.state = Mailbox.State.ACTIVE
    mailbox.next_sync_at = None
    mailbox.save(
        update_fields=[
            *options,
            "sync_from",
            "active_folders",
            "state",
            "next_sync_at",
            "updated_at",
        ]
    )
    if (
        mailbox.kind == Mailbox.Kind.PERSONAL
        and not PrimaryMailbox.objects.filter(user=user).exists()
    ):
        PrimaryMailbox.objects.create(user=user, mailbox=mailbox)
    mailbox_request_sync(mailbox=mailbox)
    return mailbox
