"""Who may drive the Email API (docs/reliability.md C-17): an allowed sender whose mail our own
receiving server authenticated for the From domain, and, when the sender has a secret, a
document that carries it. Each attack goes the real path: raw RFC 5322 bytes with
Authentication-Results headers as a receiving server prepends them, stored as the
sync stores a batch and filed by the filing task's entry (tests/connector/filingkit.py
`receive`); one more goes through the test Dovecot and a real sync, with the reply sent to a
real SMTP server."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import check_password
from django.urls import reverse

from crm.models import ContactEmail, Ticket
from inbox.models import EmailApiRequest, EmailApiSender, OutboxEntry
from tests import factories as f
from tests.connector.filingkit import arrived, receive
from tests.connector.synckit import make_raw

pytestmark = pytest.mark.django_db

FORMS = "forms@web.example"
OURS = "mx.relay.test"
NS = 'xmlns="urn:relay-crm:email-api:1"'
# What our receiving server writes for mail the attacker sent from their own server with
# From: forms@web.example (web.example publishes no DMARC policy, so nothing rejects it).
ATTACKERS_OWN_PASS = (
    f"{OURS}; spf=pass (domain of mallory@evil.example designates 198.51.100.7 as permitted "
    "sender) smtp.mailfrom=mallory@evil.example; dkim=pass header.d=evil.example "
    "header.s=s1; dmarc=none (p=NONE) header.from=web.example"
)


@pytest.fixture
def world(tmp_path, settings):
    """The victim of docs/reliability.md C-17: a customer contact with an open ticket, and a
    support mailbox that takes documents from the web form service."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RELAY_AUTHSERV_IDS = [OURS]
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test", create_tickets=True)
    EmailApiSender.objects.create(mailbox=mailbox, address=FORMS)
    vera = f.ContactFactory(first_name="Vera", last_name="Victim", emails=["vera@customer.example"])
    ticket = f.TicketFactory(contact=vera, subject="Invoice wrong", status="open")
    return mailbox, vera, ticket


def takeover(vera, ticket, secret: str = "") -> str:
    """The attack's document: the attacker's address onto the victim, renamed, ticket closed."""
    attribute = f' secret="{secret}"' if secret else ""
    return (
        f'<?xml version="1.0"?>\n<request {NS}{attribute}>\n'
        f'  <updateContact id="{vera.pk}">\n'
        "    <firstName>Mallory</firstName>\n"
        "    <email>mallory@evil.example</email>\n"
        "  </updateContact>\n"
        f'  <updateTicket reference="{ticket.reference}">\n'
        "    <status>closed</status>\n"
        "  </updateTicket>\n"
        "</request>\n"
    )


def document_mail(body: str, *, inner_headers: dict | None = None) -> bytes:
    return make_raw(
        "Form submission",
        sender=f"Web form <{FORMS}>",
        to="support@relay.test",
        body=body,
        extra_headers=inner_headers,
    )


def assert_nothing_written(message, vera, ticket) -> EmailApiRequest:
    vera.refresh_from_db()
    ticket.refresh_from_db()
    assert vera.first_name == "Vera"
    assert list(ContactEmail.objects.filter(contact=vera).values_list("email", flat=True)) == [
        "vera@customer.example"
    ]
    assert ticket.status == "open"
    request = EmailApiRequest.objects.get(message=message)
    assert request.outcome == "rejected"
    # No reply: it would go to the real sender, who did not write this.
    assert not OutboxEntry.objects.exists()
    assert request.reply is None
    return request


def assert_applied(message, vera, ticket) -> None:
    vera.refresh_from_db()
    ticket.refresh_from_db()
    assert vera.first_name == "Mallory" and ticket.status == "closed"
    request = EmailApiRequest.objects.get(message=message)
    assert request.outcome == "applied", request.errors
    assert request.reply.to == [FORMS]


# --- the attacks: each writes nothing ---------------------------------------------------------


