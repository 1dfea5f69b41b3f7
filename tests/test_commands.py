"""`manage.py demo_data`: what `make run` loads on every start."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from crm.models import Account, AccountDomain, Contact, ContactEmail, Lead, Opportunity, Ticket
from inbox.models import Mailbox
from inbox.permissions import readable_mailboxes

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
]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def demo_data() -> str:
    out = StringIO()
    call_command("demo_data", stdout=out)
    return out.getvalue()


def test_running_twice_changes_nothing():
    first_output = demo_data()
    first = counts()
    second_output = demo_data()

    assert counts() == first
    assert "created" in first_output
    assert "nothing added" in second_output
    # The sizes the demo promises: enough rows to page and search through.
    assert first["User"] == 3
    assert first["Account"] >= 15
    assert first["Contact"] >= 40
    assert first["Lead"] >= 10
    assert first["Ticket"] >= 12
    assert first["Opportunity"] >= 8
    assert first["Mailbox"] == 2


def test_demo_user_can_sign_in_and_use_the_admin(client):
    output = demo_data()

    assert "password 'demo'" in output
    assert client.login(username="demo", password="demo")
    assert client.get("/admin/").status_code == 200


def test_records_are_linked_like_real_ones():
    demo_data()

    # One contact with two addresses; several contacts share their account's domain.
    assert any(c.emails.count() == 2 for c in Contact.objects.all())
    northwind = Account.objects.get(name="Northwind Traders")
    assert northwind.contacts.count() >= 2
    assert northwind.domains.count() == 2
    # One lead converted into a contact and an account.
    converted = Lead.objects.get(status=Lead.Status.CONVERTED)
    assert converted.converted_contact.account == converted.converted_account
    assert set(Ticket.objects.values_list("status", flat=True)) >= {"open", "pending", "resolved"}
    assert Ticket.objects.filter(assignee__isnull=False).exists()
    assert Opportunity.objects.filter(amount__gt=0).count() == Opportunity.objects.count()


def test_mailboxes_are_granted_and_never_connect():
    demo_data()
    users = get_user_model().objects.all()

    support = Mailbox.objects.get(kind=Mailbox.Kind.SHARED)
    for user in users:
        assert readable_mailboxes(user).filter(pk=support.pk).exists()
        assert user.staff_emails.exists()
    demo = users.get(username="demo")
    assert demo.primary_mailbox.mailbox.owner == demo
    for mailbox in Mailbox.objects.all():
        assert mailbox.state == Mailbox.State.PAUSED
        assert mailbox.imap_host.endswith(".invalid")


def test_changes_made_in_the_app_survive_a_rerun():
    demo_data()
    demo = get_user_model().objects.get(username="demo")
    demo.set_password("a-better-password")
    demo.save()
    Account.objects.filter(name="Coho Winery").update(phone="+1 707 555 0000")

    demo_data()

    demo.refresh_from_db()
    assert demo.check_password("a-better-password")
    assert Account.objects.get(name="Coho Winery").phone == "+1 707 555 0000"


def test_refuses_to_run_in_production(settings):
    settings.PRODUCTION = True

    with pytest.raises(CommandError, match="production"):
        call_command("demo_data", stdout=StringIO())
    assert Account.objects.count() == 0
