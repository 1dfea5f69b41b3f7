"""Internal notes on a conversation or a CRM record (docs/product.md §7.9). Never sent to
anyone: a note lives only in Relay, seen by whoever may see what it is on."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from crm.models import Account, Contact, Lead, Opportunity, Ticket
from inbox.models import Thread

TARGET_FIELDS = ("thread", "account", "contact", "lead", "ticket", "opportunity")


def _target(model) -> models.ForeignKey:
    return models.ForeignKey(
        model, null=True, blank=True, on_delete=models.CASCADE, related_name="notes"
    )


def _exactly_one_target() -> Q:
    condition = Q()
    for name in TARGET_FIELDS:
        condition |= Q(
            target_type=name,
            **{f"{other}__isnull": other != name for other in TARGET_FIELDS},
        )
    return condition


class Note(models.Model):
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="notes_written",
    )
    body = models.TextField()
    target_type = models.CharField(max_length=20)
    # Exactly one of these is set, the one target_type names (the check constraint).
    thread = _target(Thread)
    account = _target(Account)
    contact = _target(Contact)
    lead = _target(Lead)
    ticket = _target(Ticket)
    opportunity = _target(Opportunity)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=_exactly_one_target(),
                name="notes_note_one_target",
            )
        ]

    def __str__(self) -> str:
        return self.body[:60]

    @property
    def target(self):
        return getattr(self, self.target_type)


class Mention(models.Model):
    """`@name` in a note: the person was told (notifications) and finds it under Mentions."""

    note = models.ForeignKey(Note, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="note_mentions"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["note", "user"], name="notes_mention_once")]
