"""The matching rules, one case per rule and per conflict (docs/product.md §4.1): what a user sees
afterwards is which records the message is filed on, with which rule, and what waits in triage.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connector.filing import apply, tokens
from crm import services as crm_services
from crm.models import Contact, Ticket
from inbox.models import ExclusionPattern, Filing, MatchingSettings
from inbox.signals import mail_filed
from tests import factories as f
from tests.connector.filingkit import file, filed, mail, records, triage

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox():
    return f.SharedMailboxFactory(email_address="sales@relay.test")


def set_precedence(value):
    row = MatchingSettings.load()
    row.precedence = value
    row.save()


# --- rule 3 and 4, table-driven ----------------------------------------------------------


def world_contact(mb):
    acme = f.AccountFactory(name="Acme", domains=["acme.example"])
    ana = f.ContactFactory(emails=["ana@acme.example"], account=acme)
    m = mail(mb, sender="ana@acme.example", to="sales@relay.test")
    return m, {("contact", ana.pk, "sender"), ("account", acme.pk, "account_of_contact")}, set()


def world_lead(mb):
    lead = f.LeadFactory(emails=["lee@prospect.example"])
    m = mail(mb, sender="lee@prospect.example", to="sales@relay.test")
    return m, {("lead", lead.pk, "lead")}, set()


def world_shared_contact_first(mb):
    set_precedence("contact_first")
    lead = f.LeadFactory(emails=["sam@both.example"])
    contact = f.ContactFactory(emails=["sam@both.example"])
    m = mail(mb, sender="sam@both.example")
    return m, {("contact", contact.pk, "sender")}, set(), [("lead", lead.pk)]


def world_shared_lead_first(mb):
    set_precedence("lead_first")
    contact = f.ContactFactory(emails=["sam@both.example"])
    lead = f.LeadFactory(emails=["sam@both.example"])
    m = mail(mb, sender="sam@both.example")
    return m, {("lead", lead.pk, "lead")}, set(), [("contact", contact.pk)]


def world_converted_lead(mb):
    set_precedence("lead_first")
    lead = f.LeadFactory(emails=["cora@convert.example"], company_name="Convert Ltd")
    contact = crm_services.lead_convert(lead=lead)
    m = mail(mb, sender="cora@convert.example")
    # Lead first, but the lead is converted: the mail goes where the lead went, never on it.
    return (
        m,
        {("contact", contact.pk, "sender"), ("account", contact.account_id, "account_of_contact")},
        set(),
    )


def world_converted_lead_contact_lost_address(mb):
    lead = f.LeadFactory(emails=["old@convert.example"], company_name="Moved Ltd")
    contact = crm_services.lead_convert(lead=lead)
    crm_services.contact_set_emails(contact=contact, emails=["new@convert.example"])
    m = mail(mb, sender="old@convert.example")
    return (
        m,
        {("contact", contact.pk, "sender"), ("account", contact.account_id, "account_of_contact")},
        set(),
    )


def world_two_contacts(mb):
    first = f.ContactFactory(emails=["desk@shared.example"])
    second = f.ContactFactory(emails=["desk@shared.example"])
    m = mail(mb, sender="desk@shared.example")
    return m, {("contact", first.pk, "sender")}, set(), [("contact", second.pk)]


def world_staff_to_contact(mb):
    f.StaffEmailFactory(email="olivia@relay.test")
    bob = f.ContactFactory(emails=["bob@client.example"])
    carl = f.ContactFactory(emails=["carl@client.example"])
    m = mail(mb, sender="olivia@relay.test", to="bob@client.example", cc="carl@client.example")
    return m, {("contact", bob.pk, "recipient"), ("contact", carl.pk, "recipient")}, set()


def world_domain(mb):
    acme = f.AccountFactory(domains=["acme.example"])
    m = mail(mb, sender="stranger@acme.example")
    return m, {("account", acme.pk, "domain")}, set()


def world_domain_claimed_twice(mb):
    f.AccountFactory(name="North", domains=["twice.example"])
    f.AccountFactory(name="South", domains=["twice.example"])
    m = mail(mb, sender="who@twice.example")
    return m, set(), {"ambiguous_domain"}


def world_free_mail(mb):
    f.AccountFactory(domains=["gmail.com"])  # someone claimed gmail.com: ignored all the same
    m = mail(mb, sender="someone@gmail.com")
    return m, set(), {"unfiled"}


def world_staff_domain_of_recipient(mb):
    f.StaffEmailFactory(email="olivia@relay.test")
    acme = f.AccountFactory(domains=["acme.example"])
    m = mail(mb, sender="olivia@relay.test", to="new.person@acme.example")
    return m, {("account", acme.pk, "domain")}, set()


CASES = {
    "contact sender, and its account": world_contact,
    "lead sender": world_lead,
    "lead and contact share an address, contact first": world_shared_contact_first,
    "lead and contact share an address, lead first": world_shared_lead_first,
    "converted lead files on what it became": world_converted_lead,
    "converted lead whose contact changed address": world_converted_lead_contact_lost_address,
    "two contacts share an address: earliest wins": world_two_contacts,
    "staff mail to contacts files on the contacts": world_staff_to_contact,
    "unknown sender, domain of one account": world_domain,
    "domain claimed by two accounts": world_domain_claimed_twice,
    "free-mail sender never matches by domain": world_free_mail,
    "staff mail to an unknown person at a customer domain": world_staff_domain_of_recipient,
}


@pytest.mark.parametrize("world", CASES.values(), ids=CASES.keys())
def test_address_and_domain_rules(mailbox, world):
    built = world(mailbox)
    message, expected, expected_triage = built[:3]
    alternatives = built[3] if len(built) > 3 else []

    file(message)

    assert filed(message) == expected
    assert triage(message) == expected_triage
    chosen = Filing.objects.filter(message=message, rule__in=["sender", "lead", "recipient"])
    got = [(a["record_type"], a["id"]) for x in chosen for a in x.alternatives]
    assert got == alternatives
    for filing in Filing.objects.filter(message=message):
        assert filing.evidence, "every filing says why"


# --- rule 5: unknown senders ------------------------------------------------------------


@pytest.mark.parametrize(
    "sender, patterns, created",
    [
        ("jane@newco.example", [], True),
        ("no-reply@noreply.newco.example", ["*@noreply.*"], False),
        ("mailer-daemon@newco.example", ["mailer-daemon@*"], False),
        ("jane@eu.example.org", ["*.example.org"], False),
        ("jane@example.org", ["*.example.org"], True),  # the glob wants a subdomain
        ("jane@newco.example", ["*@noreply.*", "*.example.org"], True),
        ("JANE@Newco.Example", ["jane@newco.*"], False),
    ],
)
def test_unknown_sender_becomes_a_contact_unless_excluded(sender, patterns, created):
    mailbox = f.SharedMailboxFactory(create_contacts=True)
    for pattern in patterns:
        ExclusionPattern.objects.create(pattern=pattern)
    normalised = sender.lower()
    message = mail(mailbox, sender=normalised, from_name="Jane Doe")

    file(message)

    contact = Contact.objects.filter(emails__email=normalised).first()
    assert (contact is not None) == created
    if created:
        assert (contact.first_name, contact.last_name) == ("Jane", "Doe")
        assert filed(message) == {("contact", contact.pk, "created_contact")}


def test_new_contact_joins_the_account_of_its_domain():
    mailbox = f.SharedMailboxFactory(create_contacts=True)
    acme = f.AccountFactory(domains=["acme.example"])
    first = mail(mailbox, sender="new@acme.example", from_name="New Person")
    second = mail(mailbox, sender="new@acme.example")

    file(first, second)

    contact = Contact.objects.get(emails__email="new@acme.example")
    assert contact.account == acme
    for message in (first, second):
        assert records(message) == {("contact", contact.pk), ("account", acme.pk)}
    assert Contact.objects.filter(emails__email="new@acme.example").count() == 1


@pytest.mark.parametrize("flag", ["is_auto_reply", "is_bounce", "is_list"])
def test_automated_mail_never_creates_contacts(flag):
    mailbox = f.SharedMailboxFactory(create_contacts=True, create_tickets=True)
    message = mail(mailbox, sender="robot@newco.example", **{flag: True})

    file(message)

    assert not Contact.objects.exists()
    assert not Ticket.objects.exists()


def test_staff_addresses_never_become_contacts():
    mailbox = f.SharedMailboxFactory(create_contacts=True)
    f.StaffEmailFactory(email="olivia@relay.test")
    message = mail(mailbox, sender="olivia@relay.test", to="unknown@nowhere.example")

    file(message)

    assert not Contact.objects.exists()


def test_exclusion_patterns_preview_shows_what_they_would_exclude(mailbox):
    from inbox.services.triage import exclusion_patterns_preview

    keep = mail(mailbox, sender="ana@acme.example")
    noreply = mail(mailbox, sender="alerts@noreply.github.example")
    daemon = mail(mailbox, sender="mailer-daemon@mx.example")

    hits = exclusion_patterns_preview(patterns=["*@noreply.*", " Mailer-Daemon@* "])

    assert {(h["message_id"], h["pattern"]) for h in hits} == {
        (noreply.pk, "*@noreply.*"),
        (daemon.pk, "mailer-daemon@*"),
    }
    assert keep.pk not in {h["message_id"] for h in hits}


# --- rules 1 and 2: threads and references ------------------------------------------------


def test_reply_in_a_filed_thread_inherits_its_filings_in_the_same_mailbox_only(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    opportunity = f.OpportunityFactory(contact=ana)
    original = mail(mailbox, sender="ana@acme.example", message_id="deal-1@acme.example")
    f.FilingFactory(message=original, opportunity=opportunity, rule="manual")
    reply = mail(mailbox, sender="ana@acme.example", in_reply_to="deal-1@acme.example")
    other_mailbox = f.SharedMailboxFactory()
    elsewhere = mail(other_mailbox, sender="ana@acme.example", in_reply_to="deal-1@acme.example")

    file(reply, elsewhere)

    assert ("opportunity", opportunity.pk, "thread") in filed(reply)
    assert ("opportunity", opportunity.pk) not in records(elsewhere)
    evidence = Filing.objects.get(message=reply, opportunity=opportunity).evidence
    assert evidence == "In-Reply-To: <deal-1@acme.example>"


def test_a_reply_in_the_same_batch_follows_its_parent(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    # Bob was copied on Ana's mail, so he takes part in that thread (docs/reliability.md C-14).
    parent = mail(
        mailbox, sender="ana@acme.example", cc="bob@partner.example", message_id="p@acme.example"
    )
    child = mail(mailbox, sender="bob@partner.example", in_reply_to="p@acme.example")
    child.date = parent.date.replace(year=parent.date.year + 1)
    child.save()

    file(child, parent)

    assert ("contact", ana.pk, "thread") in filed(child)


def test_a_reply_filed_before_its_parent_inherits_once_the_parent_is_filed(mailbox):
    """Mail is not always filed in the order it was written (a sync's filing chunks run as
    separate tasks; INBOX may be synced before Sent): the parent's records reach its replies,
    and theirs, when the parent is filed after them (connector/filing/apply.py)."""
    ana = f.ContactFactory(emails=["ana@acme.example"])
    parent = mail(
        mailbox, sender="ana@acme.example", cc="bob@partner.example", message_id="p@acme.example"
    )
    reply = mail(
        mailbox,
        sender="bob@partner.example",
        message_id="r@partner.example",
        in_reply_to="p@acme.example",
    )
    answer = mail(mailbox, sender="bob@partner.example", in_reply_to="r@partner.example")
    file(reply)
    file(answer)
    assert records(reply) == records(answer) == set()
    assert "unfiled" in triage(answer)

    report = file(parent)

    assert ("contact", ana.pk, "sender") in filed(parent)
    assert ("contact", ana.pk, "thread") in filed(reply)
    assert ("contact", ana.pk, "thread") in filed(answer)
    assert Filing.objects.get(message=answer, contact=ana).evidence == (
        "In-Reply-To: <r@partner.example>"
    )
    # Placed now, so out of the unfiled queue; counted once, as the parent's batch.
    assert triage(answer) == set()
    assert report.messages == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("held", ["reply", "parent"])
def test_a_reply_and_its_parent_filed_at_the_same_moment(mailbox, held):
    """Two worker processes file a reply's batch and its parent's at once: one batch is still
    open (held at its end by a receiver of mail_filed, as a slow batch would be) while the
    other runs from start to commit, so neither sees the other's filings while deciding. The
    one that commits second passes the parent's records on (connector/filing/apply.py)."""
    MatchingSettings.load()  # the settings row exists, as in any real database
    ana = f.ContactFactory(emails=["ana@acme.example"])
    parent = mail(
        mailbox, sender="ana@acme.example", cc="bob@partner.example", message_id="s@acme.example"
    )
    reply = mail(mailbox, sender="bob@partner.example", in_reply_to="s@acme.example")
    held_id, other_id = (reply.pk, parent.pk) if held == "reply" else (parent.pk, reply.pk)
    holding, release = threading.Event(), threading.Event()

    def hold(sender, message_ids, **kwargs):
        if message_ids == [held_id]:
            holding.set()
            release.wait(30)

    def file_in_a_worker(pk):
        try:
            apply.file_batch(message_ids=[pk])
        finally:
            connections.close_all()

    mail_filed.connect(hold, weak=False)
    slow = threading.Thread(target=file_in_a_worker, args=(held_id,))
    slow.start()
    try:
        assert holding.wait(30)
        quick = threading.Thread(target=file_in_a_worker, args=(other_id,))
        quick.start()
        quick.join(30)
        assert not quick.is_alive()  # it did not wait for the open batch
        assert ("contact", ana.pk, "thread") not in filed(reply)
    finally:
        release.set()
        slow.join(30)
        mail_filed.disconnect(hold)

    assert ("contact", ana.pk, "thread") in filed(reply)


