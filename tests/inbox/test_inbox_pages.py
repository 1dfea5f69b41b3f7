"""The inbox pages as a user sees them: Inbox (switcher, folders, list, search, filters,
polling), the conversation and its actions, Qualify, Triage, preferences and the Email tab's
privacy levels; and every page in a bounded number of queries (3 vs 300 messages)."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from crm.models import Contact, Lead
from inbox.models import (
    Filing,
    Location,
    Mailbox,
    Message,
    PendingChange,
    PrimaryMailbox,
    TriageEntry,
    UserPreferences,
)
from inbox.views.htmx import CHANGED
from tests import factories as f
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _get(client, url, status=200, **headers):
    response = client.get(url, headers=headers)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


@pytest.fixture
def box(owner, personal_mailbox):
    """Olivia's personal mailbox with its folders."""
    return {"mailbox": personal_mailbox, **mailkit.folders(personal_mailbox)}


@pytest.fixture
def olivia(client, owner):
    client.force_login(owner)
    return client


# --- Inbox -----------------------------------------------------------------------------------


def test_primary_mailbox_first_and_selected(olivia, owner, box):
    other = f.SharedMailboxFactory(email_address="aaa-support@relay.test", display_name="Support")
    other.granted_users.add(owner)
    mailkit.folders(other)
    PrimaryMailbox.objects.create(user=owner, mailbox=box["mailbox"])
    mailkit.conversation(box["inbox"], subject="Hello from Globex")
    html = _get(olivia, reverse("inbox:inbox_page"))
    # Primary first in the switcher (even though "aaa-support" sorts first) and selected.
    assert html.index("olivia@relay.test") < html.index("Support")
    assert html.count(">Primary</span>") == 1
    assert "Hello from Globex" in html
    # Switching shows the other mailbox's (empty) inbox.
    html = _get(olivia, reverse("inbox:inbox_page") + f"?mailbox={other.pk}")
    assert "Hello from Globex" not in html and "All clear" in html


def test_folders_with_unread_counts(olivia, box):
    mailkit.conversation(box["inbox"], size=3, seen=False)
    mailkit.conversation(box["inbox"], seen=False)
    mailkit.conversation(box["archive"], seen=True)
    html = _get(olivia, reverse("inbox:inbox_page"))
    assert 'title="4 unread"' in html
    assert "Archive" in html and "Sent" in html


def test_list_is_newest_first_and_paginated_at_the_users_page_size(olivia, owner, box):
    for day in range(1, 8):
        mailkit.conversation(box["inbox"], subject=f"Day {day} mail", day=day)
    UserPreferences.objects.create(user=owner, emails_per_page=5)
    html = _get(olivia, reverse("inbox:inbox_page"))
    assert "Day 7 mail" in html and "Day 3 mail" in html and "Day 2 mail" not in html
    assert html.index("Day 7 mail") < html.index("Day 6 mail")
    assert "7 conversations" in html
    html = _get(olivia, reverse("inbox:inbox_page") + "?page=2")
    assert "Day 2 mail" in html and "Day 7 mail" not in html


def test_search_over_subject_people_and_text(olivia, box):
    mailkit.conversation(box["inbox"], subject="Invoice overdue", sender="ana@globex.example")
    mailkit.conversation(box["inbox"], subject="Lunch?", sender="bob@initech.example", name="Bob")
    (quote,) = mailkit.conversation(box["inbox"], subject="Your quote")
    Message.objects.filter(pk=quote.pk).update(text_body="The pricing for the turbo encabulator")
    url = reverse("inbox:inbox_page")
    for search, expected, absent in [
        ("invoice", "Invoice overdue", "Lunch?"),
        ("globex", "Invoice overdue", "Lunch?"),  # part of an address
        ("Bob", "Lunch?", "Invoice overdue"),  # a name
        ("encabulator", "Your quote", "Lunch?"),  # the text
    ]:
        html = _get(olivia, f"{url}?q={search}", **HTMX, **{"HX-Target": "thread-list"})
        assert expected in html and absent not in html, search
        assert "<nav" not in html.split('id="thread-list"')[0]  # only the list partial


def test_a_3000_character_search_is_shortened_and_the_inbox_says_so(olivia, box):
    """docs/product.md §7.1, §7.2: the inbox's search box, in a mailbox and in All mailboxes,
    searches the beginning of a pasted page of text and says so; it used to drop the search
    silently (the form refused it) and say nothing."""
    mailkit.conversation(box["inbox"], subject="Invoice overdue", sender="ana@globex.example")
    mailkit.conversation(box["inbox"], subject="Lunch?", sender="bob@initech.example")
    pasted = "invoice" + " " * 193 + "x" * 2800  # 3,000 characters; the first 200 say "invoice"
    assert len(pasted) == 3000
    notice = "Your search was shortened to its first 200 characters."
    for mailbox in (box["mailbox"].pk, "all"):
        url = reverse("inbox:inbox_page") + f"?mailbox={mailbox}"
        page = _get(olivia, f"{url}&{urlencode({'q': pasted})}")
        assert notice in page
        assert "Invoice overdue" in page and "Lunch?" not in page
        partial = _get(
            olivia, f"{url}&{urlencode({'q': pasted})}", **HTMX, **{"HX-Target": "thread-list"}
        )
        assert notice in partial
        assert notice not in _get(olivia, f"{url}&q=invoice")


