"""Conversations have an owner and a state, and reading is personal (docs/product.md §7.8):
the services and selectors on PostgreSQL, the pages and actions as a user sees them, bulk
actions, tickets and conversations moving together, per-user read state, the snooze beat and
the list with its view counts in a bounded number of queries (3 vs 300 conversations)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connector.scheduling import tasks
from crm.models import Ticket
from inbox.models import Mailbox, Message, PendingChange, Thread, ThreadEvent, ThreadRead
from inbox.selectors.conversations import (
    VIEWS,
    ConversationView,
    event_text,
    register_view,
    view_counts,
)
from inbox.services.conversations import (
    conversation_assign,
    conversation_mark_read,
    conversation_mark_unread,
    conversation_set_status,
    conversation_snooze,
    conversations_bulk,
    wake_snoozed,
)
from tests import factories as f
from tests.connector import filingkit
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
LATER = dt.timedelta(days=2)


@pytest.fixture
def sofia(db):
    return f.UserFactory(username="sofia", first_name="Sofia", last_name="Silva")


@pytest.fixture
def team(shared_mailbox, teammate, sofia):
    """support@, granted to Tom and Sofia, with its folders."""
    shared_mailbox.granted_users.add(sofia)
    return {"mailbox": shared_mailbox, **mailkit.folders(shared_mailbox)}


def _thread(folder, **kwargs) -> tuple[Thread, list[Message]]:
    messages = mailkit.conversation(folder, **kwargs)
    return messages[0].thread, messages


def _client(client, user):
    client.force_login(user)
    return client


# --- Services --------------------------------------------------------------------------------


def test_assign_records_who_did_it_and_only_readers_may_own(team, teammate, sofia, outsider):
    thread, _ = _thread(team["inbox"])
    assert (thread.status, thread.assignee) == (Thread.Status.OPEN, None)

    assert conversation_assign(actor=sofia, thread=thread, assignee=teammate)
    assert not conversation_assign(actor=sofia, thread=thread, assignee=teammate)  # no change
    with pytest.raises(ValidationError):
        conversation_assign(actor=sofia, thread=thread, assignee=outsider)
    conversation_assign(actor=teammate, thread=thread, assignee=None)
    conversation_assign(actor=teammate, thread=thread, assignee=teammate)

    thread.refresh_from_db()
    assert thread.assignee == teammate
    texts = [event_text(e) for e in ThreadEvent.objects.filter(thread=thread)]
    assert texts == [
        "Sofia Silva assigned this to Tom Teammate",
        "Tom Teammate unassigned this",
        "Tom Teammate took this",
    ]


def test_personal_conversations_belong_to_their_owner_alone(owner, personal_mailbox, teammate):
    folders = mailkit.folders(personal_mailbox)
    thread, _ = _thread(folders["inbox"])
    conversation_assign(actor=owner, thread=thread, assignee=owner)
    with pytest.raises(ValidationError):
        conversation_assign(actor=owner, thread=thread, assignee=teammate)
    assert Thread.objects.get(pk=thread.pk).assignee == owner


def test_status_changes_keep_times_and_say_who(team, sofia):
    thread, _ = _thread(team["inbox"])
    conversation_set_status(actor=sofia, thread=thread, status="done")
    thread.refresh_from_db()
    assert thread.status == "done" and thread.closed_at and thread.status_changed_at
    closed_at = thread.closed_at
    conversation_set_status(actor=sofia, thread=thread, status="open")
    thread.refresh_from_db()
    assert thread.closed_at == closed_at  # when it was last closed stays for reports
    with pytest.raises(ValidationError):
        conversation_snooze(actor=sofia, thread=thread, until=timezone.now() - LATER)
    with pytest.raises(ValidationError):
        conversation_set_status(actor=sofia, thread=thread, status="archived")
    texts = [event_text(e) for e in ThreadEvent.objects.filter(thread=thread)]
    assert texts == ["Done by Sofia Silva", "Reopened by Sofia Silva"]


def test_a_snooze_ends_on_time_even_before_the_beat_wakes_it(team, teammate):
    thread, _ = _thread(team["inbox"])
    conversation_snooze(actor=teammate, thread=thread, until=timezone.now() + LATER)
    conversation_assign(actor=teammate, thread=thread, assignee=teammate)
    mailbox = team["mailbox"]
    assert view_counts(mailbox=mailbox, user=teammate)["snoozed"] == 1
    assert view_counts(mailbox=mailbox, user=teammate)["mine"] == 0

    later = timezone.now() + LATER + dt.timedelta(minutes=1)
    counts = view_counts(mailbox=mailbox, user=teammate, now=later)
    assert (counts["snoozed"], counts["mine"], counts["open"]) == (0, 1, 1)
    assert Thread.objects.get(pk=thread.pk).status == "snoozed"  # nobody wrote yet

    assert wake_snoozed(now=timezone.now()) == 0  # not due yet
    assert wake_snoozed(now=later) == 1
    thread.refresh_from_db()
    assert (thread.status, thread.snoozed_until) == ("open", None)
    assert event_text(ThreadEvent.objects.filter(thread=thread).last()) == "Back from snooze"
    assert wake_snoozed(now=later) == 0


def test_the_beat_task_wakes_snoozed_conversations(team, teammate):
    thread, _ = _thread(team["inbox"])
    conversation_snooze(actor=teammate, thread=thread, until=timezone.now() + LATER)
    Thread.objects.filter(pk=thread.pk).update(snoozed_until=timezone.now() - LATER)
    assert tasks.wake_snoozed.apply().get() == 1
    assert Thread.objects.get(pk=thread.pk).status == "open"


def test_bulk_is_all_or_nothing(team, teammate, sofia):
    threads = [_thread(team["inbox"])[0] for _ in range(3)]
    assert conversations_bulk(actor=sofia, threads=threads, action="assign_me") == 3
    assert conversations_bulk(actor=sofia, threads=threads, action="done") == 3
    assert set(Thread.objects.values_list("status", "assignee")) == {("done", sofia.pk)}
    with pytest.raises(ValidationError):
        conversations_bulk(actor=sofia, threads=threads, action="snooze", until=None)
    assert set(Thread.objects.values_list("status", flat=True)) == {"done"}


# --- Views and counts ------------------------------------------------------------------------


def test_views_count_each_users_conversations(team, teammate, sofia):
    mine, _ = _thread(team["inbox"])
    hers, _ = _thread(team["inbox"])
    nobodys, _ = _thread(team["inbox"])
    waiting, _ = _thread(team["inbox"])
    done, _ = _thread(team["inbox"])
    binned, _ = _thread(team["trash"])  # only in Trash: in no view
    conversation_assign(actor=teammate, thread=mine, assignee=teammate)
    conversation_assign(actor=teammate, thread=hers, assignee=sofia)
    conversation_set_status(actor=teammate, thread=waiting, status="waiting")
    conversation_set_status(actor=teammate, thread=done, status="done")
    assert nobodys.pk and binned.pk

    expected = {
        "mine": 1,
        "unassigned": 1,
        "open": 3,
        "waiting": 1,
        "snoozed": 0,
        "done": 1,
        "mentions": 0,
    }
    assert view_counts(mailbox=team["mailbox"], user=teammate) == expected
    assert view_counts(mailbox=team["mailbox"], user=sofia)["mine"] == 1


def test_one_more_view_is_one_entry(team, teammate, client):
    """The sidebar takes another view (the notes' Mentions) with its count and list."""
    starred, _ = _thread(team["inbox"], subject="Starred one", flagged=True)
    _thread(team["inbox"], subject="Plain one")
    view = ConversationView(
        "starred", "Starred", lambda user, now: dt_q(flagged=True), shared_only=False
    )
    register_view(view, after="mine")
    try:
        assert [v.slug for v in VIEWS][:2] == ["mine", "starred"]
        assert view_counts(mailbox=team["mailbox"], user=teammate)["starred"] == 1
        html = _client(client, teammate).get(
            reverse("inbox:inbox_page") + f"?mailbox={team['mailbox'].pk}&view=starred"
        )
        html = html.content.decode()
        assert "Starred one" in html and "Plain one" not in html
        assert 'data-view="starred"' in html
    finally:
        VIEWS.remove(view)


def dt_q(**kwargs):
    from django.db.models import Exists, OuterRef, Q

    return Q(Exists(Message.objects.filter(thread=OuterRef("pk"), **kwargs)))


def test_inbox_page_shows_views_and_lists_a_view(team, teammate, sofia, client):
    a, _ = _thread(team["inbox"], subject="Printer jams")
    b, _ = _thread(team["archive"], subject="Invoice question")
    _thread(team["inbox"], subject="Closed matter")
    conversation_assign(actor=sofia, thread=a, assignee=teammate)
    conversation_set_status(
        actor=sofia, thread=Thread.objects.get(subject="Closed matter"), status="done"
    )
    client = _client(client, teammate)
    url = reverse("inbox:inbox_page") + f"?mailbox={team['mailbox'].pk}"

    html = client.get(url + "&view=mine").content.decode()
    assert "Printer jams" in html and "Invoice question" not in html
    assert 'data-view="mine"' in html and 'aria-current="page"' in html
    # Views span the folders: the archived question is open and unassigned.
    html = client.get(url + "&view=unassigned").content.decode()
    assert "Invoice question" in html and "Printer jams" not in html
    html = client.get(url + "&view=done").content.decode()
    assert "Closed matter" in html and "Printer jams" not in html
    assert 'data-count="1"' in html
    # An unknown view is the folder list.
    html = client.get(url + "&view=nope").content.decode()
    assert "Printer jams" in html and "Closed matter" in html
    assert b.pk


def test_personal_mailbox_has_no_mine_or_unassigned(owner, personal_mailbox, client):
    mailkit.folders(personal_mailbox)
    html = _client(client, owner).get(reverse("inbox:inbox_page")).content.decode()
    assert 'data-view="open"' in html and 'data-view="done"' in html
    assert 'data-view="mine"' not in html and 'data-view="unassigned"' not in html


def test_list_with_view_counts_takes_the_same_queries_for_3_and_300(team, teammate, client):
    client = _client(client, teammate)
    mailbox = team["mailbox"]

    def add(n, start):
        mailkit.many_conversations(team["inbox"], n, start_day=start)
        threads = list(Thread.objects.filter(mailbox=mailbox).order_by("-pk")[:n])
        for i, thread in enumerate(threads[:2]):
            conversation_assign(actor=teammate, thread=thread, assignee=teammate)
            conversation_set_status(
                actor=teammate, thread=thread, status=["done", "waiting"][i % 2]
            )
        conversation_mark_read(user=teammate, thread=threads[1])

    def count(url):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, headers=HTMX if "poll" in url else {})
        assert response.status_code == 200
        return len(queries)

    base = f"?mailbox={mailbox.pk}"
    urls = [
        reverse("inbox:inbox_page") + base,
        reverse("inbox:inbox_page") + base + "&view=mine",
        reverse("inbox:inbox_page") + base + "&view=open&unread=on",
        reverse("inbox:inbox_poll") + base + "&view=done&since=x",
    ]
    add(3, 100)
    few = [count(url) for url in urls]
    add(297, 200)
    many = [count(url) for url in urls]
    assert few == many, (few, many)
    assert max(many) <= 25, many


