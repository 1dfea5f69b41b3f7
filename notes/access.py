"""What a note is on, and who may see it (docs/product.md §7.9): whoever may see its target.

- a conversation: whoever may read its mailbox (inbox/permissions.py), so notes on a personal
  mailbox's conversation are its owner's alone;
- a record (account, contact, lead, ticket, opportunity): every signed-in user, as the record.
Anyone else gets the same 404 as for a target that does not exist."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import reverse

from crm.models import RECORD_MODELS
from inbox.models import Mailbox, Thread
from inbox.permissions import readable_mailbox_ids

from .models import Note

TARGET_TYPES = ("thread", *RECORD_MODELS)


@dataclass(frozen=True)
class Target:
    type: str  # "thread" or a record type
    obj: object

    @property
    def pk(self) -> int:
        return self.obj.pk

    @property
    def label(self) -> str:
        if self.type == "thread":
            return f"the conversation “{self.obj.subject or '(no subject)'}”"
        reference = getattr(self.obj, "reference", "")
        return reference or str(self.obj)

    @property
    def url(self) -> str:
        """Where the target is shown. A conversation is addressed by one of its messages:
        notes/views.py thread_open finds it when followed."""
        if self.type == "thread":
            return reverse("notes:thread_open", args=[self.obj.pk])
        return self.obj.get_absolute_url()

    @property
    def noun(self) -> str:
        return "conversation" if self.type == "thread" else self.type


def get_target_or_404(user, target_type: str, pk: int) -> Target:
    if target_type == "thread":
        thread = (
            Thread.objects.filter(pk=pk, mailbox__in=readable_mailbox_ids(user))
            .select_related("mailbox")
            .first()
        )
        if thread is None:
            raise Http404("No such conversation.")
        return Target("thread", thread)
    model = RECORD_MODELS.get(target_type)
    if model is None or not user.is_authenticated:
        raise Http404("No such record.")
    record = model.objects.filter(pk=pk).first()
    if record is None:
        raise Http404("No such record.")
    return Target(target_type, record)


def who_can_see(target: Target) -> QuerySet:
    """Active users who may see the target (and so may be mentioned on it)."""
    users = get_user_model().objects.filter(is_active=True)
    if target.type != "thread":
        return users
    mailbox = target.obj.mailbox
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        return users.filter(pk=mailbox.owner_id)
    granted = Q(granted_mailboxes=mailbox) | Q(groups__granted_mailboxes=mailbox)
    return users.filter(granted).distinct()


def visible_notes(user) -> QuerySet[Note]:
    """Every note `user` may read: on records, and on conversations of mailboxes they read."""
    if not user.is_authenticated:
        return Note.objects.none()
    return Note.objects.filter(
        Q(thread__isnull=True) | Q(thread__mailbox__in=readable_mailbox_ids(user))
    )
