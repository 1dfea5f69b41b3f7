"""What inbox does when a CRM record changes. crm knows nothing of mail (docs/architecture.md),
so inbox listens to the ticket's own model signals: every way a ticket's status changes (its
form, the admin site, the Email API) passes through Ticket.save()."""

from __future__ import annotations

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from crm.models import Ticket

from .services.conversations import ticket_status_changed


@receiver(pre_save, sender=Ticket, dispatch_uid="inbox.ticket_status_before")
def remember_ticket_status(sender, instance: Ticket, **kwargs) -> None:
    if instance.pk is None:
        instance._status_before = None
        return
    instance._status_before = (
        Ticket.objects.filter(pk=instance.pk).values_list("status", flat=True).first()
    )


@receiver(post_save, sender=Ticket, dispatch_uid="inbox.ticket_status_after")
def conversations_follow_ticket(sender, instance: Ticket, created: bool, **kwargs) -> None:
    """A support mailbox's conversation and its ticket move together (docs/product.md §7.8)."""
    before = getattr(instance, "_status_before", None)
    if created or before is None or before == instance.status:
        return
    ticket_status_changed(ticket=instance)