# --- Pages and actions -----------------------------------------------------------------------


def test_conversation_shows_state_and_its_timeline(team, teammate, sofia, client):
    thread, messages = _thread(team["inbox"], subject="Printer jams", size=2)
    conversation_assign(actor=sofia, thread=thread, assignee=teammate)
    client = _client(client, teammate)
    url = reverse("inbox:conversation", args=[messages[-1].pk])
    html = client.get(url, headers=HTMX).content.decode()
    assert "Sofia Silva assigned this to Tom Teammate" in html
    assert 'data-shortcut="e"' in html and 'data-shortcut="h"' in html
    assert 'data-shortcut="#"' in html
    assert 'data-shortcut="i"' not in html  # already mine

    state = reverse("inbox:conversation_state", args=[messages[-1].pk])
    response = client.post(state, {"action": "done"}, headers=HTMX)
    assert response.status_code == 200 and "inbox:changed" in response["HX-Trigger"]
    html = response.content.decode()
    assert "Done by Tom Teammate" in html and ">Reopen<" in html
    response = client.post(state, {"action": "snooze", "until": "tomorrow"}, headers=HTMX)
    assert "Snoozed until" in response.content.decode()
    thread.refresh_from_db()
    assert thread.status == "snoozed" and thread.snoozed_until > timezone.now()
    typed = (timezone.localtime() + LATER).strftime("%Y-%m-%dT%H:%M")
    client.post(state, {"action": "snooze", "until_at": typed}, headers=HTMX)
    assert client.post(state, {"action": "snooze", "until_at": "soon"}).status_code == 422
    assert client.post(state, {"action": "assign", "assignee": sofia.pk}).status_code == 302
    assert Thread.objects.get(pk=thread.pk).assignee == sofia
    outsider = f.UserFactory(username="nosy")
    response = client.post(state, {"action": "assign", "assignee": outsider.pk})
    assert response.status_code == 422
    assert client.post(state, {"action": "explode"}).status_code == 422


