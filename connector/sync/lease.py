"""The per-mailbox sync lease, kept in the database row of the mailbox.

Why the database and not Redis: the lease must survive a broker restart (docs/reliability.md I-02)
and work on the embedded SQLite install, and the fencing check has to sit inside the same
transaction as the data it guards. Acquire is one conditional UPDATE, so two workers (or two beats,
or a redelivered task) can never both hold it; it expires by itself if its worker dies (S-20,
I-03): RELAY_SYNC_LEASE_TTL after its last renewal, and the sync renews it after every batch and
while a batch is still being fetched, so only a dead or frozen holder lets it run out. The beat
then takes the mailbox as due (connector/scheduling/dispatch.py). Each acquisition bumps
`lease_generation`, the fencing token: every batch commit re-checks it under a row lock, so a
worker paused past its lease (SIGSTOP) finds its token stale and its late writes are refused (S-21,
Kleppmann's fencing tokens).

A lease taken for a Celery task carries the task's id. A retry or a redelivery of that task (the
same id) takes the lease over at once instead of waiting for it to run out: Celery starts another
attempt only once the previous one has ended, so a lease still held under that id belongs to an
attempt that died without releasing it, typically because the database it would release it in
had gone (docs/reliability.md I-03). Should that attempt still be running after all (a broker
redelivering a message whose worker is alive), the takeover bumps the fencing token and its
writes are refused as above."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from inbox.models import Mailbox


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.RELAY_SYNC_LEASE_TTL)


class LeaseLost(Exception):
    """Another worker holds the mailbox now: stop, write nothing more."""


@dataclass(frozen=True)
class Lease:
    mailbox_id: int
    generation: int
    holder: str

    def renew(self) -> None:
        """Push the expiry forward; LeaseLost once another sync has taken the mailbox. A lease
        that ran out but that nobody took is still ours: renewing it is enough."""
        updated = Mailbox.objects.filter(
            pk=self.mailbox_id, lease_generation=self.generation
        ).update(lease_expires_at=timezone.now() + lease_ttl())
        if not updated:
            raise LeaseLost(f"mailbox {self.mailbox_id}: lease {self.generation} was taken over")

    def check(self) -> None:
        """Call inside the transaction that writes sync data: locks the mailbox row and
        verifies the token, so the check and the writes commit (or fail) together."""
        still_ours = (
            Mailbox.objects.select_for_update()
            .filter(pk=self.mailbox_id, lease_generation=self.generation)
            .exists()
        )
        if not still_ours:
            raise LeaseLost(f"mailbox {self.mailbox_id}: lease {self.generation} was taken over")

    def release(self) -> None:
        Mailbox.objects.filter(pk=self.mailbox_id, lease_generation=self.generation).update(
            lease_expires_at=None, lease_holder=""
        )


def holder_name(task_id: str = "") -> str:
    """host:pid:nonce, then /task-id when the lease is taken for a Celery task."""
    name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{name}/{task_id}" if task_id else name


def acquire(mailbox_id: int, task_id: str = "") -> Lease | None:
    """The lease, or None when another live holder has it. With ``task_id``, a lease left by an
    earlier attempt of that same task is taken over (see above)."""
    now = timezone.now()
    ttl = lease_ttl()
    holder = holder_name(task_id)
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    if task_id:
        free |= Q(lease_holder__endswith=f"/{task_id}")
    with transaction.atomic():
        taken = (
            Mailbox.objects.filter(pk=mailbox_id)
            .filter(free)
            .update(
                lease_holder=holder,
                lease_expires_at=now + ttl,
                lease_generation=F("lease_generation") + 1,
            )
        )
        if not taken:
            return None
        generation = (
            Mailbox.objects.filter(pk=mailbox_id, lease_holder=holder)
            .values_list("lease_generation", flat=True)
            .first()
        )
    if generation is None:
        return None
    return Lease(mailbox_id=mailbox_id, generation=generation, holder=holder)