def test_filters(olivia, box):
    contact = f.ContactFactory()
    (unread,) = mailkit.conversation(box["inbox"], subject="Unread one", seen=False, day=1)
    (filed,) = mailkit.conversation(box["inbox"], subject="Filed one", day=2)
    f.FilingFactory(message=filed, contact=contact)
    mailkit.conversation(box["inbox"], subject="With file", has_attachments=True, day=3)
    mailkit.conversation(box["inbox"], subject="Old one", day=-20)
    url = reverse("inbox:inbox_page")

    def titles(query):
        html = _get(olivia, f"{url}?{query}")
        return {s for s in ("Unread one", "Filed one", "With file", "Old one") if f">{s}<" in html}

    assert titles("unread=on") == {"Unread one"}
    assert titles("unfiled=on") == {"Unread one", "With file", "Old one"}
    assert titles("filed_on=contact") == {"Filed one"}
    assert titles("filed_on=ticket") == set()
    assert titles("attachments=on") == {"With file"}
    assert titles("date_from=2026-05-01") == {"Unread one", "Filed one", "With file"}
    assert titles("date_to=2026-04-30") == {"Old one"}
    assert titles("date_from=not-a-date") == {"Unread one", "Filed one", "With file", "Old one"}


def test_new_mail_appears_through_the_poll(olivia, box):
    mailkit.conversation(box["inbox"], subject="First")
    html = _get(olivia, reverse("inbox:inbox_page"))
    assert 'hx-trigger="every 15s' in html
    since = html.split("since=")[1].split('"')[0].split("&")[0]
    poll = reverse("inbox:inbox_poll") + f"?since={since}"
    response = olivia.get(poll, headers=HTMX)
    assert response.status_code == 204  # nothing new: htmx leaves the page alone
    mailkit.conversation(box["inbox"], subject="Second arrives")
    html = _get(olivia, poll, **HTMX)
    assert "Second arrives" in html and 'id="thread-list"' in html


def test_no_mailbox_says_what_to_do(client, outsider):
    client.force_login(outsider)
    html = _get(client, reverse("inbox:inbox_page"))
    assert "No mailbox yet" in html


def test_nav_has_inbox_and_triage(olivia, box):
    html = _get(olivia, reverse("crm:contact_list"))
    assert f'href="{reverse("inbox:inbox_page")}"' in html
    assert f'href="{reverse("inbox:triage")}"' in html


# --- the conversation ------------------------------------------------------------------------


def test_conversation_shows_messages_and_why_they_are_filed(olivia, owner, box):
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez")
    ticket = f.TicketFactory(subject="Printer on fire")
    first, second = mailkit.conversation(box["inbox"], size=2, subject="Printer <b>help</b>")
    f.FilingFactory(message=first, contact=contact, rule=Filing.Rule.SENDER)
    f.FilingFactory(message=second, ticket=ticket, rule=Filing.Rule.SUBJECT_REFERENCE)
    manual = f.FilingFactory(message=second, contact=contact, rule="manual", by_person=owner)
    Filing.objects.filter(pk=manual.pk).update(created_at=dt.datetime(2026, 5, 3, tzinfo=dt.UTC))
    html = _get(olivia, reverse("inbox:conversation", args=[second.pk]), **HTMX)
    assert "Sender is a contact" in html
    assert "Ticket reference in subject" in html
    assert "Filed by Olivia, 3 May" in html
    assert "Printer &lt;b&gt;help&lt;/b&gt;" in html and "<b>help</b>" not in html
    assert 'id="conversation"' in html and "<nav" not in html  # the partial
    # Opened by its address, it is a page.
    page = _get(olivia, reverse("inbox:conversation", args=[first.pk]))
    assert "<nav" in page and "Sender is a contact" in page


def test_mark_unread_flag_move_delete_queue_server_writes(olivia, box):
    (message,) = mailkit.conversation(box["inbox"], subject="Act on me")
    url = reverse("inbox:message_action", args=[message.pk])

    response = olivia.post(url, {"action": "mark_unread"}, headers=HTMX)
    assert response.status_code == 200 and "inbox:changed" in response["HX-Trigger"]
    message.refresh_from_db()
    assert message.seen is False
    olivia.post(url, {"action": "mark_read"}, headers=HTMX)
    olivia.post(url, {"action": "flag"}, headers=HTMX)
    message.refresh_from_db()
    assert message.seen and message.flagged
    html = olivia.post(url, {"action": "move", "folder": box["archive"].pk}, headers=HTMX)
    assert "Moving to Archive" in html.content.decode()
    olivia.post(url, {"action": "delete"}, headers=HTMX)
    assert list(PendingChange.objects.order_by("pk").values_list("action", flat=True)) == [
        "mark_unread",
        "mark_read",
        "flag",
        "move",
        "delete",
    ]
    assert PendingChange.objects.get(action="move").target_folder == "Archive"
    # Without htmx the action redirects back to the conversation.
    response = olivia.post(url, {"action": "unflag"})
    assert response.status_code == 302
    assert olivia.post(url, {"action": "explode"}).status_code == 400
    # A folder that is not a number (a forged form) is bad input: a clear 400, not a 500.
    for folder in ("abc", ""):
        response = olivia.post(url, {"action": "move", "folder": folder})
        assert response.status_code == 400
        assert response.content.decode() == "Choose a folder to move to."
    assert PendingChange.objects.filter(action="move").count() == 1  # nothing more queued
    other_box = f.FolderFactory(mailbox=f.MailboxFactory())
    response = olivia.post(url, {"action": "move", "folder": other_box.pk})
    assert response.status_code == 404


