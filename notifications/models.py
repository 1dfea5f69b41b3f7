"""Notifications: what happened that a person should know about, shown in the app (the bell)
and mailed in batches (docs/product.md §7.10).

Every part of Relay creates them through notifications/services.py `notify`; nothing else
writes these tables."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Kind(models.TextChoices):
    ASSIGNED = "assigned", "A conversation or ticket is assigned to me"
    REPLIED = "replied", "A customer replied on a conversation or ticket I own"
    MENTIONED = "mentioned", "Someone mentioned me in a note"
    RECONNECT = "reconnect", "A mailbox I own or administer needs reconnecting"
    SEND_FAILED = "send_failed", "A message I sent failed or its outcome is unknown"


class Digest(models.Model):
    """One notification mail: every pending notification of one user at the time of a batch
    (docs/product.md §7.10). Kept so the person can read it in the app too, and so a mail that
    could not be sent is sent by a later batch, never a second one for the same notifications."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_digests"
    )
    to_address = models.CharField(max_length=320)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(sent_at__isnull=True),
                name="notif_digest_unsent",
            )
        ]

    def __str__(self) -> str:
        return self.subject


class Notification(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    text = models.CharField(max_length=500)
    url = models.CharField(max_length=500, blank=True)
    # What it is about ("note:12", "outbox:7:failed"): one notification per recipient, kind
    # and key, however often the event is reported.
    key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Shown in the app (the bell) unless the recipient switched this kind off there.
    in_app = models.BooleanField(default=True)
    read_at = models.DateTimeField(null=True, blank=True)
    # Waiting for the next mail batch; cleared when a digest takes it.
    email_pending = models.BooleanField(default=False)
    digest = models.ForeignKey(
        Digest, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["recipient", "-created_at"], name="notif_recipient_recent"),
            models.Index(
                fields=["recipient"],
                condition=Q(read_at__isnull=True, in_app=True),
                name="notif_unread",
            ),
            models.Index(
                fields=["recipient", "created_at"],
                condition=Q(email_pending=True),
                name="notif_email_pending",
            ),
            models.Index(fields=["recipient", "kind", "key"], name="notif_dedupe"),
        ]

    def __str__(self) -> str:
        return self.text

    @property
    def label(self) -> str:
        """What kind of news this is, in two words, on the list (the Kind's own label is the
        settings page's sentence)."""
        return SHOWN[self.kind][0]

    @property
    def tone(self) -> str:
        """The Bootstrap colour of its badge: a problem to act on stands out from news."""
        return SHOWN[self.kind][1]

    @property
    def needs_action(self) -> bool:
        return self.kind in (Kind.RECONNECT, Kind.SEND_FAILED)


# How each kind shows on the list (docs/product.md §7.10): a short label and a colour.
SHOWN = {
    Kind.ASSIGNED: ("Assigned to you", "primary"),
    Kind.REPLIED: ("Customer replied", "info"),
    Kind.MENTIONED: ("Mentioned you", "secondary"),
    Kind.RECONNECT: ("Needs reconnecting", "warning"),
    Kind.SEND_FAILED: ("Not sent", "danger"),
}


class Preference(models.Model):
    """A user's choice for one kind; without a row both channels are on."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    in_app = models.BooleanField(default=True)
    email = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notif_preference_once")
        ]
