"""Filing in support mailboxes, retroactive filing, Qualify and unlink (docs/product.md §4): what a
support agent sees is tickets with the right contact and account, the acknowledgement waiting in the
outbox, and the triage queue with its reasons."""

from __future__ import annotations

import pytest
from django.utils import timezone

from connector.filing import tokens
from crm import services as crm_services
from crm.models import RECORD_MODELS, Contact, Lead, Ticket
from inbox.models import Filing, Mailbox, OutboxEntry, TriageEntry
from inbox.services.qualify import message_qualify, message_unlink
from tests import factories as f
from tests.connector.filingkit import eager_celery, file, filed, mail, records, triage  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def support():
    return f.SharedMailboxFactory(
        email_address="support@relay.test", create_tickets=True, create_contacts=True
    )


@pytest.fixture
def acme():
    return f.AccountFactory(name="Acme", domains=["acme.example"])


@pytest.fixture
def ana(acme):
    return f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=acme)


def acknowledgements(**filters):
    return OutboxEntry.objects.filter(purpose="acknowledgement", **filters)


def test_new_mail_opens_a_ticket_and_replies_join_it(support, ana, acme):
    first = mail(
        support, sender="ana@acme.example", subject="Printer on fire", message_id="q1@acme.example"
    )

    file(first)

    ticket = Ticket.objects.get()
    assert (ticket.subject, ticket.contact, ticket.account) == ("Printer on fire", ana, acme)
    assert ticket.description == first.text_body
    assert filed(first) == {
        ("ticket", ticket.pk, "new_ticket"),
        ("contact", ana.pk, "sender"),
        ("account", acme.pk, "account_of_contact"),
    }
    ack = acknowledgements().get()
    assert ack.state == "queued" and ack.to == ["ana@acme.example"]
    assert f"[{ticket.reference}]" in ack.subject and ticket.reference in ack.text_body
    assert ack.in_reply_to == "q1@acme.example" and ack.reply_to_message_id == first.pk
    assert record_of(ack.message_id) == ticket

    by_thread = mail(support, sender="ana@acme.example", in_reply_to="q1@acme.example")
    by_token = mail(support, sender="ana@acme.example", in_reply_to=ack.message_id)
    by_subject = mail(support, sender="ana@acme.example", subject=f"Re: [{ticket.reference}]")
    file(by_thread, by_token, by_subject)

    assert Ticket.objects.count() == 1
    assert ("ticket", ticket.pk, "thread") in filed(by_thread)
    assert ("ticket", ticket.pk, "token") in filed(by_token)
    assert ("ticket", ticket.pk, "subject_reference") in filed(by_subject)
    assert acknowledgements().count() == 1  # replies are not acknowledged again


def test_unknown_sender_gets_a_contact_on_the_account_of_its_domain_and_a_ticket(support, acme):
    message = mail(support, sender="newbie@acme.example", from_name="Nina Newbie")

    file(message)

    contact = Contact.objects.get(emails__email="newbie@acme.example")
    assert (contact.first_name, contact.last_name, contact.account) == ("Nina", "Newbie", acme)
    ticket = Ticket.objects.get()
    assert (ticket.contact, ticket.account) == (contact, acme)
    assert records(message) == {
        ("ticket", ticket.pk),
        ("contact", contact.pk),
        ("account", acme.pk),
    }


def test_a_reply_in_the_same_batch_joins_the_ticket_its_parent_opens(support, ana):
    opening = mail(support, sender="ana@acme.example", message_id="b1@acme.example")
    follow_up = mail(support, sender="ana@acme.example", in_reply_to="b1@acme.example")
    follow_up.date = opening.date + timezone.timedelta(minutes=5)
    follow_up.save()

    file(follow_up, opening)

    ticket = Ticket.objects.get()
    assert ("ticket", ticket.pk, "thread") in filed(follow_up)


def test_staff_bcc_files_their_correspondence_without_opening_a_ticket(support, ana, settings):
    f.StaffEmailFactory(email="olivia@relay.test")
    ticket = f.TicketFactory(contact=ana, account=ana.account)
    # The Bcc comes from outside: the staff address names the ticket only because our
    # receiving server authenticated it (docs/reliability.md C-18).
    settings.RELAY_AUTHSERV_IDS = ["mx.relay.test"]
    with_reference = mail(
        support,
        sender="olivia@relay.test",
        to="ana@acme.example",
        subject=f"Re: [{ticket.reference}] your printer",
        headers={"authentication-results": ["mx.relay.test; dkim=pass header.d=relay.test"]},
    )
    without_reference = mail(
        support, sender="olivia@relay.test", to="ana@acme.example", subject="Lunch?"
    )

    file(with_reference, without_reference)

    assert Ticket.objects.count() == 1
    assert ("ticket", ticket.pk, "subject_reference") in filed(with_reference)
    assert ("contact", ana.pk, "recipient") in filed(with_reference)
    assert records(without_reference) == {("contact", ana.pk), ("account", ana.account_id)}
    assert not acknowledgements().exists()
    assert not Contact.objects.filter(emails__email="olivia@relay.test").exists()


