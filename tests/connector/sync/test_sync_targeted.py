"""The two sync changes the push gateway needs (docs/product.md §3.11): a sync of only the
folders a push named, and a sync that finds the mailbox busy asking for one more."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from connector.scheduling import tasks
from connector.sync import mailbox as sync
from inbox.models import Mailbox, Message
from inbox.signals import mailbox_changed
from tests.connector.synckit import make_mailbox, make_raw

pytestmark = pytest.mark.django_db


def subjects() -> set[str]:
    return set(Message.objects.values_list("subject", flat=True))


def test_a_targeted_sync_fetches_only_the_folders_named_and_keeps_the_poll_time(imap_user):
    server = imap_user.server
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Archive"])
    assert sync.sync_mailbox(mailbox.pk).completed  # the first sync is whole
    server.deliver(imap_user, make_raw("in the inbox"))
    server.deliver(imap_user, make_raw("in the archive"), folder="Archive")
    next_poll = timezone.now() + dt.timedelta(hours=3)
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=next_poll)

    report = sync.sync_mailbox(mailbox.pk, folders=["Archive"])

    assert report.completed and report.targeted
    assert [f.name for f in report.folders] == ["Archive"]
    assert subjects() == {"in the archive"}
    mailbox.refresh_from_db()
    # Only a full sync decides when the next poll is; the Inbox waits for it or its own push.
    assert mailbox.next_sync_at == next_poll
    assert sync.sync_mailbox(mailbox.pk).completed
    assert subjects() == {"in the archive", "in the inbox"}


def test_a_targeted_sync_of_a_mailbox_never_synced_is_a_whole_first_sync(imap_user):
    imap_user.server.deliver(imap_user, make_raw("old mail"))
    mailbox = make_mailbox(imap_user, active_folders=["INBOX", "Archive"])
    report = sync.sync_mailbox(mailbox.pk, folders=["Archive"])
    assert report.completed and not report.targeted
    assert subjects() == {"old mail"}


def test_a_sync_that_finds_the_mailbox_busy_makes_another_run_right_after(imap_user, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    mailbox = make_mailbox(imap_user)
    assert sync.sync_mailbox(mailbox.pk).completed
    Mailbox.objects.filter(pk=mailbox.pk).update(
        next_sync_at=timezone.now() + dt.timedelta(hours=1)
    )
    busy = []

    def connect_while_a_push_comes(mb):
        # The running sync has looked at the mailbox; mail arrives and its push finds it busy.
        imap_user.server.deliver(imap_user, make_raw("arrived while it ran"))
        busy.append(tasks.push_sync(mb.pk, ["Sent"]))
        return sync._connect(mb)

    report = sync.sync_mailbox(mailbox.pk, connect=connect_while_a_push_comes)

    assert report.completed and busy == ["busy: already syncing"]
    assert report.requested_meanwhile
    # The task that ran it enqueues the requested sync at once (not at the next interval),
    # through the beat's claim: exactly once.
    assert tasks._run_requested_meanwhile(report) == [mailbox.pk]
    assert tasks._run_requested_meanwhile(report) == []
    mailbox.refresh_from_db()
    assert mailbox.sync_requested_at is None
    assert subjects() == {"arrived while it ran"}


def test_a_sync_publishes_what_changed_once_for_live_pages(imap_user):
    mailbox = make_mailbox(imap_user)
    assert sync.sync_mailbox(mailbox.pk).completed
    heard = []

    def listener(sender, mailbox_id, folders, stored, **kwargs):
        heard.append((mailbox_id, folders, stored))

    mailbox_changed.connect(listener)
    try:
        assert sync.sync_mailbox(mailbox.pk).completed
        assert heard == []  # nothing changed: nothing said
        imap_user.server.deliver(imap_user, make_raw("news"))
        imap_user.server.deliver(imap_user, make_raw("more news"))
        assert sync.sync_mailbox(mailbox.pk, folders=["INBOX"]).completed
    finally:
        mailbox_changed.disconnect(listener)
    assert heard == [(mailbox.pk, ["INBOX"], 2)]
