"""An outbox entry as RFC 5322 bytes: the headers checked again, Relay's signed token in the
Message-ID of mail sent from a record (connector/filing/tokens.py), 7-bit transfer encodings
and CRLF line ends, so IMAP APPEND and the server's FETCH give back exactly these bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from django.utils import timezone

from connector.filing import tokens
from connector.ingest import storage
from crm.models import RECORD_MODELS
from inbox.addresses import Recipient, check_header_value, parse_recipient, parse_recipients
from inbox.models import (
    AttachmentBlob,
    OutboxEntry,
)

# 7-bit transfer encodings everywhere (quoted-printable/base64 bodies): any server takes the
# bytes without 8BITMIME, and IMAP APPEND stores them as they are. CRLF line ends.
SMTP_POLICY = email_policy.SMTP.clone(cte_type="7bit", max_line_length=78)


class SendError(Exception):
    """The entry cannot be built (a stored header value became invalid, a blob is missing)."""


def _address(recipient) -> Address:
    local, _, domain = recipient.address.partition("@")
    return Address(display_name=recipient.name, username=local, domain=domain)


def record_of(entry: OutboxEntry):
    model = RECORD_MODELS.get(entry.record_type or "")
    if model is None or entry.record_id is None:
        return None
    return model.objects.filter(pk=entry.record_id).first()


def final_message_id(entry: OutboxEntry) -> str:
    """Mail sent from a record carries the record's signed token (docs/product.md §4.1 rule 2,
    docs/reliability.md C-14); inbox/services/composing.py gave the entry a random id because the
    token key lives here."""
    record = record_of(entry)
    if record is None or tokens.check_message_id(entry.message_id).status == "valid":
        return entry.message_id
    return tokens.make_message_id(record, domain=entry.message_id.rpartition("@")[2] or None)


def _ids(value: str) -> list[str]:
    return [f"<{i.strip('<>')}>" for i in (value or "").split() if i.strip("<>")]


def build_message(entry: OutboxEntry, *, date: dt.datetime | None = None) -> bytes:
    """The entry as RFC 5322 bytes with CRLF line ends. Every header value is checked again
    (the row may have been written by other code than inbox/services/composing.py): a line break in
    any of them raises SendError, whatever the Python version does (docs/reliability.md M-01)."""
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
    html_part = msg.get_body(("html",)) if entry.html_body else None
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
        content_id = item.get("content_id") or ""
        if html_part is not None and content_id and f"cid:{content_id}" in entry.html_body:
            # An image pasted into the editor: a part of the HTML (multipart/related, RFC
            # 2387) that its <img src="cid:..."> names (docs/product.md §5.5).
            try:
                check_header_value("Content-ID", content_id)
            except Exception as exc:
                raise SendError(f"cannot build the message: {exc}") from exc
            html_part.add_related(
                data,
                maintype=maintype or "image",
                subtype=subtype or "png",
                cid=f"<{content_id}>",
                disposition="inline",
                filename=filename or "image",
            )
            continue
        msg.add_attachment(
            data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=filename or "attachment",
        )
    raw = msg.as_bytes(policy=SMTP_POLICY)
    # One line-end convention only: IMAP APPEND (imaplib maps every line end to CRLF) and the
    # server's FETCH must give back exactly these bytes, or the Sent-folder sync would see
    # another content hash (docs/reliability.md S-23).
    raw = re.sub(rb"\r?\n|\r", b"\r\n", raw)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw
