"""`manage.py demo_data`: what `make run` loads on every start."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from crm import services as crm_services
from crm.models import Account, AccountDomain, Contact, ContactEmail, Lead, Opportunity, Ticket
from demo.management.commands import demo_data as demo
from inbox.models import Location, Mailbox, Message
from inbox.permissions import readable_mailboxes, readable_messages

pytestmark = pytest.mark.django_db

MODELS = [
    get_user_model(),
    Account,
    AccountDomain,
    Contact,
    ContactEmail,
    Lead,
    Ticket,
    Opportunity,
    Mailbox,
    Message,
    Location,
]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def load() -> str:
    out, err = StringIO(), StringIO()
    call_command("demo_data", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_running_twice_changes_nothing():
    first_output = load()
    first = counts()
    second_output = load()

    assert counts() == first
    assert "created" in first_output
    assert "nothing added" in second_output
    # The sizes the demo promises: enough rows to page and search through.
    assert first["User"] == 4
    assert first["Account"] >= 15
    assert first["Contact"] >= 40
    assert first["Lead"] >= 10
    assert first["Ticket"] >= 12
    assert first["Opportunity"] == 8
    assert first["Mailbox"] == 2
    assert first["Message"] == demo.DEMO_MAIL_COUNT


def test_demo_user_can_sign_in_and_use_the_admin(client):
    output = load()

    assert "password 'demo'" in output
    assert client.login(username="demo", password="demo")
    assert client.get("/admin/").status_code == 200


def test_records_are_linked_like_real_ones():
    load()

    # One contact with two addresses; several contacts share their account's domain.
    assert any(c.emails.count() == 2 for c in Contact.objects.all())
    acme = Account.objects.get(name="Acme Logistics Ltd")
    assert acme.contacts.count() >= 2
    assert Account.objects.get(name="Northwind Traders").domains.count() == 2
    # One lead converted into a contact and an account.
    converted = Lead.objects.get(status=Lead.Status.CONVERTED)
    assert converted.converted_contact.account == converted.converted_account
    assert set(Ticket.objects.values_list("status", flat=True)) >= {"open", "pending", "resolved"}
    assert Ticket.objects.filter(assignee__isnull=False).exists()
    assert Opportunity.objects.filter(amount__gt=0).count() == Opportunity.objects.count()


def test_ticket_references_in_the_mail_name_the_tickets_about_that_mail():
    load()

    expected = demo.mail_tickets(demo.demo_mail())
    assert len(expected) >= 10
    for number, subject, customer in expected:
        ticket = Ticket.objects.get(number=number)
        assert ticket.subject == subject
        if ticket.contact:
            assert ticket.contact.emails.filter(email=customer).exists()


def test_mailboxes_are_granted_hold_the_mail_and_never_connect():
    load()
    users = get_user_model().objects.all()

    support = Mailbox.objects.get(kind=Mailbox.Kind.SHARED)
    for user in users:
        assert readable_mailboxes(user).filter(pk=support.pk).exists()
        assert user.staff_emails.exists()
    demo_user = users.get(username="demo")
    # The mailbox with the demo mail opens first, for everyone; demo also has one of its own.
    for user in users:
        assert user.primary_mailbox.mailbox == support
    assert Mailbox.objects.filter(kind=Mailbox.Kind.PERSONAL, owner=demo_user).exists()
    assert readable_messages(demo_user).filter(mailbox=support).count() == demo.DEMO_MAIL_COUNT
    assert set(support.folders.values_list("name", flat=True)) == {"INBOX", "Sent"}
    for mailbox in Mailbox.objects.all():
        assert mailbox.state == Mailbox.State.PAUSED
        assert mailbox.imap_host.endswith(".invalid")
        assert not mailbox.create_tickets


def test_changes_made_in_the_app_survive_a_rerun():
    load()
    demo_user = get_user_model().objects.get(username="demo")
    demo_user.set_password("a-better-password")
    demo_user.save()
    Account.objects.filter(name="Tailspin Toys").update(phone="+44 161 496 0000")

    load()

    demo_user.refresh_from_db()
    assert demo_user.check_password("a-better-password")
    assert Account.objects.get(name="Tailspin Toys").phone == "+44 161 496 0000"


def test_no_mail_when_existing_tickets_would_take_its_references():
    crm_services.ticket_create(subject="A ticket from before the demo")

    output = load()

    assert "Demo mail not imported" in output
    assert Message.objects.count() == 0
    assert Ticket.objects.count() > 1


def test_refuses_to_run_in_production(settings):
    settings.PRODUCTION = True

    with pytest.raises(CommandError, match="production"):
        call_command("demo_data", stdout=StringIO())
    assert Account.objects.count() == 0


def test_the_team_has_written_notes_and_mentioned_each_other():
    from notes.models import Mention, Note
    from notifications.models import Kind, Notification

    load()

    kinds = set(Note.objects.values_list("target_type", flat=True))
    assert {"ticket", "thread", "account", "lead"} <= kinds
    assert Mention.objects.filter(user__username="demo").exists()
    demo_unread = Notification.objects.filter(
        recipient__username="demo", kind=Kind.MENTIONED, read_at__isnull=True
    )
    assert demo_unread.count() >= 2  # the newcomer's bell has something in it
    notes, notifications = Note.objects.count(), Notification.objects.count()
    load()
    assert (Note.objects.count(), Notification.objects.count()) == (notes, notifications)


def test_the_support_inbox_is_lived_in_and_stays_as_the_team_left_it():
    """Some conversations are everyone's own, some unassigned, some waiting, snoozed or done,
    with who did it on their timelines (docs/product.md §7.8); a rerun changes none of it."""
    from inbox.models import Thread, ThreadEvent
    from inbox.selectors.conversations import event_text, view_counts

    load()
    support = Mailbox.objects.get(kind=Mailbox.Kind.SHARED)
    threads = Thread.objects.filter(mailbox=support)
    assert set(threads.values_list("status", flat=True)) == {"open", "waiting", "snoozed", "done"}
    owners = set(threads.exclude(assignee=None).values_list("assignee__username", flat=True))
    assert owners == {"demo", "lukas", "sofia", "daniel"}
    for username in owners:
        user = get_user_model().objects.get(username=username)
        counts = view_counts(mailbox=support, user=user)
        assert counts["unassigned"] >= 3 and counts["waiting"] >= 2 and counts["snoozed"] >= 1
        assert counts["mine"] + counts["done"] >= 1
    texts = {event_text(e) for e in ThreadEvent.objects.select_related("actor")}
    assert "Sofia Álvarez assigned this to Lukas Berger" in texts
    assert any(t.startswith("Snoozed until") for t in texts)

    Thread.objects.filter(mailbox=support, status="snoozed").update(status="done")
    before = (ThreadEvent.objects.count(), list(threads.values_list("pk", "status", "assignee")))
    load()
    after = (ThreadEvent.objects.count(), list(threads.values_list("pk", "status", "assignee")))
    assert after == before


def test_the_demo_outbox_holds_a_failed_send_and_one_whose_outcome_is_unknown(client):
    from django.urls import reverse

    from inbox.models import OutboxEntry

    load()
    load()  # idempotent: still one of each
    states = sorted(OutboxEntry.objects.values_list("state", flat=True))
    assert states == [OutboxEntry.State.FAILED, OutboxEntry.State.VERIFY]
    assert client.login(username="demo", password="demo")
    html = client.get(reverse("inbox:outbox") + "?show=problems").content.decode()
    assert "does not exist" in html and "nobody knows whether it went out" in html


def test_the_demo_support_inbox_has_reports_to_show(client):
    """The demo's mail runs up to the day before it is loaded, whatever the date: the first look
    at Reports (the last 30 days) has something in every figure (docs/product.md §7.11)."""
    import re

    load()
    newest = Message.objects.order_by("-date").values_list("date", flat=True).first()
    assert newest.date() < demo.demo_start().date()
    client.force_login(get_user_model().objects.get(username="demo"))
    html = client.get("/inbox/reports/").content.decode()
    assert "The newest customer message is from" not in html
    figures = dict(re.findall(r'data-figure="(\w+)">(\d+)<', html))
    assert all(int(figures[k]) >= 10 for k in ("received", "replied", "closed")), figures
    durations = re.search(r'id="table-durations".*?</table>', html, re.S)[0]
    assert durations.count(" min<") + durations.count(" h<") >= 4  # medians and p90s, no "—"
    assert "—" not in durations


def test_resuming_a_demo_mailbox_says_it_has_no_server_and_stays_paused(client):
    """Resume on a demo mailbox (no server behind it) says so instead of "Syncing" for ever
    while the worker fails (docs/reliability.md C-36)."""
    from django.urls import reverse

    load()
    support = Mailbox.objects.get(email_address=demo.SUPPORT_ADDRESS)
    assert client.login(username="demo", password="demo")
    response = client.post(reverse("inbox:mailbox_resume", args=[support.pk]), follow=True)
    html = response.content.decode()
    assert "has no mail server behind it" in html and "syncs again" not in html
    support.refresh_from_db()
    assert support.state == Mailbox.State.PAUSED and support.sync_requested_at is None
