"""The Outbox as people see it (docs/product.md §5.4): whose entries a user sees, the entries
of a conversation that still need someone, and the server's answer in plain words.

Who sees what: everyone their own entries (in mailboxes they may still send from) and every
entry of their own personal mailboxes; admins also every entry of the shared mailboxes
(including automatic mail such as acknowledgements). Another user's personal mailbox's
entries are seen by no one else, admins included (docs/product.md §2.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from ..models import Mailbox, OutboxEntry
from ..permissions import readable_mailbox_ids
from ..services.outbox import CANCELLABLE_STATES, OPEN_STATES, PROBLEM_STATES


def visible_outbox(user) -> QuerySet[OutboxEntry]:
    if not user.is_authenticated:
        return OutboxEntry.objects.none()
    condition = Q(created_by=user, mailbox__in=readable_mailbox_ids(user)) | Q(
        mailbox__kind=Mailbox.Kind.PERSONAL, mailbox__owner=user
    )
    if user.is_superuser:
        condition |= Q(mailbox__kind=Mailbox.Kind.SHARED)
    return OutboxEntry.objects.filter(condition)


def get_outbox_entry_or_404(user, pk: int) -> OutboxEntry:
    from django.http import Http404

    entry = visible_outbox(user).select_related("mailbox").filter(pk=pk).first()
    if entry is None:
        raise Http404("No such outbox entry.")
    return entry


FILTERS = {
    "problems": ("Needs you", Q(state__in=PROBLEM_STATES, replaced_by__isnull=True)),
    "waiting": (
        "Waiting",
        Q(
            state__in=(
                OutboxEntry.State.SCHEDULED,
                OutboxEntry.State.QUEUED,
                OutboxEntry.State.SENDING,
                OutboxEntry.State.RETRYING,
            )
        ),
    ),
    "sent": ("Sent", Q(state=OutboxEntry.State.SENT)),
    "all": ("All", Q()),
}


def outbox_entries(user, *, show: str = "all") -> QuerySet[OutboxEntry]:
    """The Outbox page's rows, newest first: one query for a page of them, whatever their
    number (mailbox, author and replacement joined)."""
    _label, condition = FILTERS.get(show, FILTERS["all"])
    return (
        visible_outbox(user)
        .filter(condition)
        .exclude(purpose="test")
        .select_related("mailbox", "created_by", "replaced_by")
        .order_by("-created_at", "-pk")
    )


def problem_count(user) -> int:
    """How many of the user's entries failed or have an unknown outcome (the banner)."""
    return (
        visible_outbox(user)
        .filter(state__in=PROBLEM_STATES, replaced_by__isnull=True)
        .exclude(purpose="test")
        .count()
    )


def conversation_outbox(user, *, thread_message_ids) -> list[OutboxEntry]:
    """The replies of a conversation that have not gone out (waiting, failed, unknown), for
    the conversation to show in place."""
    return list(
        visible_outbox(user)
        .filter(
            reply_to_message__in=list(thread_message_ids),
            state__in=OPEN_STATES,
            replaced_by__isnull=True,
        )
        .select_related("mailbox", "created_by")
        .order_by("created_at", "pk")
    )


# --- the server's answer in plain words ----------------------------------------------------

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")
_RECIPIENT = re.compile(r"([^\s:;<>]+@[^\s:;<>]+):\s*(\d{3})")


@dataclass(frozen=True)
class Explanation:
    headline: str  # one sentence a person understands
    advice: str  # what to do about it
    raw: str  # the server's own answer, shown on demand


def _refused_recipients(text: str) -> list[str]:
    return [m.group(1) for m in _RECIPIENT.finditer(text) if m.group(2).startswith("5")]


