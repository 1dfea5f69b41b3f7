"""The one place any part of Relay tells a person something (docs/product.md §7.10).

    notify(recipient=user, kind=Kind.MENTIONED, text="...", url="/tickets/3/#note-9",
           key="note:9", actor=author)

respects the recipient's preferences (in the app, by mail, per kind), never tells people about
what they did themselves, and records each (recipient, kind, key) once however often the event
is reported. Mail goes out in batches (send_digests, run by the beat): one mail per person per
batch, however many notifications it holds.

Conversation assignment and ownership (docs/product.md §7.8) reach notify_assigned and
notify_customer_replied through notifications/receivers.py (inbox/signals.py
conversation_assigned and mail_filed), since inbox never imports this app."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from smtplib import SMTPException

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from crm.selectors import default_from_email
from inbox import live

from .models import Digest, Kind, Notification, Preference

log = logging.getLogger(__name__)

MAX_TEXT = 500
# A digest whose mail could not be sent is tried again by later batches, this long apart.
DIGEST_RETRY_AFTER = timedelta(minutes=10)
DIGEST_MAX_ATTEMPTS = 5


def channels(user, kind: str) -> tuple[bool, bool]:
    """(in the app, by mail) for this user and kind: on unless switched off."""
    row = Preference.objects.filter(user=user, kind=kind).values_list("in_app", "email").first()
    return tuple(row) if row else (True, True)


def notify(
    *,
    recipient,
    kind: str,
    text: str,
    url: str = "",
    key: str = "",
    actor=None,
) -> Notification | None:
    """Tell `recipient` that something happened. Returns the notification, or None when there
    is nothing to record: the recipient did it themselves, is inactive, switched both channels
    off for this kind, or was already told (same kind and key)."""
    if kind not in Kind.values:
        raise ValueError(f"unknown notification kind {kind!r}")
    if recipient is None or not recipient.is_active:
        return None
    if actor is not None and actor.pk == recipient.pk:
        return None
    in_app, email = channels(recipient, kind)
    if not in_app and not email:
        return None
    if key and Notification.objects.filter(recipient=recipient, kind=kind, key=key).exists():
        return None
    notification = Notification.objects.create(
        recipient=recipient,
        kind=kind,
        actor=actor,
        text=text[:MAX_TEXT],
        url=url[:500],
        key=key[:200],
        in_app=in_app,
        email_pending=email,
    )
    if in_app:
        # The bell of every open page of theirs rings now, not at its next poll (§7.14).
        live.user_event(live.NOTIFICATION, user_id=recipient.pk)
    return notification


def notify_many(*, recipients: Iterable, **kwargs) -> list[Notification]:
    made = []
    for recipient in recipients:
        note = notify(recipient=recipient, **kwargs)
        if note is not None:
            made.append(note)
    return made


def notify_assigned(*, assignee, actor, label: str, url: str, key: str) -> Notification | None:
    """A conversation or ticket was assigned to `assignee` by `actor` (None: by a rule).
    `key` names the assignment ("thread:12:assigned:<timestamp>") so that re-assigning later
    notifies again and a repeated call does not."""
    who = _name(actor) if actor else "Relay"
    return notify(
        recipient=assignee,
        kind=Kind.ASSIGNED,
        text=f"{who} assigned {label} to you",
        url=url,
        key=key,
        actor=actor,
    )


def notify_customer_replied(*, owner, label: str, sender: str, url: str, key: str):
    """A customer's new mail reached a conversation or ticket `owner` owns. `key` names the
    message ("message:81"), so filing it twice notifies once."""
    return notify(
        recipient=owner,
        kind=Kind.REPLIED,
        text=f"{sender} replied on {label}",
        url=url,
        key=key,
    )


def _name(user) -> str:
    return user.get_full_name() or user.get_username()


# --- reading and preferences ----------------------------------------------------------------


def mark_read(*, user, ids: Iterable[int]) -> int:
    return Notification.objects.filter(
        recipient=user, pk__in=list(ids), read_at__isnull=True
    ).update(read_at=timezone.now())


def mark_all_read(*, user) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


@transaction.atomic
def set_preferences(*, user, choices: dict[str, tuple[bool, bool]]) -> None:
    """choices: kind -> (in the app, by mail). Kinds left out keep their setting."""
    for kind, (in_app, email) in choices.items():
        if kind not in Kind.values:
            raise ValueError(f"unknown notification kind {kind!r}")
        Preference.objects.update_or_create(
            user=user, kind=kind, defaults={"in_app": bool(in_app), "email": bool(email)}
        )


# --- the mail batches -----------------------------------------------------------------------


@dataclass
class DigestReport:
    digests: int = 0
    sent: int = 0
    failed: int = 0


def _address(user) -> str:
    if user.email:
        return user.email
    confirmed = user.staff_emails.filter(confirmed_at__isnull=False).order_by("pk").first()
    return confirmed.email if confirmed else ""


def _absolute(url: str) -> str:
    if not url or "://" in url:
        return url
    return settings.RELAY_SITE_URL.rstrip("/") + url


def _compose(rows: list[Notification]) -> tuple[str, str]:
    if len(rows) == 1:
        subject = f"Relay: {rows[0].text}"
    else:
        subject = f"Relay: {len(rows)} new notifications"
    lines = ["What happened in Relay since the last mail:", ""]
    for row in rows:
        when = timezone.localtime(row.created_at).strftime("%d %b %H:%M")
        lines.append(f"- {when}  {row.text}")
        if row.url:
            lines.append(f"  {_absolute(row.url)}")
    lines += [
        "",
        f"All notifications: {_absolute('/notifications/')}",
        f"Choose what is mailed to you: {_absolute('/notifications/settings/')}",
    ]
    return subject[:300], "\n".join(lines) + "\n"


def _claim(user_id: int, cutoff) -> Digest | None:
    """Take every pending notification of one user into a new digest, in one transaction.
    A user another batch holds is skipped (SKIP LOCKED on the user), so two batches at once
    never put the same notification, or the same person, in two mails."""
    User = get_user_model()
    with transaction.atomic():
        # The person first: another batch holding them has all their rows, or soon will.
        # Skipping locked notification rows alone let two batches split one person's rows
        # between them and send two mails. NO KEY: a notification
        # made for them meanwhile (its foreign key check) is not held up.
        if (
            not User.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(pk=user_id)
            .exists()
        ):
            return None
        rows = list(
            Notification.objects.select_for_update()
            .filter(recipient_id=user_id, email_pending=True)
            .order_by("created_at", "pk")
        )
        # A burst is one mail: the user's pending notifications go out together once the
        # oldest of them has waited long enough.
        if not rows or rows[0].created_at > cutoff:
            return None
        user = User.objects.get(pk=user_id)
        address = _address(user)
        ids = [row.pk for row in rows]
        if not address or not user.is_active:
            Notification.objects.filter(pk__in=ids).update(email_pending=False)
            return None
        subject, body = _compose(rows)
        digest = Digest.objects.create(
            recipient=user, to_address=address, subject=subject, body=body, count=len(rows)
        )
        Notification.objects.filter(pk__in=ids).update(email_pending=False, digest=digest)
        return digest


def _send(digest: Digest) -> bool:
    # The claim: only one batch tries a given digest at a given attempt number.
    claimed = Digest.objects.filter(
        pk=digest.pk, sent_at__isnull=True, attempts=digest.attempts
    ).update(attempts=F("attempts") + 1)
    if not claimed:
        return False
    try:
        send_mail(
            digest.subject,
            digest.body,
            default_from_email(),  # docs/product.md §8.1: a saved override, else the environment
            [digest.to_address],
            using="default",  # the system mailer (MAILERS in crm/settings.py)
        )
    except (SMTPException, OSError) as exc:
        Digest.objects.filter(pk=digest.pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        log.warning("notification digest=%s not sent: %s", digest.pk, exc)
        return False
    Digest.objects.filter(pk=digest.pk).update(sent_at=timezone.now(), last_error="")
    log.info("notification digest=%s sent to user=%s", digest.pk, digest.recipient_id)
    return True


def send_digests(*, now=None) -> DigestReport:
    """One batch: for every user whose oldest pending notification is older than
    RELAY_NOTIFY_EMAIL_AFTER_MINUTES, one mail with all their pending notifications; then the
    digests an earlier batch could not send. Running it twice, or twice at once, sends nothing
    twice (docs/product.md §7.10)."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.RELAY_NOTIFY_EMAIL_AFTER_MINUTES)
    report = DigestReport()
    users = (
        Notification.objects.filter(email_pending=True, created_at__lte=cutoff)
        .order_by()
        .values_list("recipient_id", flat=True)
        .distinct()
    )
    fresh = []
    for user_id in list(users):
        digest = _claim(user_id, cutoff)
        if digest is not None:
            fresh.append(digest)
    report.digests = len(fresh)
    # Digests an earlier batch claimed but could not send (server down, worker killed between
    # the claim and the mail): tried again, a few times, never while a batch may still hold them.
    retry = Digest.objects.filter(
        sent_at__isnull=True,
        attempts__lt=DIGEST_MAX_ATTEMPTS,
        created_at__lte=now - DIGEST_RETRY_AFTER,
    ).exclude(pk__in=[d.pk for d in fresh])
    for digest in [*fresh, *retry]:
        if _send(digest):
            report.sent += 1
        else:
            report.failed += 1
    return report
