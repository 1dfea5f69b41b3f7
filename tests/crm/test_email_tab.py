"""The Email tab on a record: mail filed on it, from mailboxes the viewer may read, only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from inbox.selectors.records import messages_for_record
from tests import factories as f

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _tab(client, record_type, pk, **params):
    response = client.get(reverse("inbox:email_tab", args=[record_type, pk]), params, headers=HTMX)
    assert response.status_code == 200
    return response.content.decode()


def _at(day):
    return dt.datetime(2026, 3, day, 9, 0, tzinfo=dt.UTC)


def test_empty_state(user_client):
    contact = f.ContactFactory()
    html = _tab(user_client, "contact", contact.pk)
    assert "No email filed here yet" in html


def test_lists_mail_filed_on_the_record_from_readable_mailboxes_only(
    client, teammate, owner, shared_mailbox, personal_mailbox
):
    contact = f.ContactFactory()
    other = f.ContactFactory()
    # Olivia shares nothing of her personal mail (the privacy levels have their own tests).
    personal_mailbox.privacy = "nothing"
    personal_mailbox.save(update_fields=["privacy"])
    stranger_box = f.SharedMailboxFactory(email_address="sales@relay.test")  # granted to nobody
    older = f.MessageFactory(mailbox=shared_mailbox, subject="Older shared mail", date=_at(1))
    newer = f.MessageFactory(
        mailbox=shared_mailbox,
        subject="Newer shared mail",
        date=_at(5),
        from_name="Ana Lopez",
        from_address="ana@globex.example",
    )
    private = f.MessageFactory(mailbox=personal_mailbox, subject="Olivia private mail", date=_at(3))
    hidden = f.MessageFactory(mailbox=stranger_box, subject="Sales secret", date=_at(4))
    elsewhere = f.MessageFactory(mailbox=shared_mailbox, subject="Filed on someone else")
    unlinked = f.MessageFactory(mailbox=shared_mailbox, subject="Unlinked by a person")
    for message in (older, newer, private, hidden):
        f.FilingFactory(message=message, contact=contact)
    f.FilingFactory(message=elsewhere, contact=other)
    f.FilingFactory(message=unlinked, contact=contact, unlinked_at=timezone.now())

    client.force_login(teammate)
    html = _tab(client, "contact", contact.pk)
    assert "Newer shared mail" in html and "Older shared mail" in html
    assert html.index("Newer shared mail") < html.index("Older shared mail")  # newest first
    assert "Ana Lopez" in html and "support@relay.test" in html
    assert "Sender is a contact" in html  # why it is filed here
    assert "2 messages filed here" in html
    for absent in (
        "Olivia private mail",
        "Sales secret",
        "Filed on someone else",
        "Unlinked by a person",
    ):
        assert absent not in html

    # The owner reads her personal mailbox, and not the shared one she was never granted.
    client.force_login(owner)
    html = _tab(client, "contact", contact.pk)
    assert "Olivia private mail" in html
    assert "Newer shared mail" not in html and "Sales secret" not in html


def test_outsider_sees_the_empty_state(client, outsider, shared_mailbox):
    contact = f.ContactFactory()
    f.FilingFactory(
        message=f.MessageFactory(mailbox=shared_mailbox, subject="Secret"), contact=contact
    )
    client.force_login(outsider)
    html = _tab(client, "contact", contact.pk)
    assert "Secret" not in html and "No email filed here yet" in html


def test_group_grant_is_enough(client, outsider):
    group = f.GroupFactory()
    outsider.groups.add(group)
    mailbox = f.SharedMailboxFactory()
    mailbox.granted_groups.add(group)
    ticket = f.TicketFactory()
    f.FilingFactory(
        message=f.MessageFactory(mailbox=mailbox, subject="Via the team"), ticket=ticket
    )
    client.force_login(outsider)
    assert "Via the team" in _tab(client, "ticket", ticket.pk)


@pytest.mark.parametrize("record_type", ["account", "lead", "ticket", "opportunity"])
def test_every_record_type_has_its_mail(client, teammate, shared_mailbox, record_type):
    record = {
        "account": f.AccountFactory,
        "lead": f.LeadFactory,
        "ticket": f.TicketFactory,
        "opportunity": f.OpportunityFactory,
    }[record_type]()
    f.FilingFactory(
        message=f.MessageFactory(mailbox=shared_mailbox, subject="Filed mail"),
        **{record_type: record},
    )
    client.force_login(teammate)
    assert "Filed mail" in _tab(client, record_type, record.pk)


def test_one_entry_per_message_and_paginated(client, teammate, shared_mailbox, settings):
    settings.RELAY_PAGE_SIZE = 3
    contact = f.ContactFactory()
    for day in range(1, 8):
        f.FilingFactory(
            message=f.MessageFactory(mailbox=shared_mailbox, subject=f"Mail {day}", date=_at(day)),
            contact=contact,
        )
    client.force_login(teammate)
    first = _tab(client, "contact", contact.pk)
    assert [s for s in ("Mail 7", "Mail 6", "Mail 5", "Mail 4") if s in first] == [
        "Mail 7",
        "Mail 6",
        "Mail 5",
    ]
    assert "1–3 of 7" in first
    assert 'hx-target="#email-pane"' in first
    third = _tab(client, "contact", contact.pk, page=3)
    assert "Mail 1" in third and "Mail 2" not in third


def test_selector_returns_each_message_once_newest_first(teammate, shared_mailbox):
    contact = f.ContactFactory()
    first = f.MessageFactory(mailbox=shared_mailbox, date=_at(1))
    second = f.MessageFactory(mailbox=shared_mailbox, date=_at(2))
    undated = f.MessageFactory(mailbox=shared_mailbox, date=None)
    for message in (first, second, undated):
        f.FilingFactory(message=message, contact=contact)
    # Filed on the contact's account as well: still one entry on the contact.
    f.FilingFactory(message=first, account=f.AccountFactory())
    result = list(messages_for_record(user=teammate, record_type="contact", record_id=contact.pk))
    assert result == [second, first, undated]


def test_unknown_record_type_or_missing_record_is_404(user_client):
    url = reverse("inbox:email_tab", args=["mailbox", 1])
    assert user_client.get(url, headers=HTMX).status_code == 404
    url = reverse("inbox:email_tab", args=["contact", 999999])
    assert user_client.get(url, headers=HTMX).status_code == 404


def test_without_javascript_the_tab_is_a_page_with_qualify_on_each_entry(
    client, teammate, shared_mailbox
):
    """docs/product.md §7.4: the record page's Email tab is a link; opened as a page it shows
    the record, its mail, and Qualify on each message the viewer may read."""
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez")
    message = f.MessageFactory(mailbox=shared_mailbox, subject="Quote please")
    f.FilingFactory(message=message, contact=contact)
    client.force_login(teammate)
    record_page = client.get(contact.get_absolute_url()).content.decode()
    url = reverse("inbox:email_tab", args=["contact", contact.pk])
    assert f'href="{url}"' in record_page
    page = client.get(url).content.decode()
    assert "<html" in page and "Ana Lopez" in page and "Quote please" in page
    assert f'href="{reverse("inbox:qualify_dialog", args=[message.pk])}"' in page


def test_subjects_are_escaped(client, teammate, shared_mailbox):
    contact = f.ContactFactory()
    f.FilingFactory(
        message=f.MessageFactory(
            mailbox=shared_mailbox, subject="<script>alert(1)</script>", from_name="<b>Eve</b>"
        ),
        contact=contact,
    )
    client.force_login(teammate)
    html = _tab(client, "contact", contact.pk)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>Eve</b>" not in html