def test_first_sync_history_opens_no_tickets_and_sends_nothing(support, ana):
    old = mail(support, sender="ana@acme.example")
    stranger = mail(support, sender="unknown@elsewhere.example")

    file(old, stranger, initial=True)

    assert not Ticket.objects.exists()
    assert not OutboxEntry.objects.exists()
    assert ("contact", ana.pk, "sender") in filed(old)


@pytest.mark.parametrize("flag", ["is_auto_reply", "is_bounce", "is_list"])
def test_automated_mail_opens_no_ticket_and_gets_no_acknowledgement(support, ana, flag):
    message = mail(support, sender="ana@acme.example", **{flag: True})

    file(message)

    assert not Ticket.objects.exists()
    assert not OutboxEntry.objects.exists()
    assert ("contact", ana.pk, "sender") in filed(message)


def test_at_most_three_acknowledgements_per_sender_per_hour(support, ana):
    messages = [mail(support, sender="ana@acme.example", subject=f"Issue {i}") for i in range(5)]

    file(*messages[:2])
    file(*messages[2:])

    assert Ticket.objects.count() == 5
    assert acknowledgements(to=["ana@acme.example"]).count() == 3


def test_acknowledgements_switched_off_on_the_settings_page_opens_tickets_and_answers_none(
    support, ana, client, admin_user
):
    """docs/product.md §4.2: acknowledgements are a per-mailbox switch on its settings page
    (the Tickets and forwarding section), and the filing code respects it."""
    from django.urls import reverse

    client.force_login(admin_user)
    page = client.get(reverse("inbox:mailbox_settings", args=[support.pk])).content.decode()
    assert 'name="send_acknowledgements"' in page and "Acknowledge each new ticket" in page
    response = client.post(
        reverse("inbox:mailbox_support", args=[support.pk]),
        {"create_tickets": "on", "forward_unplaced_to": ""},
        follow=True,
    )
    assert "Tickets and forwarding saved." in response.content.decode()
    support.refresh_from_db()
    assert support.create_tickets and not support.send_acknowledgements

    file(mail(support, sender="ana@acme.example", subject="Printer on fire"))

    assert Ticket.objects.get().subject == "Printer on fire"
    assert not acknowledgements().exists()

    client.post(
        reverse("inbox:mailbox_support", args=[support.pk]),
        {"create_tickets": "on", "send_acknowledgements": "on", "forward_unplaced_to": ""},
    )
    file(mail(support, sender="ana@acme.example", subject="Still on fire"))
    assert acknowledgements().get().to == ["ana@acme.example"]


def test_unplaceable_mail_goes_to_triage_and_is_forwarded(support):
    support.create_contacts = False
    support.create_tickets = False
    support.forward_unplaced_to = "helpdesk@relay.test"
    support.save()
    f.AccountFactory(name="North", domains=["twice.example"])
    f.AccountFactory(name="South", domains=["twice.example"])
    ambiguous = mail(support, sender="who@twice.example", subject="Which of us?")
    unknown = mail(support, sender="nobody@nowhere.example")
    newsletter = mail(support, sender="news@nowhere.example", is_list=True)

    file(ambiguous, unknown, newsletter)

    assert triage(ambiguous) == {"ambiguous_domain"}
    entry = TriageEntry.objects.get(message=ambiguous)
    assert "North" in entry.details and "South" in entry.details
    assert triage(unknown) == {"unfiled"}
    assert not triage(newsletter)
    forwards = OutboxEntry.objects.filter(purpose="forward_unplaced")
    assert sorted(forwards.values_list("reply_to_message_id", flat=True)) == sorted(
        [ambiguous.pk, unknown.pk]
    )
    assert all(o.to == ["helpdesk@relay.test"] and o.state == "queued" for o in forwards)


