"""A staff address takes part in every record, so mail from one counts as staff mail only when
the mail proves it (docs/reliability.md C-18): an aligned authentication pass in our receiving
server's header, or mail that is ours by construction (Relay sent it, or it sits in the
mailbox's Sent folder). Raw RFC 5322 messages with the Authentication-Results headers a
receiving server prepends go the real path (tests/connector/filingkit.py `receive`)."""

from __future__ import annotations

import pytest

from inbox.models import Filing
from tests import factories as f
from tests.connector.filingkit import arrived, filed, receive, records, triage
from tests.connector.synckit import make_raw

pytestmark = pytest.mark.django_db

OURS = "mx.relay.test"
# Mail the attacker sent from their own server with From: olivia@relay.test (relay.test
# publishes no DMARC policy that rejects it).
FORGED = f"{OURS}; spf=pass smtp.mailfrom=mallory@evil.example; dkim=none; dmarc=none"
GENUINE = (
    f"{OURS}; spf=pass smtp.mailfrom=olivia@relay.test; dkim=pass header.d=relay.test; "
    "dmarc=pass header.from=relay.test"
)


@pytest.fixture
def world(tmp_path, settings):
    """A support mailbox; Ana's ticket, opened by her mail; Olivia, a confirmed staff member."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RELAY_AUTHSERV_IDS = [OURS]
    support = f.SharedMailboxFactory(email_address="support@relay.test", create_tickets=True)
    ana = f.ContactFactory(emails=["ana@acme.example"])
    (opening,) = receive(
        support,
        arrived(
            make_raw(
                "Printer jams",
                sender="Ana <ana@acme.example>",
                message_id="<ana-1@acme.example>",
            ),
            f"{OURS}; dkim=pass header.d=acme.example",
        ),
    )
    ticket = Filing.objects.get(message=opening, record_type="ticket").ticket
    olivia = f.UserFactory(username="olivia")
    f.StaffEmailFactory(user=olivia, email="olivia@relay.test")
    return support, ana, ticket, olivia


def from_olivia(subject: str, **kwargs) -> bytes:
    return make_raw(subject, sender="Olivia <olivia@relay.test>", to="support@relay.test", **kwargs)


@pytest.mark.parametrize("results", [(), (FORGED,)], ids=["no-header", "pass-for-another-domain"])
def test_forged_staff_from_with_a_subject_reference_lands_in_triage_not_on_the_ticket(
    world, results
):
    support, ana, ticket, _ = world
    raw = arrived(from_olivia(f"Re: [{ticket.reference}] send the invoice to me"), *results)

    (forged,) = receive(support, raw)

    assert ("ticket", ticket.pk) not in records(forged)
    assert triage(forged) == {"foreign_reference"}
    assert "a staff address, but the mail does not prove it" in (
        forged.triage_entries.get().details
    )


def test_forged_staff_from_replying_in_the_customers_thread_lands_in_triage(world):
    support, ana, ticket, _ = world
    raw = arrived(from_olivia("Re: Printer jams", in_reply_to="<ana-1@acme.example>"), FORGED)

    (forged,) = receive(support, raw)

    assert ("ticket", ticket.pk) not in records(forged)
    assert ("contact", ana.pk) not in records(forged)
    assert triage(forged) == {"foreign_reference"}


def test_forged_from_of_the_support_address_itself_lands_in_triage(world):
    support, ana, ticket, _ = world
    raw = arrived(make_raw(f"Re: [{ticket.reference}] closed", sender="support@relay.test"), FORGED)

    (forged,) = receive(support, raw)

    assert ("ticket", ticket.pk) not in records(forged)
    assert triage(forged) == {"foreign_reference"}


def test_authenticated_staff_mail_with_the_reference_joins_the_ticket(world):
    support, ana, ticket, _ = world
    raw = arrived(from_olivia(f"Re: [{ticket.reference}] fixed"), GENUINE)

    (genuine,) = receive(support, raw)

    assert ("ticket", ticket.pk, "subject_reference") in filed(genuine)
    assert not triage(genuine)


def test_staff_mail_in_their_own_sent_folder_joins_the_ticket_without_a_header(world):
    """Mail in the mailbox's own Sent folder is ours by construction: only its owner's client
    puts it there."""
    support, ana, ticket, olivia = world
    personal = f.MailboxFactory(owner=olivia, email_address="olivia@relay.test")
    raw = make_raw(
        f"Re: [{ticket.reference}] fixed",
        sender="Olivia <olivia@relay.test>",
        to="ana@acme.example",
    )

    (sent,) = receive(personal, raw, folder="Sent", special_use="sent")

    assert ("ticket", ticket.pk, "subject_reference") in filed(sent)
    assert not triage(sent)
    # It was never received, so no header judged it: no "unverified sender" warning either.
    assert not Filing.objects.filter(message=sent, sender_unverified=True).exists()


def test_the_customer_keeps_todays_rule_unauthenticated_mail_joins_her_ticket_flagged(world):
    support, ana, ticket, _ = world
    raw = make_raw(f"Re: [{ticket.reference}] still jams", sender="Ana <ana@acme.example>")

    (reply,) = receive(support, raw)

    assert ("ticket", ticket.pk, "subject_reference") in filed(reply)
    assert Filing.objects.get(message=reply, ticket=ticket).sender_unverified