def test_mark_read_reads_the_whole_conversation(olivia, box):
    messages = mailkit.conversation(box["inbox"], size=3, seen=False)
    olivia.post(
        reverse("inbox:message_action", args=[messages[-1].pk]),
        {"action": "mark_read"},
        headers=HTMX,
    )
    assert not Message.objects.filter(pk__in=[m.pk for m in messages], seen=False).exists()


AUTOREAD = "data-inbox-autoread"  # the pane's "mark read 400 ms after it is shown"


def test_opening_reads_a_conversation_mark_unread_keeps_it_unread(olivia, box):
    """docs/product.md §7.7: the conversation re-drawn after Mark unread (or re-loaded when a
    filing changes, or after a flag) carries no "read me" trigger, which would mark it read
    again 400 ms after the click."""
    _, latest = mailkit.conversation(box["inbox"], size=2, subject="Keep me", seen=False)
    conversation = reverse("inbox:conversation", args=[latest.pk])
    assert AUTOREAD in _get(olivia, conversation, **HTMX)  # opened from the list
    assert AUTOREAD in _get(olivia, conversation)  # opened by its address
    action = reverse("inbox:message_action", args=[latest.pk])
    # What the trigger sends: the conversation is read, and the answer is only the list's cue
    # (the pane already shows the conversation; rendering it again was wasted work).
    assert '"respond": "none"' in _get(olivia, conversation, **HTMX)
    response = olivia.post(action, {"action": "mark_read", "respond": "none"}, headers=HTMX)
    assert response.status_code == 200 and response.content == b""
    assert CHANGED in json.loads(response["HX-Trigger"])
    latest.refresh_from_db()
    assert latest.seen is True

    response = olivia.post(action, {"action": "mark_unread"}, headers=HTMX)
    assert response.status_code == 200 and "Mark unread" in response.content.decode()
    assert AUTOREAD not in response.content.decode()
    assert AUTOREAD not in olivia.post(action, {"action": "flag"}, headers=HTMX).content.decode()
    # The pane re-loading itself (inbox:filed) asks with ?reload=1, as its hx-get says.
    assert f'hx-get="{conversation}?reload=1"' in response.content.decode()
    assert AUTOREAD not in _get(olivia, conversation + "?reload=1", **HTMX)
    # Without htmx, Mark unread lands on the conversation page, which does not read it either.
    response = olivia.post(action, {"action": "mark_unread"})
    assert response.status_code == 302
    assert AUTOREAD not in _get(olivia, response["Location"])
    latest.refresh_from_db()
    assert latest.seen is False
    # Opened again, it reads itself again.
    assert AUTOREAD in _get(olivia, conversation, **HTMX)


# --- Qualify ---------------------------------------------------------------------------------


def test_qualify_suggests_the_senders_records_and_the_rules_alternatives(olivia, box):
    account = f.AccountFactory(name="Globex", domains=["globex.example"])
    contact = f.ContactFactory(
        first_name="Ana", last_name="Lopez", account=account, emails=["ana@globex.example"]
    )
    lead = f.LeadFactory(first_name="Ana", last_name="Lead", emails=["ana@globex.example"])
    other = f.ContactFactory(first_name="Zed", last_name="Alt")
    (message,) = mailkit.conversation(
        box["inbox"],
        subject="About TKT-9999 and more",
        sender="ana@globex.example",
        name="Ana Lopez",
    )
    f.FilingFactory(
        message=message,
        contact=contact,
        alternatives=[{"record_type": "contact", "id": other.pk}],
    )
    html = _get(olivia, reverse("inbox:qualify_dialog", args=[message.pk]), **HTMX)
    assert "Filed on" in html and "Ana Lopez" in html
    suggested = html.split("Suggested")[1].split("Find a record")[0]
    assert "Zed Alt" in suggested  # the rules' alternative
    assert "Globex" in suggested
    assert "Ana Lopez" not in suggested  # already filed there
    # The sender's own lead is offered first, before the suggestions (docs/product.md §4.6).
    existing = html.split("The sender is already in Relay")[1].split("Suggested")[0]
    assert "Ana Lead" in existing and "Ana Lead" not in suggested
    assert 'value="Ana"' in html  # quick-create prefilled from the sender's name
    assert lead.pk