def test_forged_from_with_no_authentication_results_writes_nothing(world):
    mailbox, vera, ticket = world
    (message,) = receive(mailbox, arrived(document_mail(takeover(vera, ticket))))

    request = assert_nothing_written(message, vera, ticket)
    assert "sender not verified" in request.errors[0]
    assert "no Authentication-Results header from our receiving server" in request.errors[0]


def test_spf_and_dkim_pass_for_the_attackers_own_domain_write_nothing(world):
    mailbox, vera, ticket = world
    (message,) = receive(
        mailbox, arrived(document_mail(takeover(vera, ticket)), ATTACKERS_OWN_PASS)
    )

    request = assert_nothing_written(message, vera, ticket)
    assert "nothing passed for web.example" in request.errors[0]
    assert "spf=pass smtp.mailfrom=evil.example" in request.errors[0]


def test_a_sender_written_dmarc_pass_under_ours_writes_nothing(world):
    mailbox, vera, ticket = world
    raw = document_mail(
        takeover(vera, ticket),
        inner_headers={"Authentication-Results": "x; dmarc=pass header.from=web.example"},
    )
    (message,) = receive(mailbox, arrived(raw, f"{OURS}; spf=pass smtp.mailfrom=evil.example"))

    assert_nothing_written(message, vera, ticket)


def test_a_sender_written_dmarc_pass_over_ours_writes_nothing(world):
    mailbox, vera, ticket = world
    raw = arrived(
        document_mail(takeover(vera, ticket)),
        "x; dmarc=pass header.from=web.example",
        f"{OURS}; spf=pass smtp.mailfrom=evil.example; dkim=none",
    )
    (message,) = receive(mailbox, raw)

    assert_nothing_written(message, vera, ticket)


def test_a_sender_written_header_with_our_own_id_under_ours_writes_nothing(world):
    """Only the topmost header of our server counts: the sender's copy of our authserv-id
    below it is just text they wrote."""
    mailbox, vera, ticket = world
    raw = document_mail(
        takeover(vera, ticket),
        inner_headers={"Authentication-Results": f"{OURS}; dmarc=pass header.from=web.example"},
    )
    (message,) = receive(mailbox, arrived(raw, ATTACKERS_OWN_PASS))

    assert_nothing_written(message, vera, ticket)


def test_without_relay_authserv_ids_no_header_is_believed(world, settings):
    """Unset, nothing can tell our server's header from the sender's: every document is
    refused, however good its header looks."""
    settings.RELAY_AUTHSERV_IDS = []
    mailbox, vera, ticket = world
    raw = arrived(
        document_mail(takeover(vera, ticket)),
        f"{OURS}; dkim=pass header.d=web.example; dmarc=pass header.from=web.example",
    )
    (message,) = receive(mailbox, raw)

    request = assert_nothing_written(message, vera, ticket)
    assert "RELAY_AUTHSERV_IDS is not set" in request.errors[0]


# --- what is believed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "results",
    [
        f"{OURS}; dkim=pass (2048-bit key; secure) header.d=web.example header.s=s1",
        f"{OURS}; spf=pass smtp.mailfrom=bounces+42@mail.web.example; dkim=none",
        f"{OURS} 1; spf=fail smtp.mailfrom=evil.example; dkim=pass header.i=@web.example; "
        "dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=web.example",
    ],
    ids=["dkim-aligned", "spf-subdomain-aligned", "dmarc-pass-with-comments"],
)
def test_an_aligned_pass_in_our_servers_header_applies_the_document(world, results):
    mailbox, vera, ticket = world
    (message,) = receive(mailbox, arrived(document_mail(takeover(vera, ticket)), results))

    assert_applied(message, vera, ticket)


# --- the second factor: a per-sender secret ---------------------------------------------------

VERIFIED = f"{OURS}; dkim=pass header.d=web.example; dmarc=pass header.from=web.example"


