"""Internal notes (docs/product.md §7.9): who sees them, mentions, safe rendering, search,
Mentions, and a fixed number of queries however many notes there are."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notes.models import Mention, Note
from notifications.models import Kind, Notification
from tests import factories as f
from tests.conftest import login

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def panel_url(target_type: str, pk: int) -> str:
    return reverse("notes:panel", args=[target_type, pk])


def post_note(client, target_type, pk, body):
    return client.post(panel_url(target_type, pk), {"body": body}, headers=HTMX)


@pytest.fixture
def shared_thread(shared_mailbox):
    thread = f.ThreadFactory(mailbox=shared_mailbox, subject="Broken invoice")
    f.MessageFactory(mailbox=shared_mailbox, thread=thread, subject="Broken invoice")
    return thread


@pytest.fixture
def personal_thread(personal_mailbox):
    thread = f.ThreadFactory(mailbox=personal_mailbox, subject="Dinner plans")
    f.MessageFactory(mailbox=personal_mailbox, thread=thread, subject="Dinner plans")
    return thread


# --- who sees notes ------------------------------------------------------------------------


def test_a_note_on_a_shared_conversation_is_seen_by_those_granted_and_404_for_others(
    client, teammate, outsider, admin_user, shared_thread
):
    login(client, teammate)
    response = post_note(client, "thread", shared_thread.pk, "Customer called, invoice resent.")
    assert response.status_code == 200
    assert "Customer called, invoice resent." in response.content.decode()
    assert Note.objects.get().thread == shared_thread

    for stranger in (outsider, admin_user):
        login(client, stranger)
        assert client.get(panel_url("thread", shared_thread.pk), headers=HTMX).status_code == 404
        assert post_note(client, "thread", shared_thread.pk, "sneaky").status_code == 404
        missing = client.get(panel_url("thread", 999_999), headers=HTMX)
        assert missing.status_code == 404
    assert Note.objects.count() == 1


def test_notes_on_a_personal_mailboxs_conversation_are_its_owners_only(
    client, owner, teammate, admin_user, personal_thread
):
    login(client, owner)
    assert post_note(client, "thread", personal_thread.pk, "Remember the wine").status_code == 200
    for other in (teammate, admin_user):
        login(client, other)
        assert client.get(panel_url("thread", personal_thread.pk), headers=HTMX).status_code == 404
        page = client.get(reverse("notes:search"), {"q": "wine"})
        assert "Remember the wine" not in page.content.decode()


@pytest.mark.parametrize("record_type", ["account", "contact", "lead", "ticket", "opportunity"])
def test_every_record_type_takes_notes_that_every_user_sees(client, owner, teammate, record_type):
    factory = {
        "account": f.AccountFactory,
        "contact": f.ContactFactory,
        "lead": f.LeadFactory,
        "ticket": f.TicketFactory,
        "opportunity": f.OpportunityFactory,
    }[record_type]
    record = factory()
    login(client, owner)
    assert post_note(client, record_type, record.pk, "Prefers phone calls").status_code == 200
    login(client, teammate)
    # The record's page loads the panel; the panel shows the note.
    page = client.get(record.get_absolute_url())
    assert panel_url(record_type, record.pk) in page.content.decode()
    panel = client.get(panel_url(record_type, record.pk), headers=HTMX)
    assert "Prefers phone calls" in panel.content.decode()
    assert "Olivia Owner" in panel.content.decode()


def test_the_conversation_page_loads_its_notes(client, teammate, shared_thread):
    message = shared_thread.messages.get()
    login(client, teammate)
    page = client.get(reverse("inbox:conversation", args=[message.pk]))
    assert panel_url("thread", shared_thread.pk) in page.content.decode()
    # Following a note's link to the conversation lands on the conversation page.
    opened = client.get(reverse("notes:thread_open", args=[shared_thread.pk]))
    assert opened.status_code == 302
    assert opened.url == reverse("inbox:conversation", args=[message.pk])


def test_without_javascript_notes_have_a_page_and_the_form_still_works(client, owner, teammate):
    ticket = f.TicketFactory(subject="Printer on fire")
    login(client, owner)
    page = client.get(panel_url("ticket", ticket.pk))
    assert page.status_code == 200 and "Internal notes" in page.content.decode()
    response = client.post(panel_url("ticket", ticket.pk), {"body": "Called the fire brigade"})
    assert response.status_code == 302
    assert Note.objects.get().body == "Called the fire brigade"


def test_only_its_author_deletes_a_note(client, owner, teammate):
    ticket = f.TicketFactory()
    login(client, owner)
    post_note(client, "ticket", ticket.pk, "mine")
    note = Note.objects.get()
    login(client, teammate)
    assert client.post(reverse("notes:delete", args=[note.pk]), headers=HTMX).status_code == 403
    assert Note.objects.filter(pk=note.pk).exists()
    login(client, owner)
    assert client.post(reverse("notes:delete", args=[note.pk]), headers=HTMX).status_code == 200
    assert not Note.objects.exists()


# --- mentions ------------------------------------------------------------------------------


def test_a_mention_tells_the_person_and_lists_the_note_under_their_mentions(
    client, owner, teammate
):
    ticket = f.TicketFactory(subject="Refund")
    login(client, owner)
    response = post_note(client, "ticket", ticket.pk, "@teammate can you approve the refund?")
    assert response.status_code == 200
    note = Note.objects.get()
    assert list(Mention.objects.values_list("user__username", flat=True)) == ["teammate"]
    notification = Notification.objects.get(recipient=teammate)
    assert notification.kind == Kind.MENTIONED
    assert notification.actor == owner
    assert "Olivia Owner mentioned you on TKT-" in notification.text
    assert notification.url == f"{ticket.get_absolute_url()}#note-{note.pk}"
    assert not Notification.objects.filter(recipient=owner).exists()

    login(client, teammate)
    mentions = client.get(reverse("notes:mentions")).content.decode()
    assert "can you approve the refund?" in mentions
    assert ticket.reference in mentions
    login(client, owner)
    assert "approve the refund" not in client.get(reverse("notes:mentions")).content.decode()


def test_mentioning_someone_who_cannot_see_the_conversation_is_refused_and_saves_nothing(
    client, teammate, outsider, shared_thread
):
    login(client, teammate)
    response = post_note(client, "thread", shared_thread.pk, "@outsider look at this")
    text = response.content.decode()
    assert "@outsider cannot see this conversation, so they cannot be mentioned here." in text
    assert "@outsider look at this" in text  # the text is kept in the form
    assert not Note.objects.exists()
    assert not Notification.objects.exists()


def test_mentioning_an_unknown_name_is_refused(client, teammate):
    ticket = f.TicketFactory()
    login(client, teammate)
    response = post_note(client, "ticket", ticket.pk, "ask @nobody-here")
    assert "No one is called @nobody-here" in response.content.decode()
    assert not Note.objects.exists()


def test_an_address_is_not_a_mention(client, owner, teammate):
    ticket = f.TicketFactory()
    login(client, owner)
    post_note(client, "ticket", ticket.pk, "wrote to ana@teammate.example. Thanks @teammate.")
    assert list(Mention.objects.values_list("user__username", flat=True)) == ["teammate"]


def test_the_mention_picker_offers_only_people_who_can_see_the_target(
    client, owner, teammate, outsider, shared_thread
):
    f.UserFactory(username="tina", first_name="Tina")
    login(client, teammate)
    url = reverse("notes:mention_suggest", args=["thread", shared_thread.pk])
    text = client.get(url, {"body": "Hello @t"}, headers=HTMX).content.decode()
    assert 'data-mention="teammate"' in text
    assert "tina" not in text  # not granted the mailbox
    assert client.get(url, {"body": "no at sign"}, headers=HTMX).content.decode().strip() == ""
    # On a record everyone can see it: Tina is offered.
    ticket = f.TicketFactory()
    url = reverse("notes:mention_suggest", args=["ticket", ticket.pk])
    assert 'data-mention="tina"' in client.get(url, {"body": "@ti"}).content.decode()
    login(client, outsider)
    picker = reverse("notes:mention_suggest", args=["thread", shared_thread.pk])
    assert client.get(picker, {"body": "@t"}).status_code == 404


# --- rendering -----------------------------------------------------------------------------


def test_a_note_is_shown_as_text_with_links_and_never_as_markup(client, teammate):
    ticket = f.TicketFactory()
    login(client, teammate)
    body = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> see "
        'https://example.com/a?b=1&c="2" and javascript:alert(3)\nline two'
    )
    text = post_note(client, "ticket", ticket.pk, body).content.decode()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    assert (
        '<a href="https://example.com/a?b=1&amp;c=" rel="nofollow noopener noreferrer" '
        'target="_blank">https://example.com/a?b=1&amp;c=</a>&quot;2&quot;' in text
    )
    assert 'href="javascript' not in text
    assert "<br>line two" in text


# --- search and query counts ---------------------------------------------------------------


def test_search_finds_the_notes_the_user_may_see(client, owner, teammate, shared_thread):
    ticket = f.TicketFactory(subject="Server down")
    login(client, teammate)
    post_note(client, "ticket", ticket.pk, "Rebooted the FLUX capacitor")
    post_note(client, "thread", shared_thread.pk, "flux on the invoice too")
    post_note(client, "ticket", ticket.pk, "unrelated")
    page = client.get(reverse("notes:search"), {"q": "flux"}).content.decode()
    assert "Rebooted the FLUX capacitor" in page and "flux on the invoice too" in page
    assert "unrelated" not in page
    assert ticket.reference in page and "Broken invoice" in page
    login(client, owner)  # not granted the shared mailbox
    page = client.get(reverse("notes:search"), {"q": "flux"}).content.decode()
    assert "Rebooted the FLUX capacitor" in page
    assert "flux on the invoice too" not in page


def _queries(client, url, **kwargs) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **kwargs)
    assert response.status_code == 200
    return len(queries)


def _add_notes(n, author, **target):
    notes = Note.objects.bulk_create(
        Note(
            author=author,
            body=f"note {i} @{author.username}",
            target_type=next(iter(target)),
            **target,
        )
        for i in range(n)
    )
    Mention.objects.bulk_create(Mention(note=note, user=author) for note in notes)


def test_notes_pages_take_the_same_queries_for_3_or_300_notes(client, teammate, shared_thread):
    ticket = f.TicketFactory()
    login(client, teammate)
    urls = [
        (panel_url("ticket", ticket.pk), HTMX),
        (panel_url("thread", shared_thread.pk), HTMX),
        (reverse("notes:search") + "?q=note", {}),
        (reverse("notes:mentions"), {}),
    ]
    _add_notes(3, teammate, ticket=ticket)
    _add_notes(3, teammate, thread=shared_thread)
    few = [_queries(client, url, headers=headers) for url, headers in urls]
    _add_notes(297, teammate, ticket=ticket)
    _add_notes(297, teammate, thread=shared_thread)
    many = [_queries(client, url, headers=headers) for url, headers in urls]
    assert many == few, (few, many)
    assert max(few) <= 8, few


def test_the_inbox_sidebar_has_mentions_with_the_conversations_that_mention_me(
    client, owner, teammate, shared_mailbox, shared_thread
):
    """docs/product.md §7.8 views, plus Mentions (§7.9): counted and listed like the others."""
    shared_mailbox.granted_users.add(owner)
    other = f.ThreadFactory(mailbox=shared_mailbox, subject="Quiet one")
    f.MessageFactory(mailbox=shared_mailbox, thread=other, subject="Quiet one")
    login(client, owner)
    post_note(client, "thread", shared_thread.pk, "@teammate can you take this?")
    post_note(client, "thread", other.pk, "Nothing for anyone")

    login(client, teammate)
    page = client.get(
        reverse("inbox:inbox_page"), {"mailbox": shared_mailbox.pk, "view": "mentions"}
    ).content.decode()
    assert 'data-view="mentions"' in page
    assert shared_thread.subject in page and "Quiet one" not in page
    from inbox.selectors.conversations import view_counts

    assert view_counts(mailbox=shared_mailbox, user=teammate)["mentions"] == 1
    assert view_counts(mailbox=shared_mailbox, user=owner)["mentions"] == 0