def test_qualify_search_link_unlink_and_quick_create(olivia, box):
    ticket = f.TicketFactory(subject="Broken widget")
    f.ContactFactory(first_name="Wanda", last_name="Widget")
    (message,) = mailkit.conversation(
        box["inbox"], sender="new.person@initech.example", name="New Person"
    )
    search = _get(
        olivia,
        reverse("inbox:qualify_search", args=[message.pk]) + "?q=widget",
        **HTMX,
    )
    assert "Wanda Widget" in search and "Broken widget" in search

    response = olivia.post(
        reverse("inbox:qualify_link", args=[message.pk]),
        {"record": f"ticket:{ticket.pk}"},
        headers=HTMX,
    )
    assert response.status_code == 200 and "inbox:filed" in response["HX-Trigger"]
    filing = Filing.objects.get(message=message, ticket=ticket)
    assert filing.rule == "manual" and filing.by_person.username == "owner"
    assert "Filed on" in response.content.decode()

    response = olivia.post(
        reverse("inbox:qualify_link", args=[message.pk]),
        {"create": "lead", "first_name": "New", "last_name": "Person", "company_name": "Initech"},
        headers=HTMX,
    )
    lead = Lead.objects.get(last_name="Person")
    assert lead.company_name == "Initech"
    assert list(lead.emails.values_list("email", flat=True)) == ["new.person@initech.example"]
    assert Filing.objects.filter(message=message, lead=lead, unlinked_at=None).exists()

    response = olivia.post(
        reverse("inbox:qualify_link", args=[message.pk]),
        {"create": "contact", "first_name": "", "last_name": ""},
        headers=HTMX,
    )
    assert "Give the new record a name." in response.content.decode()
    assert not Contact.objects.filter(emails__email="new.person@initech.example").exists()

    response = olivia.post(reverse("inbox:filing_unlink", args=[filing.pk]), headers=HTMX)
    assert response.status_code == 200 and "inbox:filed" in response["HX-Trigger"]
    filing.refresh_from_db()
    assert filing.unlinked_at is not None and filing.unlinked_by.username == "owner"

    response = olivia.post(
        reverse("inbox:qualify_link", args=[message.pk]), {"record": "ticket:999999"}, headers=HTMX
    )
    assert "no longer exists" in response.content.decode()


def test_qualify_files_the_whole_conversation_when_asked(olivia, box):
    contact = f.ContactFactory()
    messages = mailkit.conversation(box["inbox"], size=3)
    html = _get(olivia, reverse("inbox:qualify_dialog", args=[messages[-1].pk]), **HTMX)
    assert "File the whole conversation (3 messages)" in html
    olivia.post(
        reverse("inbox:qualify_link", args=[messages[-1].pk]),
        {"record": f"contact:{contact.pk}"},
        headers=HTMX,
    )
    assert Filing.objects.filter(contact=contact).count() == 1
    olivia.post(
        reverse("inbox:qualify_link", args=[messages[-1].pk]),
        {"record": f"contact:{contact.pk}", "whole": "1"},
        headers=HTMX,
    )
    assert Filing.objects.filter(contact=contact).count() == 3


def test_qualify_works_without_javascript(olivia, box):
    contact = f.ContactFactory(first_name="Plain", last_name="Html")
    (message,) = mailkit.conversation(box["inbox"])
    html = _get(olivia, reverse("inbox:qualify_dialog", args=[message.pk]))
    assert "<nav" in html and "Qualify" in html
    response = olivia.post(
        reverse("inbox:qualify_link", args=[message.pk]), {"record": f"contact:{contact.pk}"}
    )
    assert response.status_code == 302
    assert Filing.objects.filter(message=message, contact=contact).exists()


# --- Triage ----------------------------------------------------------------------------------


def test_triage_lists_reasons_and_files_in_bulk(olivia, box):
    account = f.AccountFactory(name="Umbrella")
    (one,) = mailkit.conversation(box["inbox"], subject="Nobody knows me")
    (two,) = mailkit.conversation(box["inbox"], subject="Which account?")
    (three,) = mailkit.conversation(box["inbox"], subject="Left alone")
    f.TriageEntryFactory(message=one, reason="unfiled")
    f.TriageEntryFactory(
        message=two, reason="ambiguous_domain", details="From domain x.example is claimed by A, B"
    )
    f.TriageEntryFactory(message=three, reason="unfiled")
    f.LedgerEntryFactory(
        folder=box["inbox"], outcome="held", error="Message too deeply nested", uid=777
    )
    html = _get(olivia, reverse("inbox:triage"))
    assert "Nobody knows me" in html and "Ambiguous domain" in html
    assert "claimed by A, B" in html
    assert "Held by the sync" in html and "Message too deeply nested" in html

    picker = _get(olivia, reverse("inbox:record_picker") + "?q=umbrella", **HTMX)
    assert f'value="account:{account.pk}"' in picker

    response = olivia.post(
        reverse("inbox:triage_qualify"),
        {"message": [one.pk, two.pk], "record": f"account:{account.pk}"},
    )
    assert response.status_code == 302
    assert Filing.objects.filter(account=account).count() == 2
    assert not TriageEntry.objects.filter(message__in=[one, two], resolved_at=None).exists()
    html = _get(olivia, reverse("inbox:triage"))
    assert "Nobody knows me" not in html and "Left alone" in html


def test_triage_bulk_without_a_record_files_nothing(olivia, box):
    (one,) = mailkit.conversation(box["inbox"])
    f.TriageEntryFactory(message=one)
    response = olivia.post(reverse("inbox:triage_qualify"), {"message": [one.pk]}, follow=True)
    assert "Pick the record" in response.content.decode()
    assert not Filing.objects.exists()


# --- preferences -----------------------------------------------------------------------------


