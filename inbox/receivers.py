"""What inbox does when a CRM record changes. crm knows nothing of mail (docs/architecture.md),
so inbox listens to the ticket's own model signals: every way a ticket's status changes (its
form, the admin site, the Email API) passes through Ticket.save(). And what the mail engine
reports (inbox/signals.py), turned into live updates for open pages (inbox/live.py)."""

from __future__ import annotations

import logging

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from crm.models import Ticket

from . import live
from .models import Filing, Message
from .services.conversations import ticket_status_changed
from .signals import mail_filed, mailbox_changed

log = logging.getLogger(__name__)


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


# --- Live updates (docs/product.md §7.14) -----------------------------------------------------
# The engine's events, turned into the small events open pages listen to (inbox/live.py). A
# receiver here must never fail the sync or the filing that sent the signal: errors are logged.


@receiver(mailbox_changed, dispatch_uid="inbox.live_mailbox_changed")
def live_mailbox_changed(sender, mailbox_id: int, **kwargs) -> None:
    live.mailbox_event(live.MAIL, mailbox_id=mailbox_id)


@receiver(mail_filed, dispatch_uid="inbox.live_mail_filed")
def live_mail_filed(sender, message_ids, **kwargs) -> None:
    if not live.enabled():
        return
    try:
        by_mailbox: dict[int, tuple[set, set]] = {}
        rows = Message.objects.filter(pk__in=list(message_ids)).values_list(
            "mailbox_id", "thread_id"
        )
        for mailbox_id, thread_id in rows:
            by_mailbox.setdefault(mailbox_id, (set(), set()))[0].add(thread_id)
        fields = ("account_id", "contact_id", "lead_id", "ticket_id", "opportunity_id")
        filings = Filing.objects.filter(
            message_id__in=list(message_ids), unlinked_at__isnull=True
        ).values_list("message__mailbox_id", "record_type", *fields)
        for mailbox_id, record_type, *ids in filings:
            record_id = next((i for i in ids if i is not None), None)
            if record_id is not None and mailbox_id in by_mailbox:
                by_mailbox[mailbox_id][1].add(f"{record_type}:{record_id}")
        for mailbox_id, (threads, records) in by_mailbox.items():
            live.mailbox_event(live.FILED, mailbox_id=mailbox_id, threads=threads, records=records)
    except Exception:  # docs/reliability.md P-21: live updates never fail the filing
        log.exception("live update for filed mail not published")
