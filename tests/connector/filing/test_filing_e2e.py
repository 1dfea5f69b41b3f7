"""End to end against the real Dovecot: mail delivered to a support mailbox is synced, the
messages_stored signal fires when the batch commits, and the filing task (run in-process, as a
worker would) turns new requests into tickets with the right contact and account; replies join
them; the first sync's history opens nothing (docs/product.md §4.2)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from connector.sync import mailbox as sync
from crm.models import Contact, Ticket
from inbox.models import Mailbox, Message, OutboxEntry
from tests import factories as f
from tests.connector.filingkit import eager_celery, filed, records  # noqa: F401
from tests.connector.synckit import make_mailbox, make_raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]
MX = "mx.relay.test"


def support_mailbox(imap_user, **fields) -> Mailbox:
    mailbox = make_mailbox(imap_user, **fields)
    Mailbox.objects.filter(pk=mailbox.pk).update(
        kind=Mailbox.Kind.SHARED, owner=None, create_tickets=True, create_contacts=True
    )
    mailbox.refresh_from_db()
    return mailbox


def run(mailbox) -> None:
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed, report.summary()


def by_subject(subject: str) -> Message:
    return Message.objects.get(subject=subject)


class ViaMx:
    """Delivery as through our receiving server: its Authentication-Results on top, saying SPF
    passed for the From's own domain (an aligned pass), as for mail its senders really sent."""

    def __init__(self, server):
        self.server = server

    def deliver(self, user, raw: bytes) -> int:
        sender = re.search(rb"^From: (?:.*<)?([^<>\s]+@[^<>\s]+?)>?\r$", raw, re.M)[1]
        domain = sender.decode().rpartition("@")[2]
        header = f"Authentication-Results: {MX}; spf=pass smtp.mailfrom={domain}\r\n"
        return self.server.deliver(user, header.encode() + raw)


def test_support_mail_becomes_tickets_and_replies_join_them(imap_user, settings):
    dovecot = ViaMx(imap_user.server)
    # Every message comes through our MX, whose header is believed; staff mail names a record
    # only with such an authenticated From (docs/reliability.md C-18).
    settings.RELAY_AUTHSERV_IDS = [MX]
    acme = f.AccountFactory(name="Acme", domains=["acme.example"])
    ana = f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=acme)
    f.StaffEmailFactory(email="olivia@relay.test")
    dovecot.deliver(imap_user, make_raw("Old history", sender="Ana <ana@acme.example>"))
    mailbox = support_mailbox(imap_user)

    run(mailbox)  # the first sync: history is filed but opens no ticket and sends nothing

    assert ("contact", ana.pk) in records(by_subject("Old history"))
    assert not Ticket.objects.exists() and not OutboxEntry.objects.exists()

    dovecot.deliver(
        imap_user,
        make_raw(
            "Printer on fire", sender="Ana <ana@acme.example>", message_id="<fire@acme.example>"
        ),
    )
    dovecot.deliver(imap_user, make_raw("VPN down", sender="Nina Newbie <nina@acme.example>"))
    dovecot.deliver(
        imap_user,
        make_raw(
            "Out of office",
            sender="bot@acme.example",
            extra_headers={"Auto-Submitted": "auto-replied"},
        ),
    )
    run(mailbox)

    fire = Ticket.objects.get(subject="Printer on fire")
    assert (fire.contact, fire.account) == (ana, acme)
    nina = Contact.objects.get(emails__email="nina@acme.example")
    vpn = Ticket.objects.get(subject="VPN down")
    assert (vpn.contact, vpn.account) == (nina, acme)
    assert (nina.first_name, nina.last_name) == ("Nina", "Newbie")
    assert Ticket.objects.count() == 2  # the auto-reply opened nothing
    acks = OutboxEntry.objects.filter(purpose="acknowledgement", state="queued")
    assert sorted(a.to[0] for a in acks) == ["ana@acme.example", "nina@acme.example"]

    ack = acks.get(to=["ana@acme.example"])
    dovecot.deliver(
        imap_user,
        make_raw(
            "Re: Printer on fire",
            sender="Ana <ana@acme.example>",
            in_reply_to="<fire@acme.example>",
        ),
    )
    dovecot.deliver(
        imap_user,
        make_raw("Re: thanks", sender="Ana <ana@acme.example>", in_reply_to=f"<{ack.message_id}>"),
    )
    dovecot.deliver(
        imap_user,
        make_raw(f"Re: [{vpn.reference}] still down", sender="Nina <nina@acme.example>"),
    )
    dovecot.deliver(
        imap_user,
        make_raw(f"[{vpn.reference}] me too", sender="Mallory <mallory@evil.example>"),
    )
    dovecot.deliver(
        imap_user,
        make_raw(
            f"Re: [{vpn.reference}] update",
            sender="Olivia <olivia@relay.test>",
            to="nina@acme.example",
        ),
    )
    run(mailbox)

    assert Ticket.objects.count() == 2
    assert ("ticket", fire.pk, "thread") in filed(by_subject("Re: Printer on fire"))
    assert ("ticket", fire.pk, "token") in filed(by_subject("Re: thanks"))
    assert ("ticket", vpn.pk, "subject_reference") in filed(
        by_subject(f"Re: [{vpn.reference}] still down")
    )
    assert ("ticket", vpn.pk, "subject_reference") in filed(
        by_subject(f"Re: [{vpn.reference}] update")
    )
    hijack = by_subject(f"[{vpn.reference}] me too")
    assert ("ticket", vpn.pk) not in records(hijack)
    assert hijack.triage_entries.get().reason == "foreign_reference"
    assert OutboxEntry.objects.filter(purpose="acknowledgement").count() == 2