@pytest.mark.parametrize("given", ["", "not-the-secret-at-all"], ids=["missing", "wrong"])
def test_a_sender_with_a_secret_needs_it_in_the_document(world, given):
    mailbox, vera, ticket = world
    sender = EmailApiSender.objects.get(address=FORMS)
    sender.set_secret("correct horse battery staple")
    sender.save()
    (message,) = receive(
        mailbox, arrived(document_mail(takeover(vera, ticket, secret=given)), VERIFIED)
    )

    request = assert_nothing_written(message, vera, ticket)
    assert request.errors == ["the document does not carry this sender's secret"]


def test_the_right_secret_applies_and_is_never_quoted_back(world):
    mailbox, vera, ticket = world
    sender = EmailApiSender.objects.get(address=FORMS)
    sender.set_secret("correct horse battery staple")
    sender.save()
    (message,) = receive(
        mailbox,
        arrived(
            document_mail(takeover(vera, ticket, secret="correct horse battery staple")),
            VERIFIED,
        ),
    )

    assert_applied(message, vera, ticket)
    assert "correct horse" not in EmailApiRequest.objects.get(message=message).reply.text_body


# --- the admin: set a secret, see who can work today --------------------------------------------


def test_admin_sets_a_secret_that_is_kept_hashed_and_never_shown_again(admin_client, world):
    mailbox, *_ = world
    response = admin_client.post(
        reverse("admin:inbox_emailapisender_add"),
        {
            "mailbox": mailbox.pk,
            "address": "Alerts@Monitor.example",
            "note": "monitoring",
            "new_secret": "s3cret-for-the-monitor",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sender = EmailApiSender.objects.get(address="alerts@monitor.example")
    assert sender.secret_hash and "s3cret-for-the-monitor" not in sender.secret_hash
    assert check_password("s3cret-for-the-monitor", sender.secret_hash)

    page = admin_client.get(reverse("admin:inbox_emailapisender_change", args=[sender.pk]))
    assert "s3cret-for-the-monitor" not in page.content.decode()
    assert sender.secret_hash not in page.content.decode()

    # Saving the page again without typing a secret keeps it; "remove" removes it.
    data = {"mailbox": mailbox.pk, "address": sender.address, "note": "monitoring"}
    admin_client.post(reverse("admin:inbox_emailapisender_change", args=[sender.pk]), data)
    sender.refresh_from_db()
    assert check_password("s3cret-for-the-monitor", sender.secret_hash)
    admin_client.post(
        reverse("admin:inbox_emailapisender_change", args=[sender.pk]),
        {**data, "remove_secret": "on"},
    )
    sender.refresh_from_db()
    assert sender.secret_hash == ""


def test_admin_says_which_senders_can_work_today(admin_client, world, settings):
    mailbox, vera, ticket = world
    EmailApiSender.objects.create(mailbox=mailbox, address="alerts@monitor.example")
    quiet = EmailApiSender.objects.create(mailbox=mailbox, address="quiet@partner.example")
    quiet.set_secret("a-secret-of-sixteen+")
    quiet.save()
    receive(
        mailbox,
        arrived(document_mail("Hello, just a note."), VERIFIED),
        arrived(
            make_raw("Alert", sender="alerts@monitor.example", body="Disk full"),
            ATTACKERS_OWN_PASS,
        ),
    )
    url = reverse("admin:inbox_emailapisender_changelist")

    page = admin_client.get(url).content.decode()

    rows = {
        address: page.split(f">{address}<", 1)[1].split("</tr>", 1)[0]
        for address in (FORMS, "alerts@monitor.example", "quiet@partner.example")
    }
    assert "Yes: its last mail" in rows[FORMS] and "dkim=pass header.d=web.example" in rows[FORMS]
    assert "Warning: no secret set." in rows[FORMS]
    assert "No: its last mail" in rows["alerts@monitor.example"]
    assert "nothing passed for monitor.example" in rows["alerts@monitor.example"]
    assert "Not known yet" in rows["quiet@partner.example"]
    assert "Warning" not in rows["quiet@partner.example"]

    settings.RELAY_AUTHSERV_IDS = []
    page = admin_client.get(url).content.decode()
    assert page.count("No: RELAY_AUTHSERV_IDS is not set, so no mail can be verified") == 3


def test_settings_page_says_the_same_as_the_admin(admin_client, world, settings):
    """The shared mailbox's settings page (docs/product.md §2.7) shows each sender's state
    with the admin's words: the one selector decides (inbox/selectors/mailboxes.py)."""
    mailbox, vera, ticket = world
    EmailApiSender.objects.create(mailbox=mailbox, address="alerts@monitor.example")
    receive(
        mailbox,
        arrived(document_mail("Hello, just a note."), VERIFIED),
        arrived(
            make_raw("Alert", sender="alerts@monitor.example", body="Disk full"),
            ATTACKERS_OWN_PASS,
        ),
    )
    page = admin_client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    section = page.split('id="api-senders"', 1)[1].split("</ul>", 1)[0]
    rows = {
        a: section.split(f">{a}<", 1)[1].split("</li>", 1)[0]
        for a in (FORMS, "alerts@monitor.example")
    }
    assert "Works today" in rows[FORMS] and "Yes: its last mail" in rows[FORMS]
    assert "dkim=pass header.d=web.example" in rows[FORMS]
    assert "Does not work" in rows["alerts@monitor.example"]
    assert "nothing passed for monitor.example" in rows["alerts@monitor.example"]
    settings.RELAY_AUTHSERV_IDS = []
    page = admin_client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    assert page.count("No: RELAY_AUTHSERV_IDS is not set, so no mail can be verified") == 2


# --- through Dovecot and a real sync ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_end_to_end_only_the_authenticated_document_is_applied_and_answered(
    imap_user, smtp_server, tmp_path, settings
):
    """Both documents are delivered to the test Dovecot and synced; the filing task the
    signal enqueues runs in-process; the one reply goes out through the real SMTP path."""
    from connector.sync import mailbox as sync
    from crm.celery import app
    from inbox.models import Mailbox
    from tests.connector.synckit import make_mailbox

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RELAY_AUTHSERV_IDS = [OURS]
    vera = f.ContactFactory(first_name="Vera", emails=["vera@customer.example"])
    ticket = f.TicketFactory(contact=vera, status="open")
    mailbox = make_mailbox(
        imap_user, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_security="none"
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(kind="shared", owner=None, create_tickets=True)
    smtp_server.user, smtp_server.password = imap_user.login, imap_user.password
    EmailApiSender.objects.create(mailbox=mailbox, address=FORMS)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    try:
        assert sync.sync_mailbox(mailbox.pk).completed  # the first sync: nothing there yet
        forged = document_mail(takeover(vera, ticket))
        imap_user.server.deliver(imap_user, arrived(forged, ATTACKERS_OWN_PASS))
        assert sync.sync_mailbox(mailbox.pk).completed
        vera.refresh_from_db()
        assert vera.first_name == "Vera"
        assert Ticket.objects.get(pk=ticket.pk).status == "open"
        assert EmailApiRequest.objects.get().outcome == "rejected"

        genuine = document_mail(
            f'<request {NS}><updateTicket reference="{ticket.reference}">'
            "<note>Paid.</note></updateTicket></request>"
        )
        imap_user.server.deliver(imap_user, arrived(genuine, VERIFIED))
        assert sync.sync_mailbox(mailbox.pk).completed
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = False, False

    assert "Paid." in Ticket.objects.get(pk=ticket.pk).description
    assert [m.rcpt_tos for m in smtp_server.received] == [(FORMS,)]
    assert b"[Email API applied]" in smtp_server.received[0].raw
