"""The Outbox page's cost, the server's answers in plain words, replies leaving from the
conversation's mailbox, presence on a conversation and the "someone replied meanwhile"
question (docs/product.md §5.4). No mail server is needed here: the entries are rows as the
sending code leaves them (tests/inbox/test_outbox.py sends through the real one)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from inbox.models import Mailbox, OutboxEntry
from inbox.selectors.outbox import explain_send_error
from inbox.services import presence
from tests import factories as f
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db

FAILED = OutboxEntry.State.FAILED


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def support(shared_mailbox, teammate, owner):
    """support@ granted to Tom and Olivia; a customer's conversation in it; Olivia also has
    her personal mailbox (her primary)."""
    shared_mailbox.granted_users.add(owner)
    folders = mailkit.folders(shared_mailbox)
    (message,) = mailkit.conversation(
        folders["inbox"], subject="Printer on fire", sender="ana@acme.example", name="Ana"
    )
    return {"mailbox": shared_mailbox, "message": message}


# --- plain words ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state,raw,expected",
    [
        (
            FAILED,
            "every recipient was refused: bob@acme.example: 550 5.1.1 <bob@acme.example>: "
            "Recipient address rejected: User unknown in virtual mailbox table",
            "The address bob@acme.example does not exist",
        ),
        (
            FAILED,
            "SMTP RCPT TO: 554 b'5.7.1 <x@y.example>: Relay access denied'",
            "relaying denied",
        ),
        (FAILED, "SMTP DATA: 550 b'5.7.1 Message rejected as spam'", "policy reasons"),
        (FAILED, "SMTP login: login refused (535)", "refused the mailbox's sign-in"),
        (
            FAILED,
            "SMTP DATA: 552 b'5.3.4 Message size exceeds fixed limit'",
            "too big for the mail server",
        ),
        (
            FAILED,
            "gave up after 12 attempts: SMTP DATA: 451 b'4.3.0 Try again later'",
            "Relay kept trying, but the mail server asked to try again later",
        ),
        (
            OutboxEntry.State.RETRYING,
            "SMTP MAIL FROM: 421 b'4.7.0 Too many connections'",
            "asked to try again later",
        ),
        (
            FAILED,
            "SMTP connect: certificate not trusted: self-signed certificate",
            "secure connection to the outgoing mail server failed",
        ),
        (FAILED, "SMTP connect: TLS failed: wrong version number", "secure connection"),
        (FAILED, "SMTP connect: [Errno 111] Connection refused", "refused the connection"),
        (FAILED, "SMTP connect: timed out", "did not answer in time"),
        (
            OutboxEntry.State.VERIFY,
            "Not found in the Sent folder.",
            "nobody knows whether it went out",
        ),
        (
            OutboxEntry.State.RETRYING,
            "Waiting for the mailbox to be reconnected: SMTP login: login refused (535)",
            "no longer accepts its sign-in",
        ),
        (FAILED, "SMTP DATA: 554 b'Go away'", "The mail server refused the message."),
    ],
)
def test_the_servers_answer_in_plain_words(state, raw, expected):
    explanation = explain_send_error(state, raw)
    assert expected in explanation.headline
    assert explanation.raw == raw  # kept as it was, for whoever wants it


# --- the Outbox page ------------------------------------------------------------------------


def _entries(mailbox, author, n: int) -> None:
    states = [OutboxEntry.State.SENT, FAILED, OutboxEntry.State.VERIFY, OutboxEntry.State.QUEUED]
    OutboxEntry.objects.bulk_create(
        OutboxEntry(
            mailbox=mailbox,
            created_by=author,
            state=states[i % len(states)],
            message_id=f"<bulk{mailbox.pk}-{n}-{i}@relay.test>",
            from_address=mailbox.email_address,
            to=["ana@acme.example"],
            subject=f"Entry {i}",
            last_error="every recipient was refused: a@b.example: 550 5.1.1 unknown"
            if states[i % len(states)] == FAILED
            else "",
            recipient_status={"ana@acme.example": "accepted"},
        )
        for i in range(n)
    )


@pytest.mark.parametrize("persona", ["teammate", "admin_user"])
def test_outbox_page_costs_the_same_for_3_or_300_entries(
    client, request, support, django_assert_max_num_queries, persona
):
    user = request.getfixturevalue(persona)
    teammate = request.getfixturevalue("teammate")
    client.force_login(user)
    _entries(support["mailbox"], teammate, 3)
    with django_assert_max_num_queries(12) as few:
        assert client.get(reverse("inbox:outbox")).status_code == 200
    _entries(support["mailbox"], teammate, 297)
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        html = client.get(reverse("inbox:outbox")).content.decode()
    assert html.count("data-outbox-entry=") == 50  # a page of them
    assert len(many.captured_queries) == len(few.captured_queries)


def test_outbox_filters_show_what_needs_you(client, support, teammate):
    _entries(support["mailbox"], teammate, 8)
    client.force_login(teammate)
    html = client.get(reverse("inbox:outbox") + "?show=problems").content.decode()
    assert html.count('data-state="failed"') == 2 and html.count('data-state="verify"') == 2
    assert 'data-state="sent"' not in html


# --- replies leave from the conversation's mailbox ------------------------------------------


def test_a_reply_leaves_from_the_conversations_mailbox_not_my_primary(
    client, owner, personal_mailbox, support
):
    from inbox.services.mailboxes import mailbox_set_primary

    mailbox_set_primary(user=owner, mailbox=personal_mailbox)
    client.force_login(owner)
    message = support["message"]
    url = reverse("inbox:compose") + f"?reply_to={message.pk}&mode=reply"
    html = client.get(url).content.decode()
    assert f'<option value="{support["mailbox"].pk}" selected>' in html
    # The warning is there for the browser to show, hidden while support@ is chosen.
    assert 'id="personal-sender-warning" role="status" hidden' in html
    assert f'<option value="{personal_mailbox.pk}" data-personal>' in html

    response = client.post(
        reverse("inbox:compose"),
        {
            "reply_to": message.pk,
            "mode": "reply",
            "mailbox": support["mailbox"].pk,
            "to": "ana@acme.example",
            "body": "On it.",
        },
    )
    assert response.status_code == 302
    entry = OutboxEntry.objects.get(created_by=owner)
    assert entry.mailbox == support["mailbox"] and entry.from_address == "support@relay.test"


def test_choosing_a_personal_address_on_a_shared_conversation_warns(
    client, owner, personal_mailbox, support
):
    client.force_login(owner)
    message = support["message"]
    url = reverse("inbox:compose") + (
        f"?reply_to={message.pk}&mode=reply&mailbox={personal_mailbox.pk}"
    )
    html = client.get(url).content.decode()
    assert 'id="personal-sender-warning" role="status">' in html
    assert "This conversation belongs to support@relay.test" in html


def test_no_warning_on_a_personal_conversation(client, owner, personal_mailbox):
    folders = mailkit.folders(personal_mailbox)
    (message,) = mailkit.conversation(folders["inbox"], subject="Lunch?")
    client.force_login(owner)
    html = client.get(
        reverse("inbox:compose") + f"?reply_to={message.pk}&mode=reply"
    ).content.decode()
    assert "personal-sender-warning" not in html


# --- presence ---------------------------------------------------------------------------------


def test_two_users_on_a_conversation_see_each_other_and_who_is_writing(
    client, owner, teammate, support
):
    message = support["message"]
    url = reverse("inbox:presence", args=[message.pk])
    client.force_login(teammate)
    assert "Olivia" not in client.post(url, {"composing": "0"}).content.decode()
    client.force_login(owner)
    html = client.post(url, {"composing": "1"}).content.decode()
    assert "Tom Teammate is viewing" in html
    client.force_login(teammate)
    html = client.post(url, {"composing": "0"}).content.decode()
    assert "Olivia Owner is writing a reply" in html
    # The conversation page carries the poller, which refreshes itself.
    page = client.get(reverse("inbox:conversation", args=[message.pk])).content.decode()
    assert url in page and 'hx-trigger="load, relay-presence, every 10s"' in page


def test_presence_expires_without_a_refresh(owner, teammate, support):
    message = support["message"]
    now = timezone.now().timestamp()
    presence.presence_touch(user=owner, message=message, composing=True, now=now)
    assert presence.presence_others(user=teammate, message=message, now=now + 5) == [
        {"name": "Olivia Owner", "composing": True}
    ]
    later = now + presence.PRESENCE_TTL + 1
    assert presence.presence_others(user=teammate, message=message, now=later) == []


def test_sending_clears_writing_whatever_the_colleagues_refresh_and_a_late_compose_refresh(
    owner, teammate, support
):
    """Tom's page refreshes while Olivia sends: his refresh must not put back her "writing";
    nor may a refresh her compose page sent before the reply went (it lands after), however
    late it lands."""
    message = support["message"]
    now = timezone.now().timestamp()
    token = presence.composer_token()
    presence.presence_touch(user=owner, message=message, composing=True, composer=token, now=now)
    presence.presence_touch(user=teammate, message=message, composing=False, now=now + 1)
    presence.presence_done_writing(user=owner, message=message, composer=token, now=now + 2)
    assert presence.presence_others(user=teammate, message=message, now=now + 2) == [
        {"name": "Olivia Owner", "composing": False}
    ]
    presence.presence_touch(user=teammate, message=message, composing=False, now=now + 3)
    late = now + 2 + presence.PRESENCE_REFRESH + 5  # later than any refresh interval
    presence.presence_touch(user=owner, message=message, composing=True, composer=token, now=late)
    presence.presence_touch(user=owner, message=message, composing=False, now=late + 1)
    assert presence.presence_others(user=teammate, message=message, now=late + 2) == [
        {"name": "Olivia Owner", "composing": False}
    ]
    # A new reply (a new composer) is writing again.
    presence.presence_touch(
        user=owner, message=message, composing=True, composer=presence.composer_token(), now=late
    )
    assert presence.presence_others(user=teammate, message=message, now=late + 2) == [
        {"name": "Olivia Owner", "composing": True}
    ]


def test_a_compose_refresh_racing_the_send_never_puts_writing_back(
    owner, teammate, support, monkeypatch
):
    """docs/reliability.md X-21: the compose page's refresh reads, the send ends the composer,
    then the refresh writes. Whatever the interleaving, the colleague sees "viewing" at once,
    not "writing" until the mark expires (the flaky presence test in CI)."""
    message = support["message"]
    token = presence.composer_token()
    presence.presence_touch(user=owner, message=message, composing=True, composer=token)
    real_set, landed = presence.cache.set, []

    def set_after_the_send(key, *args, **kwargs):
        if not landed and key.endswith(f":{owner.pk}:writing"):
            landed.append(key)  # the send lands just before the refresh's write
            presence.presence_done_writing(user=owner, message=message, composer=token)
        return real_set(key, *args, **kwargs)

    monkeypatch.setattr(presence.cache, "set", set_after_the_send)
    presence.presence_touch(user=owner, message=message, composing=True, composer=token)
    monkeypatch.undo()
    assert landed
    assert presence.presence_others(user=teammate, message=message) == [
        {"name": "Olivia Owner", "composing": False}
    ]


def test_leaving_or_folding_the_composer_ends_writing_at_once(client, owner, teammate, support):
    """The page's beacon (leaving=1) and the inline reply folded (composing=0 with its
    composer) clear the mark; the colleague's poller then comes back within seconds."""
    message = support["message"]
    url = reverse("inbox:presence", args=[message.pk])
    token = presence.composer_token()
    client.force_login(owner)
    client.post(url, {"composing": "1", "composer": token})
    client.force_login(teammate)
    html = client.post(url, {"composing": "0"}).content.decode()
    assert "Olivia Owner is writing a reply" in html
    assert f"every {presence.PRESENCE_WATCH_REFRESH}s" in html  # watched closely meanwhile
    client.force_login(owner)
    client.post(url, {"composing": "0", "composer": token})  # the inline reply folded
    client.force_login(teammate)
    html = client.post(url, {"composing": "0"}).content.decode()
    assert "Olivia Owner is viewing" in html and f"every {presence.PRESENCE_REFRESH}s" in html
    client.force_login(owner)
    client.post(url, {"composing": "1", "composer": token})
    client.post(url, {"leaving": "1", "composer": token})  # the page went away
    client.post(url, {"composing": "1", "composer": token})  # a refresh that was on its way
    client.force_login(teammate)
    assert "Olivia Owner is viewing" in client.post(url).content.decode()