def test_preferences_page(olivia, owner):
    html = _get(olivia, reverse("inbox:preferences"))
    assert "Emails per page" in html
    response = olivia.post(reverse("inbox:preferences"), {"emails_per_page": "50"})
    assert response.status_code == 302
    assert UserPreferences.objects.get(user=owner).emails_per_page == 50
    response = olivia.post(reverse("inbox:preferences"), {"emails_per_page": "7"})
    assert response.status_code == 422


# --- the Email tab: privacy, one entry per message, compose ----------------------------------


@pytest.mark.parametrize(
    "privacy,subject,snippet,people",
    [
        ("full", True, True, True),
        ("subject", True, False, True),
        ("people", False, False, True),
        ("nothing", False, False, False),
    ],
)
def test_email_tab_shows_others_personal_mail_at_the_owners_privacy_level(
    client, teammate, box, privacy, subject, snippet, people
):
    Mailbox.objects.filter(pk=box["mailbox"].pk).update(privacy=privacy)
    contact = f.ContactFactory()
    (message,) = mailkit.conversation(
        box["inbox"], subject="Salary talk", sender="ana@globex.example", name="Ana Lopez"
    )
    f.FilingFactory(message=message, contact=contact)
    client.force_login(teammate)
    html = _get(client, reverse("inbox:email_tab", args=["contact", contact.pk]), **HTMX)
    assert ("Salary talk" in html) is subject
    assert ("Body of message 0" in html) is snippet
    assert ("Ana Lopez" in html) is people
    # Never a link to read it: the conversation is the owner's alone.
    assert reverse("inbox:conversation", args=[message.pk]) not in html


def test_email_tab_one_entry_per_mail_that_reached_several_mailboxes(
    client, owner, teammate, box, shared_mailbox
):
    contact = f.ContactFactory()
    shared = mailkit.folders(shared_mailbox)
    (copy_a,) = mailkit.conversation(box["inbox"], subject="Cc'd to both", day=4)
    (copy_b,) = mailkit.conversation(shared["inbox"], subject="Cc'd to both", day=4)
    # The same bytes reached both mailboxes (copies are one mail only when their content is:
    # docs/reliability.md S-08).
    Message.objects.filter(pk=copy_b.pk).update(
        sha256=copy_a.sha256,
        message_id=copy_a.message_id,
        from_address=copy_a.from_address,
        date=copy_a.date,
    )
    for message in (copy_a, copy_b):
        f.FilingFactory(message=message, contact=contact)
    client.force_login(teammate)
    html = _get(client, reverse("inbox:email_tab", args=["contact", contact.pk]), **HTMX)
    assert html.count("Cc&#x27;d to both") == 1 and "1 message filed here" in html
    # The teammate sees the copy they may read: the shared one, linked.
    assert reverse("inbox:conversation", args=[copy_b.pk]) in html
    client.force_login(owner)
    html = _get(client, reverse("inbox:email_tab", args=["contact", contact.pk]), **HTMX)
    assert reverse("inbox:conversation", args=[copy_a.pk]) in html


def test_email_tab_has_compose_from_the_record(client, teammate, outsider, shared_mailbox):
    contact = f.ContactFactory()
    client.force_login(teammate)
    html = _get(client, reverse("inbox:email_tab", args=["contact", contact.pk]), **HTMX)
    compose = reverse("inbox:compose")
    assert f"{compose}?record_type=contact&amp;record_id={contact.pk}" in html
    # Someone with no mailbox to send from gets no Compose button.
    client.force_login(outsider)
    html = _get(client, reverse("inbox:email_tab", args=["contact", contact.pk]), **HTMX)
    assert compose not in html


# --- compose, reply, forward -----------------------------------------------------------------


def test_reply_prefills_and_queues_a_threaded_answer(olivia, box):
    from inbox.models import OutboxEntry

    (message,) = mailkit.conversation(
        box["inbox"], subject="Pricing", sender="ana@globex.example", name="Ana Lopez"
    )
    url = reverse("inbox:compose") + f"?reply_to={message.pk}&mode=reply"
    html = _get(olivia, url)
    assert 'value="Re: Pricing"' in html and "ana@globex.example" in html
    response = olivia.post(
        reverse("inbox:compose"),
        {
            "reply_to": message.pk,
            "mode": "reply",
            "mailbox": box["mailbox"].pk,
            "to": "Ana Lopez <ana@globex.example>",
            "subject": "Re: Pricing",
            "body": "Forty widgets it is.",
        },
    )
    assert response.status_code == 302
    entry = OutboxEntry.objects.get()
    assert entry.to == ["Ana Lopez <ana@globex.example>"]
    assert entry.in_reply_to == message.message_id.strip("<>")
    assert entry.reply_to_message_id == message.pk
    assert "Forty widgets it is." in entry.text_body and "> Body of message 0" in entry.text_body