def test_uidvalidity_reset_brings_no_old_mail_and_answers_nothing_it_finds_again(imap_user):
    """docs/reliability.md S-01: the server is migrated (new UIDVALIDITY, the migration tool adds
    a header to every message, so the bytes differ). Mail older than the sync-from date stays
    out, and mail found again opens no ticket and queues no acknowledgement."""
    dovecot = imap_user.server
    years_ago = timezone.now() - dt.timedelta(days=3 * 365)
    dovecot.deliver(
        imap_user,
        make_raw("Years-old complaint", sender="Ana <ana@acme.example>", date=years_ago),
        received=years_ago,
    )
    recent = make_raw("Recent question", sender="Ben <ben@acme.example>")
    recent_uid = dovecot.deliver(imap_user, recent)
    mailbox = support_mailbox(imap_user, sync_from=(timezone.now() - dt.timedelta(days=30)).date())

    run(mailbox)  # the first sync: only the recent mail, filed as history
    assert set(Message.objects.values_list("subject", flat=True)) == {"Recent question"}
    assert not Ticket.objects.exists() and not OutboxEntry.objects.exists()

    dovecot.expunge(imap_user, "INBOX", recent_uid)
    dovecot.deliver(imap_user, b"X-Migrated-By: imapsync\r\n" + recent)
    dovecot.reset_uidvalidity(imap_user, "INBOX")
    run(mailbox)

    assert not Message.objects.filter(subject="Years-old complaint").exists()
    assert Message.objects.filter(subject="Recent question").count() == 2  # old and new bytes
    assert not Ticket.objects.exists()
    assert not OutboxEntry.objects.exists()

    # Mail that arrives after the reset is new mail again: it opens a ticket and is answered.
    dovecot.deliver(imap_user, make_raw("Fresh request", sender="Cleo <cleo@acme.example>"))
    run(mailbox)
    assert list(Ticket.objects.values_list("subject", flat=True)) == ["Fresh request"]
    assert list(OutboxEntry.objects.values_list("to", flat=True)) == [["cleo@acme.example"]]
