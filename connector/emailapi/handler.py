"""Email API requests arriving by mail: find the document in a message from an allowed sender,
refuse it unless our receiving server authenticated the sender for its From domain
(connector/filing/authentication.py) and, when the sender has one, the document carries its
secret; apply it (connector/emailapi/document.py), record the request, and queue the reply that
says what was done or what is wrong (docs/reliability.md C-17).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from connector.emailapi.document import (
    NAMESPACE,
    ROOT_END,
    SCHEMA_FILE,
    ApiError,
    Result,
    max_bytes,
    request_secret,
    run_document,
)
from connector.filing import tokens
from connector.filing.authentication import check_sender
from connector.ingest import storage
from crm.models import Ticket
from inbox import ports
from inbox.models import EmailApiRequest, EmailApiSender, Mailbox, Message, OutboxEntry

log = logging.getLogger(__name__)


def find_document(message: Message) -> tuple[str | bytes, str, int | None] | None:
    """(document, where it came from, its full size if only its start was read), or None when
    the message carries no document."""
    body = (message.text_body or "").lstrip("\ufeff \t\r\n")
    if body.startswith("<"):
        # A footer the sender's mail system appends after the document ("-- Sent by ...")
        # is not part of it: cut after the last closing root tag.
        ends = list(ROOT_END.finditer(body))
        if ends:
            body = body[: ends[-1].end()]
        return body, "the message body", None
    for attachment in message.attachments.select_related("blob").order_by("position"):
        name = (attachment.filename or "").lower()
        if name.endswith(".xml") or attachment.content_type in ("application/xml", "text/xml"):
            label = f'the attachment "{attachment.filename or "(no name)"}"'
            # Never more than the cap is read: an oversized attachment is refused by its size.
            with storage.open_blob(attachment.blob.file) as fh:
                return fh.read(max_bytes() + 1), label, attachment.blob.size
    return None


def candidate_ids(message_ids: Iterable[int]) -> list[int]:
    """Messages in the batch from an allowed sender of a support mailbox: one query, so the
    filing of ordinary mail pays almost nothing for the API."""
    return list(
        Message.objects.filter(
            pk__in=list(message_ids),
            is_outgoing=False,
            is_bounce=False,
            mailbox__create_tickets=True,
            mailbox__api_senders__address=F("from_address"),
        )
        .exclude(from_address=F("mailbox__email_address"))
        .values_list("pk", flat=True)
        .distinct()
    )


def take_documents(message_ids: Iterable[int], *, now=None) -> set[int]:
    """Answer every Email API document among the messages; return their ids (those answered
    now and those answered by an earlier run), which filing then leaves alone."""
    ids = sorted(set(message_ids))
    handled = set(
        EmailApiRequest.objects.filter(message_id__in=ids).values_list("message_id", flat=True)
    )
    for pk in candidate_ids(ids):
        if pk in handled:
            continue
        if handle_message(pk, now=now):
            handled.add(pk)
    return handled


def handle_message(message_id: int, *, now=None) -> bool:
    """Apply (or refuse) the document in one message. False when it holds none."""
    now = now or timezone.now()
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("mailbox")
            .filter(pk=message_id)
            .first()
        )
        if message is None:
            return False
        if EmailApiRequest.objects.filter(message=message).exists():
            return True  # a concurrent run answered it while we waited for the lock
        found = find_document(message)
        if found is None:
            return False
        document, origin, size = found
        mailbox = message.mailbox
        sender = message.from_address
        context = {"mailbox_id": mailbox.pk, "message_id": message.pk}
        verdict = check_sender(message.headers, sender)
        refused = ""
        if not verdict.verified:
            # Only an aligned pass in our own server's header proves the From: a missing
            # header, a pass for another domain or a header the sender wrote prove nothing.
            refused = f"sender not verified ({verdict.detail})"
        else:
            allowed = EmailApiSender.objects.filter(mailbox=mailbox, address=sender).first()
            if allowed is not None and allowed.secret_hash:
                if not allowed.secret_matches(request_secret(document, size=size)):
                    refused = "the document does not carry this sender's secret"
        if refused:
            # Perhaps a forged From of an allowed sender: refused, and no reply (it would go to
            # the real sender, who did not write this). The admin lists it as rejected.
            EmailApiRequest.objects.create(
                message=message,
                mailbox=mailbox,
                sender=sender,
                outcome=EmailApiRequest.Outcome.REJECTED,
                errors=[refused],
            )
            log.warning("email api: refused: %s", refused, extra=context)
            Message.objects.filter(pk=message.pk).update(filed_at=now)
            return True
        try:
            result = run_document(document, sender=sender, size=size)
        except DatabaseError:
            raise  # the database went away: the task retries, nothing was saved
        except Exception:
            # A bug must not block the filing of the rest of the batch, nor apply half a
            # document (the savepoint rolled back): the sender is told, the trace is logged.
            log.exception("email api: internal error", extra=context)
            result = Result(
                applied=False,
                errors=[ApiError("", None, "internal error while applying; nothing was saved")],
            )
        reply = _reply(message, result, origin)
        EmailApiRequest.objects.create(
            message=message,
            mailbox=mailbox,
            sender=sender,
            outcome=(
                EmailApiRequest.Outcome.APPLIED
                if result.applied
                else EmailApiRequest.Outcome.REJECTED
            ),
            results=result.results,
            errors=[str(e) for e in result.errors],
            reply=reply,
        )
        Message.objects.filter(pk=message.pk).update(filed_at=now)
        ports.mail().send_soon(reply.pk)
    log.info(
        "email api: %s, %s operations, %s errors",
        "applied" if result.applied else "rejected",
        len(result.results),
        len(result.errors),
        extra=context,
    )
    return True


def reply_text(result: Result, origin: str) -> str:
    named = f" {result.request_id}" if result.request_id else ""
    if result.applied:
        lines = [f"Your Email API request{named} (in {origin}) was applied.", ""]
        for item in result.results:
            lines.append(
                f"- {item['operation']} (line {item['line']}): {item['action']} "
                f"{item['record_type']} #{item['id']}: {item['label']}"
            )
        return "\n".join(lines) + "\n"
    count = len(result.errors)
    lines = [
        f"Your Email API request{named} (in {origin}) was rejected: nothing was saved.",
        "",
        f"{count} error{'s' if count != 1 else ''}:",
        *(f"- {error}" for error in result.errors),
        "",
        f"The schema is {SCHEMA_FILE} in the Relay CRM repository (namespace {NAMESPACE}).",
    ]
    return "\n".join(lines) + "\n"


def _reply(message: Message, result: Result, origin: str) -> OutboxEntry:
    mailbox: Mailbox = message.mailbox
    ticket = next((r for r in result.results if r["record_type"] == "ticket"), None)
    if ticket is not None:
        record = Ticket.objects.get(pk=ticket["id"])
        # A signed Message-ID: the sender's answer to this reply threads onto the ticket.
        message_id = tokens.make_message_id(record, nonce=f"api{message.pk:08d}")
    else:
        message_id = f"relay-api-{message.pk}@{tokens.message_id_domain()}"
    status = "applied" if result.applied else "rejected"
    subject = f"[Email API {status}] Re: {message.subject or '(no subject)'}"
    subject = " ".join(subject.split())[:1000]
    return OutboxEntry.objects.create(
        mailbox=mailbox,
        state=OutboxEntry.State.QUEUED,
        message_id=message_id,
        from_address=mailbox.email_address,
        to=[message.from_address],
        subject=subject,
        text_body=reply_text(result, origin),
        in_reply_to=message.message_id,
        references=" ".join([*message.references.split(), message.message_id]).strip(),
        reply_to_message=message,
        record_type="ticket" if ticket else "",
        record_id=ticket["id"] if ticket else None,
        purpose="api_reply",
    )