def test_forward_and_compose_from_a_record(olivia, box):
    from inbox.models import OutboxEntry

    (message,) = mailkit.conversation(box["inbox"], subject="Specs")
    html = _get(olivia, reverse("inbox:compose") + f"?reply_to={message.pk}&mode=forward")
    assert 'value="Fwd: Specs"' in html
    olivia.post(
        reverse("inbox:compose"),
        {
            "reply_to": message.pk,
            "mode": "forward",
            "mailbox": box["mailbox"].pk,
            "to": "bob@initech.example",
            "subject": "Fwd: Specs",
            "body": "FYI",
        },
    )
    assert OutboxEntry.objects.get().subject == "Fwd: Specs"

    contact = f.ContactFactory(emails=["ana@globex.example"])
    ticket = f.TicketFactory(subject="Jam", contact=contact)
    url = reverse("inbox:compose") + f"?record_type=ticket&record_id={ticket.pk}"
    html = _get(olivia, url)
    assert f'value="[{ticket.reference}] "' in html and 'value="ana@globex.example"' in html
    response = olivia.post(
        reverse("inbox:compose"),
        {
            "record_type": "ticket",
            "record_id": ticket.pk,
            "mailbox": box["mailbox"].pk,
            "to": "ana@globex.example",
            "subject": "About your printer",
            "body": "Hello",
        },
    )
    assert response["Location"] == f"{ticket.get_absolute_url()}#email"
    entry = OutboxEntry.objects.latest("pk")
    assert entry.subject == f"[{ticket.reference}] About your printer"
    assert (entry.record_type, entry.record_id) == ("ticket", ticket.pk)


def test_compose_says_what_is_wrong_and_sends_nothing(olivia, box):
    from inbox.models import OutboxEntry

    response = olivia.post(
        reverse("inbox:compose"),
        {"mailbox": box["mailbox"].pk, "to": "not an address", "subject": "x", "body": "y"},
    )
    assert response.status_code == 422
    assert not OutboxEntry.objects.exists()
    response = olivia.post(
        reverse("inbox:compose"), {"mailbox": box["mailbox"].pk, "to": "", "body": "y"}
    )
    assert "Add at least one recipient." in response.content.decode()


# --- bounded queries -------------------------------------------------------------------------


def _queries(client, url, **headers) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, headers=headers)
    assert response.status_code in (200, 204), url
    return len(queries)


