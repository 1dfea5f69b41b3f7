"""Notification mail (docs/product.md §7.10): through the system mailer to a real SMTP server
(aiosmtpd, tests/servers/smtp.py), one mail per person per batch however many events, never a
second mail for the same notifications, whether the beat runs twice or two batches overlap."""

from __future__ import annotations

import datetime as dt
import email
import threading
from email import policy

import pytest
from django.db import connection
from django.utils import timezone

from notes.access import Target
from notes.services import note_create
from notifications.models import Digest, Kind, Notification
from notifications.services import notify, send_digests, set_preferences
from notifications.tasks import send_notification_digests
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def system_mailer(smtp_server, settings):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": smtp_server.host,
                "port": smtp_server.port,
                "username": smtp_server.user,
                "password": smtp_server.password,
                "timeout": 10,
            },
        }
    }
    settings.RELAY_NOTIFY_EMAIL_AFTER_MINUTES = 5
    settings.RELAY_SITE_URL = "https://crm.example.com"
    return smtp_server


def age(minutes: int) -> None:
    """Every notification so far happened `minutes` ago."""
    Notification.objects.update(created_at=timezone.now() - dt.timedelta(minutes=minutes))


def mails_to(server, address: str) -> list:
    return [
        email.message_from_bytes(m.raw, policy=policy.default)
        for m in server.received
        if m.rcpt_tos == (address,)
    ]


def test_a_burst_of_20_mentions_is_one_mail(system_mailer, owner, teammate):
    ticket = f.TicketFactory(subject="Refund")
    for i in range(20):
        note_create(author=owner, target=Target("ticket", ticket), body=f"@teammate step {i}")
    assert Notification.objects.filter(recipient=teammate).count() == 20
    # Not yet: the burst may still be going on.
    assert send_notification_digests() == "digests=0 sent=0 failed=0"
    assert system_mailer.received == []

    age(6)
    assert send_notification_digests() == "digests=1 sent=1 failed=0"
    (mail,) = mails_to(system_mailer, "teammate@relay.test")
    assert mail["Subject"] == "Relay: 20 new notifications"
    body = mail.get_content()
    assert body.count("Olivia Owner mentioned you on TKT-") == 20
    assert f"https://crm.example.com{ticket.get_absolute_url()}#note-" in body
    assert len(system_mailer.received) == 1
    # The beat runs again: nothing more.
    assert send_notification_digests() == "digests=0 sent=0 failed=0"
    assert len(system_mailer.received) == 1
    digest = Digest.objects.get()
    assert digest.sent_at and digest.count == 20
    assert not Notification.objects.filter(email_pending=True).exists()


def test_one_mail_per_person_and_only_for_those_who_want_mail(system_mailer, owner, teammate):
    quiet = f.UserFactory(username="quiet")
    set_preferences(user=quiet, choices={Kind.MENTIONED: (True, False)})
    for user in (owner, teammate, quiet):
        for i in range(3):
            notify(recipient=user, kind=Kind.MENTIONED, text=f"event {i}", key=f"{i}")
    notify(recipient=owner, kind=Kind.SEND_FAILED, text="bounced", key="s")
    age(10)
    send_digests()
    assert len(mails_to(system_mailer, "owner@relay.test")) == 1
    assert len(mails_to(system_mailer, "teammate@relay.test")) == 1
    assert mails_to(system_mailer, "quiet@relay.test") == []
    assert "bounced" in mails_to(system_mailer, "owner@relay.test")[0].get_content()
    assert len(system_mailer.received) == 2


def test_the_digest_is_readable_in_the_app(system_mailer, client, teammate):
    notify(recipient=teammate, kind=Kind.MENTIONED, text="look here", url="/tickets/1/")
    age(6)
    send_digests()
    client.force_login(teammate)
    page = client.get("/notifications/").content.decode()
    assert "Relay: look here" in page and "https://crm.example.com/tickets/1/" in page


def test_a_mail_that_could_not_go_is_sent_by_a_later_batch_once(system_mailer, teammate):
    notify(recipient=teammate, kind=Kind.MENTIONED, text="one")
    age(6)
    system_mailer.mode = "tempfail"
    report = send_digests()
    assert (report.digests, report.sent, report.failed) == (1, 0, 1)
    digest = Digest.objects.get()
    assert digest.sent_at is None and "451" in digest.last_error
    system_mailer.mode = "accept"
    assert send_digests().sent == 0  # not yet: tried again after a while
    Digest.objects.update(created_at=timezone.now() - dt.timedelta(minutes=11))
    assert send_digests().sent == 1
    assert send_digests().sent == 0
    assert len(mails_to(system_mailer, "teammate@relay.test")) == 1


@pytest.mark.django_db(transaction=True)
def test_two_batches_at_once_send_one_mail(system_mailer):
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks two connections can contend for")
    users = [f.UserFactory(username=f"u{i}") for i in range(5)]
    for user in users:
        for i in range(4):
            notify(recipient=user, kind=Kind.MENTIONED, text=f"e{i}", key=str(i))
    age(6)
    barrier = threading.Barrier(2)
    errors = []

    def batch():
        try:
            barrier.wait()
            send_notification_digests()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(m.rcpt_tos[0] for m in system_mailer.received) == sorted(u.email for u in users)
    assert Digest.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_person_another_batch_is_mailing_is_left_to_it(system_mailer):
    """The moment two batches race for one person, made on purpose: another connection holds
    the person and one of their notifications, as a batch half-way through its claim does. This
    batch leaves that person alone (it used to take the other three, and the first batch then
    sent a second mail with the fourth); once the first is gone, one mail has all four."""
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks two connections can contend for")
    from django.contrib.auth import get_user_model
    from django.db import transaction

    user = f.UserFactory(username="ada")
    for i in range(4):
        notify(recipient=user, kind=Kind.MENTIONED, text=f"e{i}", key=str(i))
    age(6)
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def other_batch():
        try:
            with transaction.atomic():
                get_user_model().objects.select_for_update(no_key=True).get(pk=user.pk)
                first = Notification.objects.order_by("pk").first()
                Notification.objects.select_for_update().filter(pk=first.pk).get()
                holding.set()
                release.wait(30)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=other_batch)
    thread.start()
    assert holding.wait(30)
    try:
        assert send_digests().sent == 0
    finally:
        release.set()
        done.wait(30)
    assert send_digests().sent == 1
    (mail,) = mails_to(system_mailer, user.email)
    assert Digest.objects.get().count == 4


def test_the_beat_runs_the_batch_and_a_worker_knows_the_task(settings):
    from crm.celery import app

    entries = [
        e
        for e in settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"] == "relay.send_notification_digests"
    ]
    assert len(entries) == 1 and entries[0]["schedule"] <= 60
    app.loader.import_default_modules()  # what a worker does at start-up
    assert "relay.send_notification_digests" in app.tasks
