"""Notifications (docs/product.md §7.10): the notify service and its preferences, the bell and
the notifications page, and each kind wired to its real source (the sync against Dovecot, the
filing of real mail, the admin changing a mailbox's server)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connector.sync import mailbox as sync
from inbox.models import Mailbox
from inbox.services.mailboxes import mailbox_admin_update
from notifications.models import Kind, Notification
from notifications.services import notify, notify_assigned, set_preferences
from tests import factories as f
from tests.conftest import login
from tests.connector.filingkit import file, mail, receive
from tests.connector.synckit import make_mailbox, make_raw

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def bell_count(client) -> str:
    text = client.get(reverse("notifications:bell"), headers=HTMX).content.decode()
    return text.split('data-unread="')[1].split('"')[0]


# --- the service ---------------------------------------------------------------------------


def test_notify_tells_once_per_key_and_never_the_actor(owner, teammate):
    first = notify(recipient=teammate, kind=Kind.MENTIONED, text="hi", key="note:1", actor=owner)
    assert first is not None and first.in_app and first.email_pending
    assert notify(recipient=teammate, kind=Kind.MENTIONED, text="hi", key="note:1") is None
    assert notify(recipient=owner, kind=Kind.MENTIONED, text="me", key="x", actor=owner) is None
    teammate.is_active = False
    teammate.save()
    assert notify(recipient=teammate, kind=Kind.MENTIONED, text="gone", key="note:2") is None
    assert Notification.objects.count() == 1
    with pytest.raises(ValueError):
        notify(recipient=owner, kind="nonsense", text="?")


def test_preferences_choose_the_channels_per_kind(client, teammate):
    set_preferences(
        user=teammate,
        choices={Kind.MENTIONED: (False, True), Kind.RECONNECT: (True, False)},
    )
    set_preferences(user=teammate, choices={Kind.SEND_FAILED: (False, False)})
    mail_only = notify(recipient=teammate, kind=Kind.MENTIONED, text="m", key="1")
    app_only = notify(recipient=teammate, kind=Kind.RECONNECT, text="r", key="2")
    nothing = notify(recipient=teammate, kind=Kind.SEND_FAILED, text="s", key="3")
    default = notify(recipient=teammate, kind=Kind.REPLIED, text="d", key="4")
    assert (mail_only.in_app, mail_only.email_pending) == (False, True)
    assert (app_only.in_app, app_only.email_pending) == (True, False)
    assert nothing is None
    assert (default.in_app, default.email_pending) == (True, True)
    login(client, teammate)
    assert bell_count(client) == "2"  # the mail-only one is not in the bell
    page = client.get(reverse("notifications:list")).content.decode()
    assert ">r</a>" in page and ">d</a>" in page and ">m</a>" not in page
    # Each kind is told apart at a glance: its badge, and a warning sign for what needs action.
    badges = dict(re.findall(r'data-kind="(\w+)">([^<]+)<', page))
    assert badges == {"reconnect": "Needs reconnecting", "replied": "Customer replied"}
    assert 'text-bg-warning" aria-hidden="true">!</span>' in page


def test_the_settings_page_saves_the_switches(client, teammate):
    login(client, teammate)
    page = client.get(reverse("notifications:settings")).content.decode()
    assert 'name="mentioned-email" id="mentioned-email" checked' in page
    # Everything on except mentions by mail.
    data = {f"{kind}-{channel}": "on" for kind in Kind.values for channel in ("in_app", "email")}
    del data["mentioned-email"]
    response = client.post(reverse("notifications:settings"), data)
    assert response.status_code == 302
    page = client.get(reverse("notifications:settings")).content.decode()
    assert re.search(r'id="mentioned-email"\s+aria-label', page)
    assert re.search(r'id="mentioned-in_app"\s+checked', page)
    note = notify(recipient=teammate, kind=Kind.MENTIONED, text="x", key="k")
    assert note.in_app and not note.email_pending


def test_documented_hook_for_assignment_tells_the_assignee(owner, teammate):
    made = notify_assigned(
        assignee=teammate, actor=owner, label="TKT-7", url="/tickets/7/", key="ticket:7:1"
    )
    assert made.kind == Kind.ASSIGNED and made.text == "Olivia Owner assigned TKT-7 to you"
    assert notify_assigned(assignee=owner, actor=owner, label="x", url="", key="k") is None


# --- the bell and the page -----------------------------------------------------------------


def test_bell_page_mark_read_and_mark_all_read(client, owner, teammate):
    for i in range(3):
        notify(
            recipient=teammate, kind=Kind.MENTIONED, text=f"note {i}", url="/tickets/", key=str(i)
        )
    notify(recipient=owner, kind=Kind.MENTIONED, text="owner's", key="o")
    login(client, teammate)
    assert bell_count(client) == "3"
    page = client.get(reverse("crm:contact_list")).content.decode()
    assert reverse("notifications:bell") in page and 'hx-trigger="load, every 30s' in page

    first = Notification.objects.get(recipient=teammate, key="0")
    client.post(reverse("notifications:mark_read"), {"id": first.pk})
    assert bell_count(client) == "2"
    # Following one reads it and goes where it points.
    second = Notification.objects.get(recipient=teammate, key="1")
    opened = client.get(reverse("notifications:open", args=[second.pk]))
    assert opened.status_code == 302 and opened.url == "/tickets/"
    assert bell_count(client) == "1"
    # Someone else's notification is not there for this user.
    other = Notification.objects.get(recipient=owner)
    assert client.get(reverse("notifications:open", args=[other.pk])).status_code == 404
    client.post(reverse("notifications:mark_read"), {"id": other.pk})
    assert Notification.objects.get(pk=other.pk).read_at is None

    client.post(reverse("notifications:mark_read"), {"all": "1"})
    assert bell_count(client) == "0"
    assert Notification.objects.get(pk=other.pk).read_at is None
    assert "All read" in client.get(reverse("notifications:list")).content.decode()


def test_a_notification_never_redirects_off_site(client, teammate):
    note = notify(recipient=teammate, kind=Kind.MENTIONED, text="x", url="https://evil.example/")
    login(client, teammate)
    response = client.get(reverse("notifications:open", args=[note.pk]))
    assert response.url == reverse("notifications:list")


def test_bell_and_page_take_the_same_queries_for_3_or_300(client, teammate):
    login(client, teammate)

    def counts():
        result = []
        for url, headers in (
            (reverse("notifications:bell"), HTMX),
            (reverse("notifications:list"), {}),
            (reverse("notifications:list") + "?page=2", {}),
        ):
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url, headers=headers).status_code == 200
            result.append(len(queries))
        return result

    def add(n, start):
        Notification.objects.bulk_create(
            Notification(recipient=teammate, kind=Kind.MENTIONED, text=f"n{i}", actor=teammate)
            for i in range(start, start + n)
        )

    add(30, 0)
    few = counts()
    add(270, 30)
    assert counts() == few
    assert max(few) <= 9, few


# --- each kind from its real source --------------------------------------------------------


def test_a_mailbox_whose_login_is_refused_tells_its_owner_once(
    imap_user, django_capture_on_commit_callbacks
):
    owner = f.UserFactory(username="pat")
    mailbox = make_mailbox(imap_user, owner=owner, password="not-the-password")
    with django_capture_on_commit_callbacks(execute=True):
        assert sync.sync_mailbox(mailbox.pk).outcome == "needs_reconnect"
    (note,) = Notification.objects.filter(recipient=owner)
    assert note.kind == Kind.RECONNECT
    assert f"{mailbox.email_address} needs reconnecting" in note.text
    assert note.url == reverse("inbox:mailbox_reconnect", args=[mailbox.pk])
    # Syncing again (refused while stopped) tells no one again.
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
    with django_capture_on_commit_callbacks(execute=True):
        sync.sync_mailbox(mailbox.pk)
    assert Notification.objects.filter(recipient=owner).count() == 1


def test_a_shared_mailbox_that_needs_reconnecting_tells_the_admins(
    imap_user, admin_user, teammate, django_capture_on_commit_callbacks
):
    mailbox = make_mailbox(imap_user, password="not-the-password")
    Mailbox.objects.filter(pk=mailbox.pk).update(kind=Mailbox.Kind.SHARED, owner=None)
    mailbox.granted_users.add(teammate)
    with django_capture_on_commit_callbacks(execute=True):
        sync.sync_mailbox(mailbox.pk)
    assert list(Notification.objects.values_list("recipient__username", "kind")) == [
        ("admin", Kind.RECONNECT)
    ]


def test_an_admin_changing_a_personal_mailboxs_server_tells_its_owner(
    owner, admin_user, personal_mailbox, django_capture_on_commit_callbacks
):
    personal_mailbox.imap_host = "imap.elsewhere.example"
    with django_capture_on_commit_callbacks(execute=True):
        mailbox_admin_update(user=admin_user, mailbox=personal_mailbox)
    (note,) = Notification.objects.all()
    assert note.recipient == owner and note.actor == admin_user
    assert "Ada Admin changed its server settings" in note.text


@pytest.fixture
def support(db):
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test", create_tickets=True)
    account = f.AccountFactory(name="Acme", domains=["acme.example"])
    contact = f.ContactFactory(first_name="Ana", emails=["ana@acme.example"], account=account)
    return mailbox, contact


def test_a_customer_reply_on_a_ticket_tells_its_assignee(
    support, teammate, owner, django_capture_on_commit_callbacks
):
    mailbox, contact = support
    ticket = f.TicketFactory(subject="Printer", contact=contact, assignee=teammate)
    f.StaffEmailFactory(user=owner, email="olivia@relay.test")
    raw = make_raw(f"Re: [{ticket.reference}] Printer", sender="Ana <ana@acme.example>")
    with django_capture_on_commit_callbacks(execute=True):
        (message,) = receive(mailbox, raw)
    assert message.filings.filter(ticket=ticket).exists()
    (note,) = Notification.objects.all()
    assert note.recipient == teammate and note.kind == Kind.REPLIED
    assert note.text == f"Ana replied on {ticket.reference} Printer"
    assert note.url == ticket.get_absolute_url()
    # Staff mail on the ticket tells no one.
    staff_raw = make_raw(f"Re: [{ticket.reference}] Printer", sender="Olivia <olivia@relay.test>")
    with django_capture_on_commit_callbacks(execute=True):
        receive(mailbox, staff_raw)
    assert Notification.objects.count() == 1


def test_a_reply_on_an_unassigned_ticket_tells_no_one(support, django_capture_on_commit_callbacks):
    mailbox, contact = support
    ticket = f.TicketFactory(subject="Printer", contact=contact)
    with django_capture_on_commit_callbacks(execute=True):
        receive(mailbox, make_raw(f"Re: [{ticket.reference}] x", sender="ana@acme.example"))
    assert not Notification.objects.exists()


def test_history_from_a_first_sync_tells_no_one(
    support, teammate, django_capture_on_commit_callbacks
):
    mailbox, contact = support
    ticket = f.TicketFactory(subject="Printer", contact=contact, assignee=teammate)
    old = mail(mailbox, sender="ana@acme.example", subject=f"Re: [{ticket.reference}] Printer")
    with django_capture_on_commit_callbacks(execute=True):
        file(old, initial=True)
    assert old.filings.filter(ticket=ticket).exists()
    assert not Notification.objects.exists()
    # The same kind of mail arriving later does tell the assignee.
    new = mail(mailbox, sender="ana@acme.example", subject=f"Re: [{ticket.reference}] Printer")
    with django_capture_on_commit_callbacks(execute=True):
        file(new)
    assert Notification.objects.get().recipient == teammate


# --- conversations with an owner (docs/product.md §7.8) --------------------------------------


def test_assigning_a_conversation_tells_the_assignee_but_not_who_took_it(
    client, support, owner, teammate, django_capture_on_commit_callbacks
):
    from inbox.services.conversations import conversation_assign

    mailbox, _ = support
    mailbox.granted_users.add(owner, teammate)
    (message,) = receive(mailbox, make_raw("Printer on fire", sender="Ana <ana@acme.example>"))
    thread = message.thread
    with django_capture_on_commit_callbacks(execute=True):
        conversation_assign(actor=owner, thread=thread, assignee=teammate)
    (note,) = Notification.objects.filter(kind=Kind.ASSIGNED)
    assert note.recipient == teammate
    assert note.text == "Olivia Owner assigned “Printer on fire” (support@relay.test) to you"
    assert note.url == reverse("inbox:conversation", args=[thread.pk])
    # Taking it oneself tells no one; given back later, the assignee is told again.
    with django_capture_on_commit_callbacks(execute=True):
        conversation_assign(actor=owner, thread=thread, assignee=owner)
        conversation_assign(actor=owner, thread=thread, assignee=teammate)
    assert Notification.objects.filter(kind=Kind.ASSIGNED, recipient=teammate).count() == 2
    assert not Notification.objects.filter(recipient=owner).exists()
    # The bell shows it to Tom.
    login(client, teammate)
    assert "Printer on fire" in client.get(reverse("notifications:list")).content.decode()


def test_a_customer_reply_on_my_conversation_tells_me_once(
    support, owner, teammate, django_capture_on_commit_callbacks
):
    from inbox.services.conversations import conversation_assign

    mailbox, contact = support
    mailbox.granted_users.add(teammate)
    f.StaffEmailFactory(user=owner, email="olivia@relay.test")
    (first,) = receive(
        mailbox, make_raw("Invoice", sender="Ana <ana@acme.example>", message_id="<i1@acme>")
    )
    conversation_assign(actor=None, thread=first.thread, assignee=teammate)
    Notification.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        (reply,) = receive(
            mailbox,
            make_raw("Re: Invoice", sender="Ana <ana@acme.example>", in_reply_to="<i1@acme>"),
        )
    assert reply.thread_id == first.thread_id
    (note,) = Notification.objects.all()
    assert (note.recipient, note.kind) == (teammate, Kind.REPLIED)
    assert note.text == "Ana replied on “Invoice”"
    # A colleague's mail in it tells no one.
    with django_capture_on_commit_callbacks(execute=True):
        receive(
            mailbox,
            make_raw("Re: Invoice", sender="Olivia <olivia@relay.test>", in_reply_to="<i1@acme>"),
        )
    assert Notification.objects.count() == 1