def test_every_page_takes_the_same_queries_for_3_and_300_messages(olivia, owner, box):
    contact = f.ContactFactory(emails=["ana@globex.example"])
    ticket = f.TicketFactory()

    def add(n, start):
        mailkit.many_conversations(box["inbox"], n, start_day=start)
        messages = list(Message.objects.filter(mailbox=box["mailbox"]).order_by("-pk")[:n])
        Filing.objects.bulk_create(
            Filing(message=m, record_type="contact", contact=contact, rule="sender")
            for m in messages
        )
        Filing.objects.bulk_create(
            Filing(message=m, record_type="ticket", ticket=ticket, rule="subject_reference")
            for m in messages[: n // 2]
        )
        TriageEntry.objects.bulk_create(TriageEntry(message=m, reason="unfiled") for m in messages)

    def thread_of(size):
        messages = mailkit.conversation(box["inbox"], size=size, sender="ana@globex.example")
        for m in messages:
            f.FilingFactory(message=m, contact=contact)
        return messages[-1]

    def urls(message):
        return [
            (reverse("inbox:inbox_page"), {}),
            (reverse("inbox:inbox_page") + "?q=bulk&unread=on", {}),
            (reverse("inbox:inbox_poll") + "?since=x", HTMX),
            (reverse("inbox:conversation", args=[message.pk]), HTMX),
            # docs/product.md §7.12: opened by its address, the list beside it.
            (reverse("inbox:conversation", args=[message.pk]) + "?view=open", {}),
            (reverse("inbox:qualify_dialog", args=[message.pk]), HTMX),
            (reverse("inbox:qualify_search", args=[message.pk]) + "?q=a", HTMX),
            (reverse("inbox:triage"), {}),
            (reverse("inbox:email_tab", args=["contact", contact.pk]), HTMX),
            (reverse("inbox:compose") + f"?reply_to={message.pk}&mode=reply_all", {}),
            (reverse("inbox:compose") + f"?record_type=contact&record_id={contact.pk}", {}),
            (reverse("inbox:preferences"), {}),
            # Added for issue #16: All mailboxes (and its search), drafts, the triage picker.
            (reverse("inbox:inbox_page") + "?mailbox=all", {}),
            (reverse("inbox:inbox_page") + "?mailbox=all&q=bulk", {}),
            (reverse("inbox:conversation", args=[message.pk]) + "?mailbox=all", {}),
            (reverse("inbox:drafts"), {}),
            (reverse("inbox:record_picker") + "?q=a", HTMX),
        ]

    add(3, 100)
    small = thread_of(3)
    few = [_queries(olivia, url, **h) for url, h in urls(small)]
    add(297, 200)
    big = thread_of(60)
    many = [_queries(olivia, url, **h) for url, h in urls(big)]
    assert few == many, (few, many)
    # 45: a conversation's page carries its newest message's body (its recipients, folders and
    # attachments: three queries), which it used to ask for in a second request of its own.
    assert max(many) <= 45, many


def test_unread_counts_take_one_query(box):
    from inbox.selectors.conversations import folders_with_unread

    mailkit.many_conversations(box["inbox"], 30)
    with CaptureQueriesContext(connection) as queries:
        folders = folders_with_unread(mailbox=box["mailbox"], user=box["mailbox"].owner)
    assert len(queries) == 1
    assert next(x for x in folders if x.special_use == "inbox").unread == 15
    assert timezone.now()


def test_qualify_search_and_triage_picker_work_without_javascript(olivia, box):
    f.ContactFactory(first_name="Wanda", last_name="Widget")
    (message,) = mailkit.conversation(box["inbox"])
    f.TriageEntryFactory(message=message)
    html = _get(olivia, reverse("inbox:qualify_search", args=[message.pk]) + "?q=widget")
    assert "<nav" in html and "Wanda Widget" in html and "Suggested" not in html.split("<nav")[0]
    html = _get(olivia, reverse("inbox:triage") + f"?q=widget&message={message.pk}")
    assert "Wanda Widget" in html and 'value="contact:' in html
    assert f'value="{message.pk}" id=' in html and " checked" in html


def test_sent_mail_is_listed_by_its_recipient(olivia, box):
    mailkit.conversation(
        box["sent"],
        subject="Our offer",
        sender="olivia@relay.test",
        to="ana@globex.example",
        is_outgoing=True,
    )
    html = _get(olivia, reverse("inbox:inbox_page") + f"?folder={box['sent'].pk}")
    assert "To: </span>ana@globex.example" in html


# --- Reading (docs/product.md §7.2, §7.12) ------------------------------------------------------


def test_conversation_by_its_address_is_the_inbox_with_it_open(olivia, box):
    mailkit.many_conversations(box["inbox"], 3)
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez")
    first, second = mailkit.conversation(
        box["inbox"], size=2, subject="Quote for widgets", sender="ana@globex.example"
    )
    f.FilingFactory(message=first, contact=contact, rule="sender", evidence="ana@globex.example")
    f.FilingFactory(message=second, contact=contact, rule="sender", evidence="ana@globex.example")
    url = reverse("inbox:conversation", args=[second.pk]) + f"?mailbox={box['mailbox'].pk}"
    page = olivia.get(url).content.decode()
    # The list (with the conversation selected) and the conversation, in one page.
    assert 'id="thread-list"' in page and 'id="conversation"' in page
    assert "inbox-layout is-reading" in page
    assert page.count("data-thread=") == 4
    assert "is-selected" in page
    # The newest message open, the older one a closed line; the record once, with its evidence.
    assert page.count('<details class="inbox-msg') == 2
    assert page.count(" open>") == 1
    assert page.count('class="inbox-filed-item') == 1
    assert "Sender is a contact" in page and "ana@globex.example" in page
    assert "2 of 2" in page
    assert 'id="inline-reply-slot"' in page  # the reply box under the thread (§5.1)
    # The list's links carry the list with them; Back leads to it.
    assert f'href="{reverse("inbox:inbox_page")}?mailbox={box["mailbox"].pk}"' in page
    # htmx gets the pane alone, except when it restores history (Back, Forward).
    pane = olivia.get(url, headers=HTMX).content.decode()
    assert 'id="thread-list"' not in pane and 'id="conversation"' in pane
    restored = olivia.get(url, headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert 'id="thread-list"' in restored.content.decode()


def test_removing_a_record_from_the_panel_unlinks_the_whole_conversation(olivia, box):
    contact = f.ContactFactory()
    messages = mailkit.conversation(box["inbox"], size=3)
    filings = [f.FilingFactory(message=m, contact=contact) for m in messages]
    response = olivia.post(
        reverse("inbox:filing_unlink", args=[filings[0].pk]), {"whole": "1"}, headers=HTMX
    )
    assert response.status_code == 200
    assert not Filing.objects.filter(contact=contact, unlinked_at__isnull=True).exists()


def test_unlinking_a_whole_conversation_has_the_same_undo(olivia, owner, box):
    """docs/product.md §7.12: the Filed on panel's × offers Undo, as one message's unlink
    does: it puts back what that action took off, and nothing unlinked before."""
    contact = f.ContactFactory()
    messages = mailkit.conversation(box["inbox"], size=3)
    filings = [f.FilingFactory(message=m, contact=contact) for m in messages]
    earlier = f.FilingFactory(message=messages[1], account=f.AccountFactory())
    olivia.post(reverse("inbox:filing_unlink", args=[filings[2].pk]))  # one, before
    olivia.post(reverse("inbox:filing_unlink", args=[earlier.pk]))
    response = olivia.post(
        reverse("inbox:filing_unlink", args=[filings[0].pk]), {"whole": "1"}, headers=HTMX
    )
    undo = json.loads(response["HX-Trigger"])["relay:undo"]
    assert undo["text"] == f"The conversation was removed from {contact}."
    assert not Filing.objects.filter(contact=contact, unlinked_at__isnull=True).exists()
    assert olivia.post(undo["url"], headers=HTMX).status_code == 200
    back = set(
        Filing.objects.filter(contact=contact, unlinked_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    assert back == {filings[0].pk, filings[1].pk}  # not the one unlinked before
    assert Filing.objects.get(pk=earlier.pk).unlinked_at is not None

    # Without JavaScript: the Qualify page says so and offers the same Undo.
    response = olivia.post(reverse("inbox:filing_unlink", args=[filings[0].pk]), {"whole": "1"})
    page = olivia.get(response["Location"]).content.decode()
    assert "The conversation was removed from" in page and 'name="whole" value="1"' in page
    olivia.post(reverse("inbox:filing_relink", args=[filings[0].pk]), {"whole": "1"})
    assert Filing.objects.filter(contact=contact, unlinked_at__isnull=True).count() == 2


def test_density_switch_is_remembered_and_changes_the_list(olivia, owner, box):
    mailkit.many_conversations(box["inbox"], 2)
    assert "is-comfortable" in olivia.get(reverse("inbox:inbox_page")).content.decode()
    back = reverse("inbox:inbox_page") + f"?mailbox={box['mailbox'].pk}"
    response = olivia.post(reverse("inbox:density"), {"density": "compact", "next": back})
    assert response.status_code == 302 and response["Location"] == back
    assert UserPreferences.objects.get(user=owner).density == "compact"
    page = olivia.get(back).content.decode()
    assert "is-compact" in page and 'aria-pressed="true"' in page
    # Another site is never where it leads; an unknown density changes nothing.
    away = olivia.post(reverse("inbox:density"), {"density": "comfortable", "next": "//evil"})
    assert away["Location"] == reverse("inbox:inbox_page")
    assert olivia.post(reverse("inbox:density"), {"density": "tiny"}).status_code == 400
    assert UserPreferences.objects.get(user=owner).density == "comfortable"


def test_sync_now_from_the_inbox_asks_for_a_sync(olivia, box):
    mailbox = box["mailbox"]
    url = reverse("inbox:inbox_sync_now", args=[mailbox.pk])
    response = olivia.post(url, headers=HTMX)
    assert "Checking the server for new mail" in response.content.decode()
    mailbox.refresh_from_db()
    assert mailbox.sync_requested_at is not None
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.PAUSED, sync_requested_at=None)
    response = olivia.post(url, {"next": "/inbox/"}, follow=True)
    assert "paused: nothing to sync" in response.content.decode()
    mailbox.refresh_from_db()
    assert mailbox.sync_requested_at is None


def test_a_refused_server_write_is_shown_with_retry(olivia, owner, box):
    """docs/reliability.md X-19: the server said NO to a flag; the conversation says so in the
    server's words, Retry queues it again (once) and asks for a sync; a change whose copy has
    gone since is not offered."""
    message, *_ = mailkit.conversation(box["inbox"], subject="Flag me")
    location = message.locations.get()
    refused = PendingChange.objects.create(
        mailbox=box["mailbox"],
        location=location,
        folder_name=location.folder.name,
        uidvalidity=location.uidvalidity,
        uid=location.uid,
        action=PendingChange.Action.FLAG,
        done_at=timezone.now(),
        error="NO [CANNOT] <b>quota</b> exceeded",
    )
    url = reverse("inbox:conversation", args=[message.pk])
    page = olivia.get(url, headers=HTMX).content.decode()
    assert "Not done on the mail server" in page
    assert "NO [CANNOT] &lt;b&gt;quota&lt;/b&gt; exceeded" in page
    retry = reverse("inbox:server_write_retry", args=[refused.pk])
    assert retry in page
    response = olivia.post(retry, headers=HTMX)
    assert response.status_code == 200
    assert "Not done on the mail server" not in response.content.decode()
    refused.refresh_from_db()
    assert refused.done_at is None and refused.error == ""
    assert Mailbox.objects.get(pk=box["mailbox"].pk).sync_requested_at is not None
    assert olivia.post(retry, headers=HTMX).status_code == 200  # twice: still once
    assert PendingChange.objects.count() == 1
    # Refused again, then the copy was reset on the server: nothing left to retry.
    PendingChange.objects.filter(pk=refused.pk).update(done_at=timezone.now(), error="NO again")
    Location.objects.filter(pk=location.pk).update(uidvalidity=location.uidvalidity + 1)
    assert "Not done on the mail server" not in olivia.get(url, headers=HTMX).content.decode()
    assert olivia.post(retry).status_code == 422


def test_a_row_names_the_records_but_not_its_own_sender_again(olivia, box):
    """The list's record tags name what the conversation is filed on; the sender's own
    contact is the row's sender already and is not repeated beside it."""
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez", emails=["ana@globex.example"])
    account = f.AccountFactory(name="Globex")
    (message,) = mailkit.conversation(
        box["inbox"], subject="Renewal", sender="ana@globex.example", name="Ana Lopez"
    )
    f.FilingFactory(message=message, contact=contact)
    f.FilingFactory(message=message, account=account)
    (other,) = mailkit.conversation(
        box["inbox"], subject="Intro", sender="bo@globex.example", name="Bo Berg"
    )
    f.FilingFactory(message=other, contact=contact)

    html = _get(olivia, reverse("inbox:inbox_page"))
    rows = {
        subject: row
        for row in html.split('<li class="inbox-thread')[1:]
        for subject in ("Renewal", "Intro")
        if f'inbox-thread-subject">{subject}' in row or f"</span>{subject}</span>" in row
    }
    tags = {s: re.findall(r'inbox-record-tag">([^<]+)<', row) for s, row in rows.items()}
    assert tags == {"Renewal": ["Globex"], "Intro": ["Ana Lopez"]}
    assert all("inbox-unfiled-tag" not in row for row in rows.values())
