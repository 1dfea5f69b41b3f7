"""Services that write inbox state. Keyword-only, transactional; bad input raises
ValidationError before anything is saved."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Mailbox, PrimaryMailbox
from .permissions import readable_mailboxes
from .signals import sync_requested


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


@transaction.atomic
def message_change_flag(*, user, message, action: str) -> int:
    """Mark read/unread or flag/unflag `message` (already permission-checked by the caller).
    The local state changes at once; each server copy gets a pending change. Returns how many
    server writes were queued."""
    from .models import Location, Message, PendingChange

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
    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=action,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


@transaction.atomic
def message_move(*, user, message, target_folder) -> int:
    """Move every server copy of `message` to `target_folder` (a Folder of the same mailbox)."""
    from .models import PendingChange

    if target_folder.mailbox_id != message.mailbox_id or target_folder.is_local:
        raise ValidationError("Pick a folder of this mailbox on the server.")
    locations = [loc for loc in _server_locations(message) if loc.folder_id != target_folder.pk]
    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=PendingChange.Action.MOVE,
                target_folder=target_folder.name,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


@transaction.atomic
def message_delete(*, user, message) -> int:
    """Delete = move to Trash on the server (expunge only when there is no Trash). The message
    stays in the CRM, filed where it was, marked no longer on the server once it is gone."""
    from .models import PendingChange

    locations = _server_locations(message)
    PendingChange.objects.bulk_create(
        [
            PendingChange(
                mailbox_id=message.mailbox_id,
                location=loc,
                folder_name=loc.folder.name,
                uidvalidity=loc.uidvalidity,
                uid=loc.uid,
                action=PendingChange.Action.DELETE,
                created_by=user,
            )
            for loc in locations
        ]
    )
    if locations:
        mailbox_request_sync(mailbox=message.mailbox)
    return len(locations)


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