def test_personal_mail_never_becomes_a_ticket_or_a_forward_whatever_its_settings_say(owner):
    # What an admin's edit could leave on a personal mailbox before the admin stopped offering
    # these settings there (docs/reliability.md C-22).
    personal = f.MailboxFactory(owner=owner, email_address="olivia@relay.test")
    Mailbox.objects.filter(pk=personal.pk).update(
        create_tickets=True, forward_unplaced_to="ada@relay.test"
    )
    personal.refresh_from_db()
    f.AccountFactory(name="North", domains=["twice.example"])
    f.AccountFactory(name="South", domains=["twice.example"])
    private = mail(personal, sender="doctor@clinic.example", subject="Your results")
    ambiguous = mail(personal, sender="who@twice.example", subject="Which of us?")

    file(private, ambiguous)

    assert not Ticket.objects.exists()
    assert not OutboxEntry.objects.exists()


def test_forged_reference_in_a_support_mailbox_opens_nothing(support, ana):
    ticket = f.TicketFactory(contact=ana)
    forged = mail(support, sender="mallory@evil.example", subject=f"[{ticket.reference}] refund")

    file(forged)

    assert Ticket.objects.count() == 1
    assert ("ticket", ticket.pk) not in records(forged)
    assert triage(forged) == {"foreign_reference"}
    assert not Contact.objects.filter(emails__email="mallory@evil.example").exists()
    assert not acknowledgements().exists()


def test_filing_twice_changes_nothing(support, ana):
    message = mail(support, sender="ana@acme.example")

    file(message)
    before = (Filing.objects.count(), Ticket.objects.count(), OutboxEntry.objects.count())
    file(message)

    assert (Filing.objects.count(), Ticket.objects.count(), OutboxEntry.objects.count()) == before


# --- retroactive -------------------------------------------------------------------------------


@pytest.mark.usefixtures("eager_celery")
def test_adding_an_address_files_past_mail_in_the_background(django_capture_on_commit_callbacks):
    mailbox = f.SharedMailboxFactory()
    past = [mail(mailbox, sender="bea@later.example") for _ in range(3)]
    cc_only = mail(mailbox, sender="x@other.example", cc="bea@later.example")
    file(*past, cc_only)
    assert all(triage(m) == {"unfiled"} for m in past)
    bea = f.ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        crm_services.contact_set_emails(contact=bea, emails=["bea@later.example"])

    for message in past:
        assert ("contact", bea.pk, "sender") in filed(message)
        assert not triage(message)  # the triage entry is resolved
    assert ("contact", bea.pk, "recipient") in filed(cc_only)


@pytest.mark.usefixtures("eager_celery")
@pytest.mark.parametrize("kind", ["contact", "lead", "account"])
def test_an_address_or_domain_added_in_the_admin_site_files_past_mail(
    kind, client, admin_user, django_capture_on_commit_callbacks
):
    """docs/product.md §4.5: the admin site's inline saves through the web form's service, so
    past mail is filed there too; a removed address goes, an untouched one stays."""
    from django.urls import reverse

    mailbox = f.SharedMailboxFactory()
    past = [mail(mailbox, sender="bea@later.example") for _ in range(2)]
    file(*past)
    client.force_login(admin_user)
    if kind == "account":
        record = f.AccountFactory(name="Later Inc", domains=["old.example"])
        data = {"name": "Later Inc", "website": "", "phone": "", "owner": ""}
        prefix, field, values = "domains", "domain", ["old.example", "Later.Example"]
        rule = "domain"
    else:
        factory = f.ContactFactory if kind == "contact" else f.LeadFactory
        record = factory(first_name="Bea", last_name="Later", emails=["old@later.example"])
        data = {"first_name": "Bea", "last_name": "Later", "phone": "", "owner": ""}
        data |= {"title": "", "account": ""} if kind == "contact" else {}
        if kind == "lead":
            data |= {"company_name": record.company_name, "status": record.status}
            data |= {"converted_contact": "", "converted_account": ""}
        prefix, field, values = "emails", "email", ["old@later.example", "Bea@Later.example"]
        rule = "sender" if kind == "contact" else "lead"
    existing = list(getattr(record, prefix).all())
    data |= {f"{prefix}-TOTAL_FORMS": "2", f"{prefix}-INITIAL_FORMS": "1"}
    data |= {f"{prefix}-0-id": existing[0].pk, f"{prefix}-0-{field}": values[0]}
    data |= {f"{prefix}-0-{kind}": record.pk, f"{prefix}-1-{field}": values[1]}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(f"admin:crm_{kind}_change", args=[record.pk]), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    stored = sorted(getattr(record, prefix).values_list(field, flat=True))
    assert stored == sorted(v.lower() for v in values)
    for message in past:
        assert (kind, record.pk, rule) in filed(message)
        assert not triage(message)