def test_presence_cache_is_shared_between_processes_by_default(settings):
    """`make run` runs the web server (uvicorn) and the worker as separate processes, and
    gunicorn several: the default cache must not be per-process memory (crm/settings.py)."""
    import subprocess
    import sys

    code = (
        "import django,os;os.environ.setdefault('DJANGO_SETTINGS_MODULE','crm.settings');"
        "django.setup();from django.conf import settings;"
        "print(settings.CACHES['default']['BACKEND'])"
    )
    import os

    env = {k: v for k, v in os.environ.items() if k != "RELAY_CACHE_URL"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "LocMemCache" not in out and "filebased" in out.lower()


# --- someone replied meanwhile ------------------------------------------------------------


def _reply_form(message, mailbox, opened, **extra):
    return {
        "reply_to": message.pk,
        "mode": "reply",
        "mailbox": mailbox.pk,
        "to": "ana@acme.example",
        "body": "Here is the fix.",
        "opened": str(int(opened.timestamp())),
        **extra,
    }


def test_sending_after_someone_else_replied_asks_first(client, owner, teammate, support):
    message, mailbox = support["message"], support["mailbox"]
    opened = timezone.now() - dt.timedelta(minutes=3)
    f.OutboxEntryFactory(
        mailbox=mailbox,
        created_by=teammate,
        reply_to_message=message,
        subject="Re: Printer on fire",
        state=OutboxEntry.State.SENT,
        created_at=timezone.now() - dt.timedelta(minutes=2),
    )
    OutboxEntry.objects.filter(created_by=teammate).update(
        created_at=timezone.now() - dt.timedelta(minutes=2)
    )
    client.force_login(owner)
    response = client.post(reverse("inbox:compose"), _reply_form(message, mailbox, opened))
    html = response.content.decode()
    assert response.status_code == 409
    assert "Tom Teammate replied 2\xa0minutes ago" in html
    assert "Send anyway" in html and "Review" in html
    assert not OutboxEntry.objects.filter(created_by=owner).exists()
    # What was written is still there.
    assert "Here is the fix." in html

    response = client.post(
        reverse("inbox:compose"), _reply_form(message, mailbox, opened, send_anyway="1")
    )
    assert response.status_code == 302
    assert OutboxEntry.objects.filter(created_by=owner).count() == 1


def test_a_reply_sent_from_another_mail_program_asks_too(client, owner, support):
    message, mailbox = support["message"], support["mailbox"]
    f.MessageFactory(
        mailbox=mailbox,
        thread=message.thread,
        from_address="support@relay.test",
        from_name="Relay Support",
        subject="Re: Printer on fire",
        date=timezone.now() - dt.timedelta(minutes=4),
    )
    client.force_login(owner)
    opened = timezone.now() - dt.timedelta(minutes=10)
    response = client.post(reverse("inbox:compose"), _reply_form(message, mailbox, opened))
    assert response.status_code == 409
    assert "Relay Support (from another mail program) replied 4\xa0minutes ago" in (
        response.content.decode()
    )
    # Opened after it: nothing to ask.
    opened = timezone.now() - dt.timedelta(minutes=1)
    response = client.post(reverse("inbox:compose"), _reply_form(message, mailbox, opened))
    assert response.status_code == 302


def test_a_reply_before_i_opened_it_or_my_own_does_not_ask(client, owner, teammate, support):
    message, mailbox = support["message"], support["mailbox"]
    earlier = f.OutboxEntryFactory(
        mailbox=mailbox, created_by=teammate, reply_to_message=message, subject="Re: earlier"
    )
    OutboxEntry.objects.filter(pk=earlier.pk).update(
        created_at=timezone.now() - dt.timedelta(hours=1)
    )
    f.OutboxEntryFactory(mailbox=mailbox, created_by=owner, reply_to_message=message)
    client.force_login(owner)
    opened = timezone.now() - dt.timedelta(minutes=5)
    response = client.post(reverse("inbox:compose"), _reply_form(message, mailbox, opened))
    assert response.status_code == 302


# --- the admin's actions --------------------------------------------------------------------


def test_admin_actions_on_shared_entries_never_on_personal_ones(
    client, admin_user, owner, personal_mailbox, support
):
    shared_failed = f.OutboxEntryFactory(mailbox=support["mailbox"], state=FAILED)
    personal_failed = f.OutboxEntryFactory(mailbox=personal_mailbox, created_by=owner, state=FAILED)
    client.force_login(admin_user)
    url = reverse("admin:inbox_outboxentry_changelist")
    html = client.get(url).content.decode()
    assert "Send again (failed or outcome unknown)" in html
    response = client.post(
        url,
        {"action": "send_again", "_selected_action": [shared_failed.pk, personal_failed.pk]},
        follow=True,
    )
    assert response.status_code == 200
    shared_failed.refresh_from_db()
    personal_failed.refresh_from_db()
    assert shared_failed.state == OutboxEntry.State.QUEUED
    assert personal_failed.state == FAILED  # not even listed to the admin
    assert Mailbox.objects.get(pk=personal_mailbox.pk).owner == owner