def test_bulk_from_the_list(team, teammate, sofia, client):
    threads = [_thread(team["inbox"])[0] for _ in range(3)]
    other = f.SharedMailboxFactory(email_address="sales@relay.test")
    foreign, _ = _thread(mailkit.folders(other)["inbox"])
    client = _client(client, teammate)
    url = reverse("inbox:bulk")
    ids = [t.pk for t in threads[:2]]
    data = {"mailbox": team["mailbox"].pk, "thread": ids + [foreign.pk]}

    response = client.post(url, {**data, "action": "assign", "assignee": sofia.pk}, headers=HTMX)
    assert response.status_code == 204 and "inbox:changed" in response["HX-Trigger"]
    response = client.post(url, {**data, "action": "snooze", "until": "monday"})
    assert response.status_code == 302
    assert set(Thread.objects.filter(pk__in=ids).values_list("status", "assignee")) == {
        ("snoozed", sofia.pk)
    }
    # The conversation of another mailbox was not touched, nor the one not ticked.
    assert Thread.objects.get(pk=foreign.pk).status == "open"
    assert Thread.objects.get(pk=threads[2].pk).assignee is None
    # Only foreign threads: the same 404 as missing ones.
    response = client.post(
        url, {"mailbox": team["mailbox"].pk, "thread": [foreign.pk], "action": "done"}
    )
    assert response.status_code == 404
    response = client.post(url, {"mailbox": other.pk, "thread": [foreign.pk], "action": "done"})
    assert response.status_code == 404
    assert Thread.objects.get(pk=foreign.pk).status == "open"


