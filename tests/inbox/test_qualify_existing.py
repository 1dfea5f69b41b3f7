"""Qualify (docs/product.md §4.6): the sender's existing contact or lead is offered before
"create", creating one with an address that exists files on it instead, the quick-create form
shows its field errors, and an unlink can be undone."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from crm.models import Contact, Lead
from inbox.models import Filing
from tests import factories as f
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
DIALOG = {"HX-Request": "true", "HX-Target": "qualify-content"}


@pytest.fixture
def olivia(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def inbox(personal_mailbox):
    return mailkit.folders(personal_mailbox)["inbox"]


def test_the_senders_contact_comes_before_create(olivia, inbox):
    ana = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@customer.example"])
    (message,) = mailkit.conversation(inbox, sender="ana@customer.example", name="Ana Lopez")
    html = olivia.get(reverse("inbox:qualify_dialog", args=[message.pk]), headers=HTMX)
    html = html.content.decode()
    assert "The sender is already in Relay" in html
    assert html.index("The sender is already in Relay") < html.index("New from the sender")
    assert f'value="contact:{ana.pk}"' in html
    assert "Already has ana@customer.example" in html
    assert "is already on Ana Lopez" in html


def test_creating_a_contact_or_lead_with_an_existing_address_files_on_it(olivia, inbox):
    ana = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@customer.example"])
    lead = f.LeadFactory(first_name="Ana", last_name="L", emails=["ana@customer.example"])
    (message,) = mailkit.conversation(inbox, sender="ana@customer.example", name="Ana Lopez")
    url = reverse("inbox:qualify_link", args=[message.pk])
    for kind, record in (("contact", ana), ("lead", lead)):
        response = olivia.post(
            url, {"create": kind, "first_name": "Ana", "last_name": "Lopez"}, headers=HTMX
        )
        assert f"{record} already has ana@customer.example: filed there" in (
            response.content.decode()
        )
        assert Filing.objects.filter(message=message, **{kind: record}).exists()
    assert Contact.objects.count() == 1 and Lead.objects.count() == 1


def test_quick_create_shows_its_field_errors(olivia, inbox):
    (message,) = mailkit.conversation(inbox, sender="new@customer.example")
    response = olivia.post(
        reverse("inbox:qualify_link", args=[message.pk]),
        {"create": "contact", "first_name": "A" * 150, "last_name": "B"},
        headers=HTMX,
    )
    html = response.content.decode()
    assert "First name: Ensure this value has at most 100 characters" in html
    assert "is-invalid" in html
    assert not Contact.objects.exists()


def test_unlink_can_be_undone_in_the_dialog_in_the_conversation_and_without_javascript(
    olivia, inbox
):
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez")
    (message,) = mailkit.conversation(inbox)
    filing = f.FilingFactory(message=message, contact=contact, evidence="From: ana@x")
    unlink = reverse("inbox:filing_unlink", args=[filing.pk])
    relink = reverse("inbox:filing_relink", args=[filing.pk])

    # In the Qualify dialog: the answer says what happened and offers Undo.
    html = olivia.post(unlink, headers=DIALOG).content.decode()
    assert "Removed from Ana Lopez." in html and f'hx-post="{relink}"' in html
    html = olivia.post(relink, headers=DIALOG).content.decode()
    assert "Back on Ana Lopez." in html
    filing.refresh_from_db()
    # Back as the rules made it, not turned into a person's filing.
    assert filing.unlinked_at is None and filing.rule == "sender" and filing.by_person is None

    # A chip in the conversation: the toast's Undo gets its URL from the trigger.
    response = olivia.post(unlink, headers=HTMX)
    trigger = json.loads(response["HX-Trigger"])
    assert trigger["relay:undo"] == {"text": "Removed from Ana Lopez.", "url": relink}
    olivia.post(relink, headers=HTMX)
    filing.refresh_from_db()
    assert filing.unlinked_at is None

    # Without JavaScript: the Qualify page offers the Undo form.
    response = olivia.post(unlink, follow=True)
    html = response.content.decode()
    assert "Removed from Ana Lopez." in html and f'action="{relink}"' in html
    olivia.post(relink)
    filing.refresh_from_db()
    assert filing.unlinked_at is None


def test_undo_is_the_same_404_for_someone_who_cannot_read_the_message(client, outsider, inbox):
    (message,) = mailkit.conversation(inbox)
    filing = f.FilingFactory(message=message, contact=f.ContactFactory())
    Filing.objects.filter(pk=filing.pk).update(unlinked_at=message.date)
    client.force_login(outsider)
    assert client.post(reverse("inbox:filing_relink", args=[filing.pk])).status_code == 404
    filing.refresh_from_db()
    assert filing.unlinked_at is not None
