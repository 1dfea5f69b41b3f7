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
    """"Sync now": record the wish (the beat tick honours it even if the signal is lost)."""
    Mailbox.objects.filter(pk=mailbox.pk).update(sync_requested_at=timezone.now())
    transaction.on_commit(
        lambda: sync_requested.send(sender=Mailbox, mailbox_id=mailbox.pk)
    )


def mailbox_pause(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.PAUSED)


def mailbox_resume(*, mailbox: Mailbox) -> None:
    Mailbox.objects.filter(pk=mailbox.pk, state=Mailbox.State.PAUSED).update(
        state=Mailbox.State.ACTIVE, next_sync_at=None, consecutive_failures=0
    )
