"""The one permission gate for mailboxes, messages and attachments (docs/architecture.md,
docs/reliability.md C-11).

- A personal mailbox is readable by its owner only. Admins manage it (admin site) but do not
  read it.
- A shared mailbox is readable by the users it is granted to, directly or through a group.
Every view that shows mail goes through these functions; an outsider gets the same 404 as
for a missing object.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from .models import Mailbox, Message, Thread


def readable_mailboxes(user) -> QuerySet[Mailbox]:
    """Mailboxes whose mail `user` may read in full."""
    if not user.is_authenticated:
        return Mailbox.objects.none()
    return Mailbox.objects.filter(
        Q(kind=Mailbox.Kind.PERSONAL, owner=user)
        | Q(kind=Mailbox.Kind.SHARED, granted_users=user)
        | Q(kind=Mailbox.Kind.SHARED, granted_groups__user=user)
    ).distinct()


def readable_mailbox_ids(user) -> QuerySet:
    return readable_mailboxes(user).values("pk")


def get_mailbox_or_404(user, pk: int) -> Mailbox:
    try:
        return readable_mailboxes(user).get(pk=pk)
    except Mailbox.DoesNotExist as exc:
        raise Http404("No such mailbox.") from exc


def readable_messages(user) -> QuerySet[Message]:
    return Message.objects.filter(mailbox__in=readable_mailbox_ids(user))


def get_message_or_404(user, pk: int) -> Message:
    try:
        return readable_messages(user).select_related("mailbox").get(pk=pk)
    except Message.DoesNotExist as exc:
        raise Http404("No such message.") from exc


def readable_threads(user) -> QuerySet[Thread]:
    """Conversations of the mailboxes `user` may read (bulk actions pick among these)."""
    return Thread.objects.filter(mailbox__in=readable_mailbox_ids(user))


def can_manage_mailbox(user, mailbox: Mailbox) -> bool:
    """Settings, pause, reconnect: the owner of a personal mailbox, admins for shared ones."""
    if not user.is_authenticated:
        return False
    if mailbox.kind == Mailbox.Kind.PERSONAL:
        return mailbox.owner_id == user.pk
    return user.is_superuser


def may_send_as(user, mailbox: Mailbox) -> None:
    """Only users who may read a mailbox may send as it (docs/reliability.md M-06)."""
    if user is None:
        return  # automation (acknowledgements, forwards) acts as the mailbox itself
    if not readable_mailboxes(user).filter(pk=mailbox.pk).exists():
        raise PermissionDenied("You may not send from this mailbox.")