def test_bulk_from_all_mailboxes_acts_on_each_conversation_by_its_own_mailbox(
    team, teammate, sofia, client
):
    """docs/product.md §7.8: from All mailboxes the bulk bar acts across mailboxes; each ticked
    conversation is checked against the user's access to its own mailbox, so a selection that
    mixes in a mailbox the user may not read never touches it."""
    ours, ours_messages = _thread(team["inbox"], subject="Support one", seen=False)
    personal = f.MailboxFactory(owner=teammate, email_address="tom@relay.test")
    personal_folders = mailkit.folders(personal)
    mine, mine_messages = _thread(personal_folders["inbox"], subject="Mine", seen=False)
    bare = f.SharedMailboxFactory(email_address="noarchive@relay.test")
    bare.granted_users.add(teammate)
    bare_inbox = f.FolderFactory(mailbox=bare, name="INBOX", special_use="inbox")
    lone, _ = _thread(bare_inbox, subject="No archive here")
    other = f.SharedMailboxFactory(email_address="sales@relay.test")
    foreign, foreign_messages = _thread(mailkit.folders(other)["inbox"], subject="Not yours")
    client = _client(client, teammate)
    url = reverse("inbox:bulk")
    everything = [ours.pk, mine.pk, lone.pk, foreign.pk]

    # The list offers the bar and the ticks there.
    html = client.get(reverse("inbox:inbox_page") + "?mailbox=all").content.decode()
    assert 'id="bulk-form"' in html and 'name="mailbox" value="all"' in html
    assert html.count('class="form-check-input inbox-thread-check"') == 3
    assert 'value="archive"' in html and 'value="trash"' in html

    response = client.post(
        url, {"mailbox": "all", "thread": everything, "action": "done"}, headers=HTMX
    )
    assert response.status_code == 204 and "3 conversations changed" in response["HX-Trigger"]
    assert {t.status for t in Thread.objects.filter(pk__in=[ours.pk, mine.pk, lone.pk])} == {"done"}
    response = client.post(url, {"mailbox": "all", "thread": everything, "action": "mark_read"})
    assert response.status_code == 302
    assert Message.objects.get(pk=mine_messages[0].pk).seen  # a personal mailbox: \Seen
    assert ThreadRead.objects.filter(user=teammate, thread=ours).exists()  # shared: mine alone
    client.post(url, {"mailbox": "all", "thread": everything, "action": "mark_unread"})
    assert not Message.objects.get(pk=mine_messages[0].pk).seen

    # Archive where the mailbox has one; the mailbox without is left alone, and says so.
    response = client.post(
        url, {"mailbox": "all", "thread": everything, "action": "archive"}, headers=HTMX
    )
    assert "2 conversations moving to Archive" in response["HX-Trigger"]
    assert "1 left where they are" in response["HX-Trigger"]
    moves = PendingChange.objects.filter(action="move")
    assert {(c.mailbox_id, c.target_folder) for c in moves} == {
        (team["mailbox"].pk, "Archive"),
        (personal.pk, "Archive"),
    }
    client.post(url, {"mailbox": "all", "thread": [mine.pk], "action": "trash"})
    assert PendingChange.objects.filter(action="delete", mailbox=personal).count() == 1

    # The mailbox Tom may not read was never touched.
    foreign.refresh_from_db()
    assert foreign.status == "open"
    assert not PendingChange.objects.filter(mailbox=other).exists()
    assert not ThreadRead.objects.filter(thread=foreign).exists()
    assert not ThreadEvent.objects.filter(thread=foreign).exists()
    assert Message.objects.get(pk=foreign_messages[0].pk).seen is True
    # Only conversations of unreadable mailboxes: the same 404 as missing ones.
    for action in ("done", "mark_unread", "archive", "trash", "assign_me"):
        response = client.post(url, {"mailbox": "all", "thread": [foreign.pk], "action": action})
        assert response.status_code == 404
    # Assigning someone who may not read one of the mailboxes: all or nothing.
    response = client.post(
        url,
        {"mailbox": "all", "thread": [ours.pk, mine.pk], "action": "assign", "assignee": sofia.pk},
    )
    assert response.status_code == 302
    assert Thread.objects.get(pk=ours.pk).assignee is None