@pytest.mark.usefixtures("eager_celery")
def test_adding_a_domain_files_past_mail_in_batches(django_capture_on_commit_callbacks):
    from connector.filing.refile import refile_for_addresses

    mailbox = f.SharedMailboxFactory()
    past = [mail(mailbox, sender=f"p{i}@grown.example") for i in range(5)]
    account = f.AccountFactory()

    with django_capture_on_commit_callbacks(execute=True):
        crm_services.account_set_domains(account=account, domains=["grown.example"])

    for message in past:
        assert ("account", account.pk, "domain") in filed(message)
    other = f.AccountFactory(domains=["other.example"])
    more = [mail(mailbox, sender=f"q{i}@other.example") for i in range(5)]
    report = refile_for_addresses(domains=["other.example"], batch_size=2)
    assert report.messages == 5 and report.filings == 5
    assert all(("account", other.pk) in records(m) for m in more)


@pytest.mark.usefixtures("eager_celery")
def test_lead_conversion_brings_the_leads_mail_to_the_new_contact(
    django_capture_on_commit_callbacks,
):
    mailbox = f.SharedMailboxFactory()
    lead = f.LeadFactory(emails=["lou@prospect.example"], company_name="Prospect")
    message = mail(mailbox, sender="lou@prospect.example")
    file(message)

    with django_capture_on_commit_callbacks(execute=True):
        contact = crm_services.lead_convert(lead=lead)

    assert records(message) == {
        ("lead", lead.pk),
        ("contact", contact.pk),
        ("account", contact.account_id),
    }


# --- Qualify ----------------------------------------------------------------------------------


def test_qualify_links_any_record_and_unlink_keeps_the_row(support, ana):
    user = f.UserFactory()
    message = mail(support, sender="nobody@nowhere.example")
    opportunity = f.OpportunityFactory()

    filing = message_qualify(user=user, message=message, record=opportunity)

    assert (filing.rule, filing.by_person, filing.record) == ("manual", user, opportunity)
    message_unlink(user=user, filing=filing)
    filing.refresh_from_db()
    assert filing.unlinked_at and filing.unlinked_by == user
    assert ("opportunity", opportunity.pk) not in records(message)
    relinked = message_qualify(user=user, message=message, record=opportunity)
    assert relinked.pk == filing.pk and relinked.unlinked_at is None


@pytest.mark.parametrize("kind, model", [("contact", Contact), ("lead", Lead)])
def test_qualify_creates_a_contact_or_lead_from_the_sender(support, kind, model):
    user = f.UserFactory()
    mailbox = f.SharedMailboxFactory()
    message = mail(mailbox, sender="zoe@fresh.example", from_name="Zoe Zed")
    file(message)
    assert triage(message) == {"unfiled"}

    filing = message_qualify(user=user, message=message, create=kind)

    record = model.objects.get(emails__email="zoe@fresh.example")
    assert (record.first_name, record.last_name) == ("Zoe", "Zed")
    assert filing.record == record and filing.by_person == user
    assert not triage(message)


def test_automation_never_overrides_a_persons_filing(support, ana):
    user = f.UserFactory()
    message = mail(support, sender="ana@acme.example")
    message_qualify(user=user, message=message, record=ana)

    file(message)

    assert Filing.objects.get(message=message, contact=ana).by_person == user
    # A person placed it by hand: still a new request in a support mailbox, so a ticket opens.
    assert Ticket.objects.count() == 1


def test_a_spoofed_sender_gets_no_acknowledgement(support, ana):
    headers = {"authentication-results": "mx.relay.test; dmarc=fail header.from=acme.example"}
    message = mail(support, sender="ana@acme.example", headers=headers)

    file(message)

    ticket = Ticket.objects.get()
    assert Filing.objects.get(message=message, ticket=ticket).sender_unverified
    assert not acknowledgements().exists()


def test_mail_sent_from_the_support_address_with_a_reference_joins_the_ticket(support, ana):
    ticket = f.TicketFactory(contact=ana)
    sent = mail(
        support,
        sender="support@relay.test",
        to="ana@acme.example",
        subject=f"Re: [{ticket.reference}] fixed",
        is_outgoing=True,
    )

    file(sent)

    assert ("ticket", ticket.pk, "subject_reference") in filed(sent)
    assert ("contact", ana.pk, "recipient") in filed(sent)
    assert Ticket.objects.count() == 1


def record_of(message_id: str):
    """The record a Message-ID's valid token points at, as matching resolves it."""
    check = tokens.check_message_id(message_id)
    if check.status != "valid":
        return None
    return RECORD_MODELS[check.record_type].objects.filter(pk=check.record_id).first()