def test_a_person_who_unlinked_a_reply_is_not_overruled_by_its_late_parent(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    parent = mail(
        mailbox, sender="ana@acme.example", cc="bob@partner.example", message_id="u@acme.example"
    )
    reply = mail(mailbox, sender="bob@partner.example", in_reply_to="u@acme.example")
    file(reply)
    f.FilingFactory(message=reply, contact=ana, rule="manual", unlinked_at=timezone.now())

    file(parent)

    assert ("contact", ana.pk, "thread") not in filed(reply)


def test_forged_subject_reference_from_a_stranger_goes_to_triage(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    ticket = f.TicketFactory(contact=ana)
    forged = mail(mailbox, sender="mallory@evil.example", subject=f"Re: [{ticket.reference}] hi")

    file(forged)

    assert ("ticket", ticket.pk) not in records(forged)
    assert triage(forged) == {"foreign_reference"}


def test_subject_reference_from_a_participant_joins_the_ticket(mailbox, settings):
    acme = f.AccountFactory()
    ana = f.ContactFactory(emails=["ana@acme.example"], account=acme)
    colleague = f.ContactFactory(emails=["cole@acme.example"], account=acme)
    staff = f.StaffEmailFactory(email="olivia@relay.test")
    ticket = f.TicketFactory(contact=ana, account=acme)
    # Staff identity needs an authenticated From (docs/reliability.md C-18); the customers'
    # mail keeps today's rule and needs none.
    settings.RELAY_AUTHSERV_IDS = ["mx.relay.test"]
    authenticated = {"authentication-results": ["mx.relay.test; dkim=pass header.d=relay.test"]}
    messages = [
        mail(
            mailbox,
            sender=address,
            subject=f"Re: [{ticket.reference}] printer",
            headers=authenticated if address == staff.email else {},
        )
        for address in ("ana@acme.example", "cole@acme.example", staff.email)
    ]

    file(*messages)

    for message in messages:
        assert ("ticket", ticket.pk, "subject_reference") in filed(message)
        assert not triage(message)
    assert colleague.pk in {pk for t, pk in records(messages[1]) if t == "contact"}


@pytest.mark.parametrize("forged_first", [False, True], ids=["after", "before-the-mail"])
def test_forged_in_reply_to_pointing_at_another_customers_ticket(mailbox, forged_first):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    ticket = f.TicketFactory(contact=ana)
    theirs = mail(mailbox, sender="ana@acme.example", message_id="ana-1@acme.example")
    forged = mail(mailbox, sender="mallory@evil.example", in_reply_to="ana-1@acme.example")

    if forged_first:
        # Filed before the mail it claims to answer: passing that mail's records on to its
        # earlier replies (connector/filing/apply.py) applies the same checks.
        file(forged)
        f.FilingFactory(message=theirs, ticket=ticket, rule="new_ticket")
        file(theirs)
    else:
        f.FilingFactory(message=theirs, ticket=ticket, rule="new_ticket")
        file(forged)
        assert triage(forged) == {"foreign_reference"}

    assert ("ticket", ticket.pk) in records(theirs)
    assert ("ticket", ticket.pk) not in records(forged)
    assert ("contact", ana.pk) not in records(forged)


def test_our_signed_token_files_a_reply_and_a_forged_one_is_triaged(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    ticket = f.TicketFactory(contact=ana)
    ours = tokens.make_message_id(ticket)
    forged_id = ours.replace(ours.split(".")[2][:20], "a" * 20)
    reply = mail(mailbox, sender="ana@acme.example", in_reply_to=ours)
    forged = mail(mailbox, sender="ana@acme.example", in_reply_to=forged_id)
    stranger = mail(mailbox, sender="mallory@evil.example", in_reply_to=ours)

    file(reply, forged, stranger)

    assert ("ticket", ticket.pk, "token") in filed(reply)
    assert ("ticket", ticket.pk) not in records(forged)
    assert "forged" in forged.triage_entries.get().details
    assert ("ticket", ticket.pk) not in records(stranger)
    assert triage(stranger) == {"foreign_reference"}


def test_spoofed_sender_is_filed_but_flagged_and_cannot_use_a_reference(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    ticket = f.TicketFactory(contact=ana)
    headers = {"authentication-results": "mx.relay.test; spf=fail smtp.mailfrom=acme.example"}
    spoofed = mail(
        mailbox, sender="ana@acme.example", subject=f"[{ticket.reference}]", headers=headers
    )
    # A pass for no named domain proves nothing about this From (docs/reliability.md C-17).
    forged_header_only = mail(
        mailbox,
        sender="ana@acme.example",
        headers={"authentication-results": "mx.relay.test; dmarc=pass; spf=pass"},
    )

    file(spoofed, forged_header_only)

    filing = Filing.objects.get(message=spoofed, contact=ana)
    assert filing.sender_unverified and "unverified sender" in filing.evidence
    assert ("ticket", ticket.pk) not in records(spoofed)
    assert triage(spoofed) == {"foreign_reference"}
    flagged = Filing.objects.get(message=forged_header_only, contact=ana)
    assert flagged.sender_unverified and "nothing passed for acme.example" in flagged.evidence


# --- people's filings are final -------------------------------------------------------------


def test_a_manual_unlink_survives_a_rematch(mailbox):
    from inbox.services.qualify import message_unlink

    user = f.UserFactory()
    ana = f.ContactFactory(emails=["ana@acme.example"])
    message = mail(mailbox, sender="ana@acme.example", message_id="u1@acme.example")
    file(message)
    message_unlink(user=user, filing=Filing.objects.get(message=message, contact=ana))
    reply = mail(mailbox, sender="ana@acme.example", in_reply_to="u1@acme.example")

    file(message)
    crm_services.contact_set_emails(contact=ana, emails=["ana@acme.example", "a2@acme.example"])
    from connector.filing.refile import refile_for_addresses

    refile_for_addresses(emails=["ana@acme.example"])

    assert ("contact", ana.pk) not in records(message)
    kept = Filing.objects.get(message=message, contact=ana)
    assert kept.unlinked_by == user and kept.unlinked_at is not None
    file(reply)
    assert ("contact", ana.pk, "sender") in filed(reply)  # the reply itself is Ana's


# --- bounded queries -------------------------------------------------------------------------


def _batch(mailbox, size):
    messages = []
    for i in range(size):
        n = i % 10
        messages.append(
            mail(
                mailbox,
                sender=f"person{n}@acme{n}.example",
                to=["sales@relay.test", f"other{i}@acme{n}.example"],
                cc=[f"cc{i}@partner.example"],
                subject=f"About [TKT-{1000 + n}]" if i % 3 == 0 else f"Question {i}",
                in_reply_to=f"parent{i % 7}@acme.example" if i % 2 else "",
            )
        )
    return messages


def _count_filing_queries(messages) -> int:
    with CaptureQueriesContext(connection) as queries:
        file(*messages)
    return len(queries)


def test_filing_a_batch_costs_the_same_queries_for_20_and_200_messages(mailbox):
    MatchingSettings.load()  # the settings row exists (its creation is a one-off)
    for n in range(10):
        account = f.AccountFactory(domains=[f"acme{n}.example"])
        contact = f.ContactFactory(emails=[f"person{n}@acme{n}.example"], account=account)
        f.LeadFactory(emails=[f"cc{n}@partner.example"])
        f.TicketFactory(contact=contact, account=account)
    for p in range(7):
        parent = mail(mailbox, sender="person0@acme0.example", message_id=f"parent{p}@acme.example")
        f.FilingFactory(message=parent, contact=Contact.objects.first())
    small = _batch(mailbox, 20)
    large = _batch(mailbox, 200)

    small_count = _count_filing_queries(small)
    large_count = _count_filing_queries(large)

    assert small_count == large_count, (small_count, large_count)
    print(f"filing queries: 20 messages {small_count}, 200 messages {large_count}")
    # 27: the batch's transaction, then the look at replies filed before their parents in a
    # transaction of its own once it has committed (connector/filing/apply.py).
    assert large_count <= 27
    assert Filing.objects.filter(message__in=large).count() >= 400


def test_a_sender_without_spf_or_dkim_is_flagged_but_keeps_its_references(mailbox):
    ana = f.ContactFactory(emails=["ana@acme.example"])
    ticket = f.TicketFactory(contact=ana)
    headers = {"authentication-results": "mx.relay.test; spf=none; dkim=none"}
    message = mail(
        mailbox, sender="ana@acme.example", subject=f"Re: [{ticket.reference}]", headers=headers
    )

    file(message)

    assert ("ticket", ticket.pk, "subject_reference") in filed(message)
    assert Filing.objects.get(message=message, ticket=ticket).sender_unverified


def test_first_sync_history_does_not_flood_triage(mailbox):
    old = mail(mailbox, sender="someone@nowhere.example")

    file(old, initial=True)

    assert not triage(old)


def test_mail_between_our_own_mailboxes_creates_no_contacts():
    f.SharedMailboxFactory(email_address="billing@relay.test")
    sales = f.SharedMailboxFactory(email_address="sales@relay.test", create_contacts=True)
    message = mail(sales, sender="billing@relay.test", to="sales@relay.test")

    file(message)

    assert not Contact.objects.exists()