def explain_send_error(state: str, text: str) -> Explanation:
    """Map what the server (or the connection) said to a sentence a user understands
    (docs/product.md §5.4). The mapping goes by the SMTP reply codes (RFC 5321 4.2, enhanced
    codes RFC 3463), then by what the connection did; the raw answer stays available."""
    raw = (text or "").strip()
    low = raw.lower()
    if state == OutboxEntry.State.VERIFY:
        return Explanation(
            "The connection broke after the message was handed to the server, so nobody knows "
            "whether it went out.",
            "Check the mailbox's Sent folder (or ask the recipient), then Mark as sent or "
            "Send again.",
            raw,
        )
    if state == OutboxEntry.State.CANCELLED:
        return Explanation("Cancelled before it was sent.", "", raw)
    if state == OutboxEntry.State.SCHEDULED:
        return Explanation("Held for a few seconds so that it can be undone.", "", raw)
    if state in (OutboxEntry.State.QUEUED, OutboxEntry.State.SENDING) and not raw:
        return Explanation("Waiting to go out.", "", raw)
    if low.startswith("waiting: mail is switched off"):
        # Not a server's answer: the site's mail switch (docs/product.md §8.1).
        return Explanation(
            "Waiting: mail is switched off for the whole site.",
            "It goes out by itself once an administrator switches mail on again.",
            "",
        )
    if "waiting" in low and "reconnect" in low:
        return Explanation(
            "Waiting: the mailbox's mail server no longer accepts its sign-in.",
            "Reconnect the mailbox; the message then goes out by itself.",
            raw,
        )
    enhanced = _ENHANCED.search(raw)
    basic = _BASIC.search(raw)
    code = enhanced.group(0) if enhanced else ""
    reply = basic.group(1) if basic else ""
    who = _refused_recipients(raw)
    whom = ", ".join(who) if who else "the recipient"
    gave_up = low.startswith("gave up after")
    if code in ("5.1.1", "5.1.0", "5.1.6") or (
        reply == "550" and any(w in low for w in ("unknown", "no such user", "does not exist"))
    ):
        return Explanation(
            f"The address {whom} does not exist: the receiving server does not know it.",
            "Check the spelling of the address, then edit and send again.",
            raw,
        )
    if code in ("5.1.2", "5.4.4"):
        return Explanation(
            f"The domain of {whom} does not receive mail.",
            "Check the part after the @, then edit and send again.",
            raw,
        )
    if code in ("5.2.2", "4.2.2"):
        return Explanation(
            f"The mailbox of {whom} is full.",
            "Try again later, or reach them another way.",
            raw,
        )
    if code in ("5.3.4", "5.2.3", "4.3.4") or reply == "552" or "too big" in low or "size" in low:
        return Explanation(
            "The message is too big for the mail server.",
            "Remove or shrink attachments, then edit and send again.",
            raw,
        )
    if (
        code in ("5.7.8", "5.7.0", "4.7.8")
        and ("auth" in low or "login" in low)
        or ("login refused" in low or reply == "535")
    ):
        return Explanation(
            "The outgoing mail server refused the mailbox's sign-in.",
            "Reconnect the mailbox, then send again.",
            raw,
        )
    if code.startswith("5.7.") or reply in ("553", "554") and "relay" in low:
        if "relay" in low:
            headline = (
                "The outgoing mail server refused to pass the message on (relaying denied): it "
                "does not let this mailbox send to that address."
            )
        else:
            headline = (
                "The mail server refused the message for policy reasons (it is not allowed to "
                "send it, or took it for spam)."
            )
        return Explanation(
            headline,
            "Check the mailbox's outgoing settings or the recipient, or ask your mail "
            "administrator.",
            raw,
        )
    if "certificate" in low or "tls" in low or "ssl" in low:
        return Explanation(
            "The secure connection to the outgoing mail server failed (its certificate could "
            "not be verified, or it does not offer the encryption chosen).",
            "Check the mailbox's SMTP security setting, then send again.",
            raw,
        )
    if "connection refused" in low:
        return Explanation(
            "The outgoing mail server refused the connection: it may be down, or the host "
            "name or port is wrong.",
            "Check the mailbox's SMTP settings, or send again later.",
            raw,
        )
    if "timed out" in low or "timeout" in low:
        return Explanation(
            "The outgoing mail server did not answer in time.",
            "Send again later.",
            raw,
        )
    if "line break" in low or "header" in low and "refused" not in low:
        return Explanation(
            "The message has a header Relay will not send (a line break inside it).",
            "Edit the subject or recipients and send again.",
            raw,
        )
    if state == OutboxEntry.State.RETRYING or (code.startswith("4.") or reply.startswith("4")):
        prefix = "Relay kept trying, but the" if gave_up else "The"
        return Explanation(
            f"{prefix} mail server asked to try again later (a temporary problem on its side).",
            "Relay tries again by itself." if not gave_up else "Send again later.",
            raw,
        )
    if state == OutboxEntry.State.FAILED:
        return Explanation(
            "The mail server refused the message.",
            "Read the server's answer below; fix what it names, then edit and send again.",
            raw,
        )
    return Explanation("", "", raw)


def entry_actions(user, entry: OutboxEntry) -> list[str]:
    """What the page offers for an entry: send_again, mark_sent, cancel, edit."""
    if entry.replaced_by_id:
        return []
    if entry.state == OutboxEntry.State.FAILED:
        return ["send_again", "edit"]
    if entry.state == OutboxEntry.State.VERIFY:
        return ["mark_sent", "send_again"]
    if entry.state in CANCELLABLE_STATES:
        return ["cancel"]
    return []


@dataclass(frozen=True)
class OtherReply:
    name: str
    at: object  # datetime
    subject: str

    @property
    def ago(self) -> str:
        """ "just now", or "2 minutes ago"."""
        from django.utils import timezone
        from django.utils.timesince import timesince

        if (timezone.now() - self.at).total_seconds() < 60:
            return "just now"
        return f"{timesince(self.at, depth=1)} ago"


def reply_since(*, user, message, since) -> OtherReply | None:
    """The latest reply someone else wrote to `message`'s conversation (same mailbox and
    thread) after `since`, whatever became of it unless cancelled: the collision a person is
    asked about before sending (docs/product.md §5.4). All users' replies count here, but
    only the author's name, the time and the subject are shown."""
    from ..models import Message

    thread_messages = Message.objects.filter(mailbox=message.mailbox_id)
    thread_messages = (
        thread_messages.filter(thread=message.thread_id)
        if message.thread_id
        else thread_messages.filter(pk=message.pk)
    )
    entry = (
        OutboxEntry.objects.filter(
            reply_to_message__in=thread_messages.values("pk"), created_at__gt=since
        )
        .exclude(created_by=user)
        .exclude(created_by__isnull=True)
        .exclude(state=OutboxEntry.State.CANCELLED)
        .select_related("created_by")
        .order_by("-created_at")
        .first()
    )
    if entry is not None:
        author = entry.created_by
        return OtherReply(
            name=author.get_full_name() or author.get_username(),
            at=entry.created_at,
            subject=entry.subject,
        )
    # A reply sent as the mailbox from another mail program, found by the sync.
    address = (message.mailbox.email_address or "").lower()
    other = (
        thread_messages.filter(from_address=address, date__gt=since, outbox_entries__isnull=True)
        .order_by("-date")
        .first()
    )
    if other is None:
        return None
    return OtherReply(
        name=f"{other.from_name or address} (from another mail program)",
        at=other.date,
        subject=other.subject,
    )
