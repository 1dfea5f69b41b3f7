"""The site's mail switch (docs/product.md §8.1), against the real Dovecot and aiosmtpd: off,
no mailbox is synced or watched and nothing is sent, whatever path asks (the beat, a task
enqueued before the switch, Sync now, a push gateway, the outbox tick); mail sent meanwhile
waits in the outbox saying why; on again, the next ticks fetch and send everything, once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connector.outbound import outbox as sending
from connector.scheduling import tasks
from connector.scheduling.dispatch import dispatch_due
from connector.sync import watches
from crm import services
from crm.selectors import mail_on
from inbox.models import Mailbox, Message, OutboxEntry, WatchState
from inbox.services.composing import outbox_compose
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.outbound.test_sending import acme, run, support_mailbox  # noqa: F401
from tests.connector.synckit import make_raw


def switch(admin, on: bool | None) -> None:
    """What the Site settings page saves (crm/views.py site_settings_page)."""
    services.site_settings_save(
        user=admin,
        mail_enabled=on,
        purge_after_days=None,
        default_from_email="",
        send_acknowledgements=None,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("eager_celery")
def test_switched_off_nothing_is_fetched_or_sent_and_on_again_everything_goes_once(
    imap_user,
    smtp_server,
    acme,  # noqa: F811
    admin_user,
):
    mailbox, staff = support_mailbox(imap_user, smtp_server)
    # No tickets, so no acknowledgement joins the outbox: one message out, one in.
    Mailbox.objects.filter(pk=mailbox.pk).update(create_tickets=False)
    run(mailbox)  # the first sync
    switch(admin_user, False)

    raw = make_raw("Printer on fire", sender="Ana <ana@acme.example>", to=mailbox.email_address)
    imap_user.server.deliver(imap_user, raw)
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=timezone.now())
    entry = outbox_compose(
        user=staff, mailbox=mailbox, to="ana@acme.example", subject="Hello", text_body="Hi"
    )

    # Every way in leaves the servers alone: the ticks, and a sync task enqueued before the
    # switch (it runs now, as a worker would pick it up).
    assert tasks.beat_tick() == 0
    assert tasks.outbox_tick() == 0
    assert tasks.sync_mailbox(mailbox.pk).startswith("mail_off")
    assert not Message.objects.filter(mailbox=mailbox, subject="Printer on fire").exists()
    assert smtp_server.received == [] and smtp_server.attempts == 0
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.QUEUED
    assert entry.last_error == sending.MAIL_OFF_WAIT
    outbox = Client()
    outbox.force_login(staff)
    html = outbox.get(reverse("inbox:outbox")).content.decode()
    assert "Waiting: mail is switched off for the whole site." in html
    assert "relay-outbox-raw" not in html  # no "server's answer": nobody answered
    # The server's copy is as it was: not even read.
    (on_server,) = [
        m for m in imap_user.server.server_truth(imap_user.login) if m.folder == "INBOX"
    ]
    assert "\\Seen" not in on_server.flags
    # Nothing was claimed either: the mailbox is still due, not pushed five minutes on.
    mailbox.refresh_from_db()
    assert mailbox.next_sync_at <= timezone.now()

    switch(admin_user, None)  # back to the environment, which says on
    assert tasks.beat_tick() == 1
    assert tasks.outbox_tick() == 1
    assert Message.objects.filter(mailbox=mailbox, subject="Printer on fire").count() == 1
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert len(smtp_server.received) == 1
    assert smtp_server.received[0].rcpt_tos == ("ana@acme.example",)
    # A second pair of ticks finds nothing more to do.
    assert tasks.outbox_tick() == 0
    assert len(smtp_server.received) == 1


@pytest.mark.django_db
def test_switched_off_a_push_gateway_drops_every_watch_and_takes_them_back_once_on(
    admin_user, settings
):
    settings.RELAY_MAIL_ENABLED = True
    later = timezone.now() + dt.timedelta(hours=1)
    boxes = [f.MailboxFactory(first_sync_done=True, next_sync_at=later) for _ in range(3)]
    gateway = watches.register("g1")
    assert len(watches.claim(gateway.pk, 10)) == 3

    switch(admin_user, False)
    # The gateway's next tick (connector/scheduling/gateway.py _tick): nothing is watchable,
    # so it gives every mailbox back and its watches are closed.
    assert watches.release_unwatchable(gateway.pk) == 3
    assert watches.held(gateway.pk) == [] and watches.claim(gateway.pk, 10) == []
    assert watches.fair_share() == 0
    assert set(
        Mailbox.objects.filter(pk__in=[b.pk for b in boxes]).values_list("watch_state", flat=True)
    ) == {WatchState.POLLING}

    switch(admin_user, True)
    assert len(watches.claim(gateway.pk, watches.fair_share())) == 3


@pytest.mark.django_db
def test_the_environment_can_switch_mail_off_and_the_page_can_override_it(admin_user, settings):
    settings.RELAY_MAIL_ENABLED = False
    assert not mail_on()
    mailbox = f.MailboxFactory(next_sync_at=None)
    assert tasks.beat_tick() == 0
    switch(admin_user, True)
    assert mail_on()
    assert dispatch_due(enqueue=lambda pk: None) == [mailbox.pk]