# --- Reading is personal ---------------------------------------------------------------------


def test_reading_a_shared_conversation_reads_it_for_me_only(team, teammate, sofia, client):
    thread, messages = _thread(team["inbox"], subject="Printer jams", size=2, seen=False)
    mailbox = team["mailbox"]
    tom = _client(client, teammate)
    action = reverse("inbox:message_action", args=[messages[-1].pk])
    assert tom.post(action, {"action": "mark_read"}).status_code == 302

    def unread_for(user) -> int:
        c = _client(client, user)
        html = c.get(reverse("inbox:inbox_page") + f"?mailbox={mailbox.pk}").content.decode()
        return html.count("inbox-thread is-unread")

    assert unread_for(teammate) == 0
    assert unread_for(sofia) == 1
    # Nothing written to the server, nor to the message every reader shares.
    assert not PendingChange.objects.exists()
    assert not Message.objects.filter(pk__in=[m.pk for m in messages], seen=True).exists()

    # New mail in the conversation is unread for Tom again; Sofia's filter agrees with hers.
    (new,) = Message.objects.bulk_create(
        [
            Message(
                mailbox=mailbox,
                thread=thread,
                sha256="n" * 64,
                subject="Re: Printer jams",
                date=timezone.now(),
            )
        ]
    )
    assert unread_for(teammate) == 1
    html = (
        _client(client, sofia)
        .get(reverse("inbox:inbox_page") + f"?mailbox={mailbox.pk}&unread=on")
        .content.decode()
    )
    assert "Printer jams" in html

    # Tom marks it unread again: for him alone.
    conversation_mark_read(user=teammate, thread=thread)
    conversation_mark_unread(user=teammate, message=new)
    row = ThreadRead.objects.get(user=teammate, thread=thread)
    assert row.read_up_to == new.pk - 1
    assert unread_for(teammate) == 1


def test_personal_mailbox_writes_seen_unless_its_owner_turns_it_off(owner, personal_mailbox):
    folders = mailkit.folders(personal_mailbox)
    thread, messages = _thread(folders["inbox"], seen=False)
    conversation_mark_read(user=owner, thread=thread)
    assert Message.objects.get(pk=messages[0].pk).seen
    assert PendingChange.objects.filter(action="mark_read").count() == 1

    Mailbox.objects.filter(pk=personal_mailbox.pk).update(write_seen_to_server=False)
    thread = Thread.objects.select_related("mailbox").get(pk=thread.pk)
    conversation_mark_unread(user=owner, message=Message.objects.get(pk=messages[0].pk))
    assert not Message.objects.get(pk=messages[0].pk).seen
    assert PendingChange.objects.count() == 1
    assert not ThreadRead.objects.exists()


def test_mailbox_setting_defaults_by_kind_and_is_saved_from_the_settings_page(
    owner, personal_mailbox, client
):
    shared = f.SharedMailboxFactory()
    assert personal_mailbox.writes_seen and not shared.writes_seen
    c = _client(client, owner)
    url = reverse("inbox:mailbox_settings", args=[personal_mailbox.pk])
    html = c.get(url).content.decode()
    assert "Write read and unread back to the mail server" in html
    response = c.post(
        url,
        {
            "display_name": "Mine",
            "refresh_interval": 300,
            "privacy": "subject",
            "reply_sets_waiting": "",
        },
    )
    assert response.status_code == 302
    personal_mailbox.refresh_from_db()
    assert personal_mailbox.write_seen_to_server is False
    assert personal_mailbox.reply_sets_waiting is False


# --- Tickets ---------------------------------------------------------------------------------


def test_ticket_and_conversation_move_together(team, teammate, client):
    mailbox = team["mailbox"]
    Mailbox.objects.filter(pk=mailbox.pk).update(create_tickets=True)
    raw = filingkit_raw("My printer is on fire", message_id="<fire@customer.example>")
    (message,) = filingkit.receive(mailbox, raw)
    ticket = Ticket.objects.get()
    thread = message.thread
    assert thread.status == "open" and ticket.status == "open"

    # Done in the inbox resolves the ticket.
    conversation_set_status(actor=teammate, thread=thread, status="done")
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.RESOLVED

    # The customer writes again: the conversation and the ticket reopen.
    (reply,) = filingkit.receive(
        mailbox, filingkit_raw("Re: still burning", in_reply_to="<fire@customer.example>")
    )
    assert reply.thread_id == thread.pk
    thread.refresh_from_db()
    ticket.refresh_from_db()
    assert (thread.status, ticket.status) == ("open", Ticket.Status.OPEN)

    # Closing the ticket on its page marks the conversation Done, with why.
    c = _client(client, teammate)
    response = c.post(
        reverse("crm:ticket_update", args=[ticket.pk]),
        {"subject": ticket.subject, "status": "closed", "priority": "normal"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    thread.refresh_from_db()
    assert thread.status == "done"
    assert event_text(ThreadEvent.objects.filter(thread=thread).last()) == (
        f"Done: {ticket.reference} is resolved"
    )

    # New mail naming the closed ticket (a new thread) reopens it, and its conversations.
    (again,) = filingkit.receive(mailbox, filingkit_raw(f"[{ticket.reference}] on fire again"))
    assert again.thread_id != thread.pk
    ticket.refresh_from_db()
    thread.refresh_from_db()
    assert (ticket.status, thread.status) == (Ticket.Status.OPEN, "open")
    assert event_text(ThreadEvent.objects.filter(thread=thread).last()) == (
        f"Open: {ticket.reference} is open again"
    )

    # An out-of-office answer reopens nothing.
    conversation_set_status(actor=teammate, thread=thread, status="done")
    raw = filingkit_raw("Auto: away", in_reply_to="<fire@customer.example>")
    filingkit.receive(
        mailbox, raw.replace(b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:")
    )
    thread.refresh_from_db()
    ticket.refresh_from_db()
    assert (thread.status, ticket.status) == ("done", Ticket.Status.RESOLVED)


def filingkit_raw(subject, *, message_id=None, in_reply_to=None) -> bytes:
    from tests.connector.synckit import make_raw

    return make_raw(
        subject,
        sender="Ana Lopez <ana@globex.example>",
        message_id=message_id or True,
        in_reply_to=in_reply_to,
    )
