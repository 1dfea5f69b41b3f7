"""Who may see and change what on the inbox pages: owner, teammate with a grant, teammate
without, a revoked grantee, an admin without a grant, anonymous; against every page and action
that shows or changes a mailbox, message or filing. Unauthorised requests get the same 404 as a
missing object, anonymous ones go to the sign-in page, and none of them changes anything."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from inbox.models import (
    Draft,
    EmailApiSender,
    ExclusionPattern,
    Filing,
    Mailbox,
    MatchingSettings,
    Message,
    OutboxEntry,
    PendingChange,
    PrimaryMailbox,
    Thread,
    ThreadEvent,
    ThreadRead,
    TriageEntry,
)
from tests import factories as f
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
SECRET = "Quarterly numbers SECRET"


@pytest.fixture
def world(owner, teammate, outsider, admin_user, personal_mailbox, shared_mailbox):
    """Mail in Olivia's personal mailbox and in the shared support@ mailbox (granted to Tom),
    a revoked grantee (Rita, granted support@ once), a filing and a triage entry on each."""
    revoked = f.UserFactory(username="revoked", first_name="Rita")
    shared_mailbox.granted_users.add(revoked)
    shared_mailbox.granted_users.remove(revoked)
    contact = f.ContactFactory(first_name="Ana", last_name="Lopez")
    data = {"contact": contact, "revoked": revoked}
    for name, mailbox in (("personal", personal_mailbox), ("shared", shared_mailbox)):
        folders = mailkit.folders(mailbox)
        (message,) = mailkit.conversation(folders["inbox"], subject=f"{SECRET} {name}", seen=False)
        filing = f.FilingFactory(message=message, contact=contact)
        f.TriageEntryFactory(message=message)
        location = message.locations.get()
        refused = PendingChange.objects.create(
            mailbox=mailbox,
            location=location,
            folder_name=location.folder.name,
            uidvalidity=location.uidvalidity,
            uid=location.uid,
            action=PendingChange.Action.FLAG,
            done_at=timezone.now(),
            error="NO [CANNOT] refused",
        )
        data[name] = {
            "mailbox": mailbox,
            "folder": folders["inbox"],
            "archive": folders["archive"],
            "message": message,
            "filing": filing,
            "refused": refused,
        }
    return data


def _requests(target: dict, contact) -> list[tuple[str, str, dict]]:
    """(method, url, data) of every page and action on one mailbox's mail."""
    m = target["message"].pk
    box = target["mailbox"].pk
    action = reverse("inbox:message_action", args=[m])
    link = reverse("inbox:qualify_link", args=[m])
    state = reverse("inbox:conversation_state", args=[m])
    bulk = reverse("inbox:bulk")
    thread = target["message"].thread_id
    return [
        ("get", reverse("inbox:inbox_page") + f"?mailbox={box}", {}),
        ("get", reverse("inbox:inbox_page") + f"?mailbox={box}&folder={target['folder'].pk}", {}),
        ("get", reverse("inbox:inbox_poll") + f"?mailbox={box}", {}),
        ("get", reverse("inbox:inbox_page") + f"?mailbox={box}&view=open", {}),
        ("get", reverse("inbox:reports") + f"?mailbox={box}", {}),
        ("get", reverse("inbox:reports_csv") + f"?mailbox={box}&range=90", {}),
        ("get", reverse("inbox:inbox_poll") + f"?mailbox={box}&view=done", {}),
        ("get", reverse("inbox:conversation", args=[m]), {}),
        ("get", reverse("inbox:qualify_dialog", args=[m]), {}),
        ("get", reverse("inbox:qualify_search", args=[m]) + "?q=ana", {}),
        ("post", action, {"action": "mark_read"}),
        ("post", action, {"action": "mark_unread"}),
        ("post", action, {"action": "flag"}),
        ("post", action, {"action": "unflag"}),
        ("post", action, {"action": "move", "folder": target["archive"].pk}),
        ("post", action, {"action": "delete"}),
        # Delete without JavaScript asks first on a page of its own (crm/confirm.py).
        ("get", action + "?action=delete", {}),
        ("post", state, {"action": "assign_me"}),
        ("post", state, {"action": "done"}),
        ("post", state, {"action": "snooze", "until": "tomorrow"}),
        ("post", state, {"action": "open"}),
        ("post", bulk, {"mailbox": box, "thread": thread, "action": "assign_me"}),
        ("post", bulk, {"mailbox": box, "thread": thread, "action": "done"}),
        # docs/product.md §7.8: bulk from All mailboxes, each conversation against its mailbox.
        ("post", bulk, {"mailbox": "all", "thread": thread, "action": "mark_unread"}),
        ("post", bulk, {"mailbox": "all", "thread": thread, "action": "archive"}),
        ("post", bulk, {"mailbox": box, "thread": thread, "action": "trash"}),
        ("post", link, {"record": f"contact:{contact.pk}"}),
        ("post", link, {"create": "lead", "first_name": "Sneaky", "last_name": "Lead"}),
        ("post", reverse("inbox:filing_unlink", args=[target["filing"].pk]), {}),
        ("post", reverse("inbox:filing_relink", args=[target["filing"].pk]), {}),
        ("post", reverse("inbox:triage_dismiss"), {"only": m}),
        # docs/product.md §7.12: the conversation's own address (with its list), the Filed on
        # panel's remove (the whole conversation); §7.2: the inbox's Sync now.
        ("get", reverse("inbox:conversation", args=[m]) + f"?mailbox={box}&view=open", {}),
        ("post", reverse("inbox:filing_unlink", args=[target["filing"].pk]), {"whole": "1"}),
        ("post", reverse("inbox:inbox_sync_now", args=[box]), {}),
        ("post", reverse("inbox:server_write_retry", args=[target["refused"].pk]), {}),
        ("get", reverse("inbox:compose") + f"?reply_to={m}&mode=reply", {}),
        ("get", reverse("inbox:compose") + f"?mailbox={box}", {}),
        (
            "post",
            reverse("inbox:compose"),
            {
                "reply_to": m,
                "mode": "forward",
                "mailbox": box,
                "to": "x@example.com",
                "subject": "F",
            },
        ),
        (
            "post",
            reverse("inbox:compose"),
            {"mailbox": box, "to": "x@example.com", "subject": "Hi", "body": "y"},
        ),
        # The inline composer of one message, and its draft saved (docs/product.md §5.5).
        ("get", reverse("inbox:compose") + f"?reply_to={m}&mode=reply_all&inline=1", {}),
        (
            "post",
            reverse("inbox:compose"),
            {"reply_to": m, "mode": "reply", "mailbox": box, "action": "save_draft", "body": "z"},
        ),
    ]


def _state():
    """Everything these requests could change."""
    return (
        list(Message.objects.order_by("pk").values_list("pk", "seen", "flagged")),
        list(Filing.objects.order_by("pk").values_list("pk", "unlinked_at", "rule")),
        PendingChange.objects.count(),
        list(PendingChange.objects.order_by("pk").values_list("pk", "done_at", "error")),
        OutboxEntry.objects.count(),
        Draft.objects.count(),
        list(TriageEntry.objects.order_by("pk").values_list("pk", "resolved_at")),
        list(Thread.objects.order_by("pk").values_list("pk", "status", "assignee")),
        ThreadEvent.objects.count(),
        ThreadRead.objects.count(),
        list(Mailbox.objects.order_by("pk").values_list("pk", "sync_requested_at")),
    )


def _login(client, user):
    if user is not None:
        client.force_login(user)
    return client


PERSONAS = ["owner", "teammate", "outsider", "revoked", "admin_user"]
# Who may read which mailbox's mail: the owner her personal one, Tom (granted) the shared one.
ALLOWED = {"personal": {"owner"}, "shared": {"teammate"}}


def _persona(name, request, world):
    return world["revoked"] if name == "revoked" else request.getfixturevalue(name)


@pytest.mark.parametrize("persona", PERSONAS)
def test_all_mailboxes_lists_and_searches_only_readable_mail(client, request, world, persona):
    """docs/product.md §7.2 All mailboxes: each persona sees exactly the mail they may read
    (an admin without a grant: none), in the list, its search, its poll and a result opened."""
    client = _login(client, _persona(persona, request, world))
    before = _state()
    page = reverse("inbox:inbox_page")
    for url in (
        page + "?mailbox=all",
        page + "?mailbox=all&q=quarterly",
        reverse("inbox:inbox_poll") + "?mailbox=all&since=x",
    ):
        for headers in ({}, HTMX):
            response = client.get(url, headers=headers)
            html = response.content.decode()
            for which in ("personal", "shared"):
                assert (f"{SECRET} {which}" in html) is (persona in ALLOWED[which]), (url, which)
    assert _state() == before


@pytest.mark.parametrize(
    "which,persona",
    [
        (which, persona)
        for which in ("personal", "shared")
        for persona in ("outsider", "revoked", "admin_user", "owner", "teammate")
        if persona not in ALLOWED[which]
    ],
)
def test_unauthorised_get_the_same_404_as_missing_and_change_nothing(
    client, request, world, which, persona
):
    client = _login(client, _persona(persona, request, world))
    before = _state()
    for method, url, data in _requests(world[which], world["contact"]):
        for headers in ({}, HTMX):
            response = getattr(client, method)(url, data, headers=headers)
            assert response.status_code == 404, (persona, method, url, data)
            assert SECRET not in response.content.decode()
    assert _state() == before
    assert not Filing.objects.filter(lead__last_name="Lead").exists()

    # A missing object answers the same.
    missing = Message.objects.order_by("-pk").first().pk + 1000
    for url in (
        reverse("inbox:conversation", args=[missing]),
        reverse("inbox:qualify_dialog", args=[missing]),
        reverse("inbox:inbox_page") + f"?mailbox={missing}",
    ):
        assert client.get(url).status_code == 404
    assert client.post(reverse("inbox:filing_unlink", args=[missing])).status_code == 404
    state = reverse("inbox:conversation_state", args=[missing])
    assert client.post(state, {"action": "done"}).status_code == 404


@pytest.mark.parametrize("which", ["personal", "shared"])
def test_anonymous_is_sent_to_sign_in_and_changes_nothing(client, world, which):
    before = _state()
    for method, url, data in _requests(world[which], world["contact"]):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith(reverse("login"))
    for url in (
        reverse("inbox:triage"),
        reverse("inbox:preferences"),
        # Pages added for issue #16: drafts, the triage record picker, "Always ignore…".
        reverse("inbox:drafts"),
        reverse("inbox:record_picker") + "?q=a",
        reverse("inbox:triage_ignore", args=[world[which]["message"].pk]),
    ):
        assert client.get(url)["Location"].startswith(reverse("login"))
    density = client.post(reverse("inbox:density"), {"density": "compact"})
    assert density["Location"].startswith(reverse("login"))
    response = client.post(
        reverse("inbox:triage_qualify"),
        {"message": [world[which]["message"].pk], "record": f"contact:{world['contact'].pk}"},
    )
    assert response["Location"].startswith(reverse("login"))
    assert _state() == before


@pytest.mark.parametrize("persona", PERSONAS)
def test_always_ignore_only_for_admins_who_read_the_shared_mailbox(client, request, world, persona):
    """docs/product.md §4.7 item 4: "Always ignore…" is for the administrators of the message's
    shared mailbox who read it. Here nobody is both (the admin has no grant, Tom is no admin,
    Olivia's mailbox is personal): the same 404 as a missing message, and no pattern saved."""
    client = _login(client, _persona(persona, request, world))
    for which in ("personal", "shared"):
        url = reverse("inbox:triage_ignore", args=[world[which]["message"].pk])
        pattern = "*@customer.example"
        assert client.get(url, {"pattern": pattern}).status_code == 404, (persona, which)
        response = client.post(url, {"pattern": pattern, "checked": pattern})
        assert response.status_code == 404, (persona, which)
    assert not ExclusionPattern.objects.exists()


@pytest.mark.parametrize("which", ["personal", "shared"])
def test_allowed_reader_succeeds(client, request, world, which):
    (persona,) = ALLOWED[which]
    client = _login(client, request.getfixturevalue(persona))
    for method, url, data in _requests(world[which], world["contact"]):
        response = getattr(client, method)(url, data, headers=HTMX)
        assert response.status_code in (200, 204, 302), (method, url, data, response.status_code)
        if response.status_code == 302:  # compose: sent, back to the conversation or inbox
            assert not response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("persona", ["outsider", "revoked", "admin_user", "owner"])
def test_triage_shows_and_files_only_readable_mail(client, request, world, persona):
    """Triage lists the shared mailbox's entries to Tom only; a bulk qualify of mail the user
    may not read files nothing."""
    client = _login(client, _persona(persona, request, world))
    html = client.get(reverse("inbox:triage")).content.decode()
    assert f"{SECRET} shared" not in html
    assert (f"{SECRET} personal" in html) is (persona == "owner")
    account = f.AccountFactory()
    before = _state()
    client.post(
        reverse("inbox:triage_qualify"),
        {"message": [world["shared"]["message"].pk], "record": f"account:{account.pk}"},
    )
    assert _state() == before


@pytest.mark.parametrize("persona", ["outsider", "revoked", "admin_user", "owner", "teammate"])
def test_email_tab_never_leaks_shared_mail_or_links_to_unreadable_mail(
    client, request, world, persona
):
    """On a record's Email tab, shared mail shows only to its grantees; other users' personal
    mail shows at the owner's privacy level but never with a way in to read it."""
    client = _login(client, _persona(persona, request, world))
    html = client.get(
        reverse("inbox:email_tab", args=["contact", world["contact"].pk]), headers=HTMX
    ).content.decode()
    assert (f"{SECRET} shared" in html) is (persona == "teammate")
    for which in ("personal", "shared"):
        conversation = reverse("inbox:conversation", args=[world[which]["message"].pk])
        assert (conversation in html) is (persona in ALLOWED[which])


@pytest.mark.parametrize("persona", ["outsider", "revoked", "admin_user", "owner", "teammate"])
def test_record_timeline_never_leaks_shared_mail_or_links_to_unreadable_mail(
    client, request, world, persona
):
    """The record page's timeline (docs/product.md §7.4) follows the Email tab's rules, on its
    first page and on every "Show older" page."""
    client = _login(client, _persona(persona, request, world))
    url = reverse("crm:contact_detail", args=[world["contact"].pk])
    for params in ({}, {"before": "2999-01-01T00:00:00+00:00~note~1"}):
        response = client.get(url, params)
        assert response.status_code == 200
        html = response.content.decode()
        timeline = html[html.index('id="timeline"') :]
        assert (f"{SECRET} shared" in timeline) is (persona == "teammate")
        for which in ("personal", "shared"):
            conversation = reverse("inbox:conversation", args=[world[which]["message"].pk])
            assert (conversation in timeline) is (persona in ALLOWED[which])


def test_record_timeline_sends_anonymous_to_sign_in(client, world):
    url = reverse("crm:contact_detail", args=[world["contact"].pk])
    response = client.get(url, {"before": "2999-01-01T00:00:00+00:00~note~1"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the Outbox (docs/product.md §5.4) ---------------------------------------------------------
# Who may see and act on an outbox entry: its author in a mailbox they may send from, the owner
# of a personal mailbox; admins every entry of a shared mailbox, never one of someone else's
# personal mailbox. A teammate granted the shared mailbox sees only their own entries.
OUTBOX_ALLOWED = {"personal": {"owner"}, "shared": {"teammate", "admin_user"}}


@pytest.fixture
def outbox_world(world, owner, teammate):
    """A failed reply in each mailbox, written by the one who may send from it."""
    entries = {}
    for which, author in (("personal", owner), ("shared", teammate)):
        entries[which] = f.OutboxEntryFactory(
            mailbox=world[which]["mailbox"],
            created_by=author,
            state=OutboxEntry.State.FAILED,
            subject=f"Re: {SECRET} {which} outbox",
            reply_to_message=world[which]["message"],
            last_error="every recipient was refused: a@b.example: 550 5.1.1 unknown",
        )
    return entries


def _outbox_requests(entry) -> list[tuple[str, str, dict]]:
    edit = reverse("inbox:outbox_edit", args=[entry.pk])
    return [
        ("get", edit, {}),
        ("post", edit, {"to": "x@example.com", "subject": "Changed", "body": "Changed"}),
        *[
            ("post", reverse("inbox:outbox_action", args=[entry.pk, action]), {})
            for action in ("send_again", "mark_sent", "cancel")
        ],
    ]


def _outbox_state():
    return list(
        OutboxEntry.objects.order_by("pk").values_list("pk", "state", "replaced_by", "subject")
    )


@pytest.mark.parametrize(
    "which,persona",
    [
        (which, persona)
        for which in ("personal", "shared")
        for persona in PERSONAS
        if persona not in OUTBOX_ALLOWED[which]
    ],
)
def test_outbox_outsiders_get_the_same_404_as_missing_and_change_nothing(
    client, request, world, outbox_world, which, persona
):
    client = _login(client, _persona(persona, request, world))
    before = _outbox_state()
    for method, url, data in _outbox_requests(outbox_world[which]):
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, method, url)
        assert SECRET not in response.content.decode()
    missing = OutboxEntry.objects.order_by("-pk").first().pk + 1000
    assert client.get(reverse("inbox:outbox_edit", args=[missing])).status_code == 404
    assert (
        client.post(reverse("inbox:outbox_action", args=[missing, "send_again"])).status_code == 404
    )
    # The Outbox page and the banner do not show it either.
    html = client.get(reverse("inbox:outbox")).content.decode()
    assert f"{SECRET} {which} outbox" not in html
    assert _outbox_state() == before


@pytest.mark.parametrize(
    "which,persona",
    [
        (which, persona)
        for which in ("personal", "shared")
        for persona in sorted(OUTBOX_ALLOWED[which])
    ],
)
def test_outbox_allowed_see_it_and_act(client, request, world, outbox_world, which, persona):
    client = _login(client, _persona(persona, request, world))
    entry = outbox_world[which]
    html = client.get(reverse("inbox:outbox")).content.decode()
    assert f"{SECRET} {which} outbox" in html
    assert client.get(reverse("inbox:outbox_edit", args=[entry.pk])).status_code == 200
    response = client.post(reverse("inbox:outbox_action", args=[entry.pk, "send_again"]))
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.state != OutboxEntry.State.FAILED


def test_presence_is_gated_like_the_conversation(client, request, world):
    for persona in ("outsider", "revoked", "admin_user", "teammate"):
        client = _login(client, _persona(persona, request, world))
        url = reverse("inbox:presence", args=[world["personal"]["message"].pk])
        assert client.post(url, {"composing": "1"}, headers=HTMX).status_code == 404
    client = _login(client, _persona("owner", request, world))
    assert client.post(url, headers=HTMX).status_code == 200


# --- a shared mailbox's administration on its settings page (docs/product.md §2.7) -----------


def _admin_requests(world) -> list[tuple[str, dict]]:
    """(url, data) of every administration action, each of which would change something."""
    box = world["shared"]["mailbox"].pk
    outsider = world["revoked"].pk
    teammate = world["shared"]["mailbox"].granted_users.get().pk
    saved = ExclusionPattern.objects.get_or_create(pattern="mailer-daemon@*")[0].pk
    exclusions = reverse("inbox:mailbox_exclusions", args=[box])
    sender = EmailApiSender.objects.get_or_create(
        mailbox=world["shared"]["mailbox"], address="forms@web.example"
    )[0].pk
    senders = reverse("inbox:mailbox_api_senders", args=[box])
    return [
        (reverse("inbox:mailbox_precedence", args=[box]), {"precedence": "lead_first"}),
        (senders, {"action": "add", "address": "new@web.example"}),
        (senders, {"action": "secret", "sender_id": sender}),
        (senders, {"action": "remove", "sender_id": sender}),
        (exclusions, {"action": "dry_run", "pattern": "*@noreply.example"}),
        (
            exclusions,
            {"action": "save", "pattern": "*@noreply.example", "checked": "*@noreply.example"},
        ),
        (exclusions, {"action": "remove", "pattern_id": saved}),
        (reverse("inbox:mailbox_grant", args=[box]), {"user": outsider}),
        (reverse("inbox:mailbox_revoke", args=[box]), {"user": teammate}),
        (
            reverse("inbox:mailbox_support", args=[box]),
            {"create_tickets": "on", "forward_unplaced_to": "team@relay.test"},
        ),
    ]


def _removal(url: str, data: dict) -> bool:
    """A removal (a grant, a pattern, a sender): asked first by a GET (crm/confirm.py)."""
    return data.get("action") == "remove" or "/revoke/" in url


def _admin_state(mailbox):
    mailbox.refresh_from_db()
    return (
        sorted(mailbox.granted_users.values_list("pk", flat=True)),
        sorted(mailbox.granted_groups.values_list("pk", flat=True)),
        mailbox.create_tickets,
        mailbox.forward_unplaced_to,
        list(PrimaryMailbox.objects.order_by("pk").values_list("pk", "mailbox")),
        sorted(ExclusionPattern.objects.values_list("pattern", flat=True)),
        sorted(EmailApiSender.objects.values_list("address", "secret_hash")),
        MatchingSettings.load().precedence,
    )


@pytest.mark.parametrize("persona", ["outsider", "revoked", "owner", "teammate"])
def test_only_admins_administer_a_shared_mailbox(client, request, world, persona):
    """Everyone else gets the 404 of a missing mailbox and changes nothing, with or without
    htmx; an admin's actions all work; nobody administers a personal mailbox this way."""
    mailbox = world["shared"]["mailbox"]
    client = _login(client, _persona(persona, request, world))
    requests = _admin_requests(world)
    before = _admin_state(mailbox)
    for url, data in requests:
        for headers in ({}, HTMX):
            assert client.post(url, data, headers=headers).status_code == 404, (persona, url)
            missing = url.replace(f"/{mailbox.pk}/", f"/{mailbox.pk + 1000}/")
            assert client.post(missing, data, headers=headers).status_code == 404
        if _removal(url, data):
            # A removal's question, asked without JavaScript (crm/confirm.py): the same 404.
            assert client.get(url, data).status_code == 404, (persona, url)
    assert _admin_state(mailbox) == before


def test_anonymous_cannot_administer_a_shared_mailbox(client, world):
    mailbox = world["shared"]["mailbox"]
    requests = _admin_requests(world)
    before = _admin_state(mailbox)
    for url, data in requests:
        response = client.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert _admin_state(mailbox) == before


def test_admin_administers_shared_but_not_personal_mailboxes(client, admin_user, world):
    mailbox = world["shared"]["mailbox"]
    client = _login(client, admin_user)
    requests = _admin_requests(world)
    before = _admin_state(mailbox)
    removals = [(url, data) for url, data in requests if _removal(url, data)]
    for url, data in removals:
        # Asked first without JavaScript: a page with the question, and nothing changes.
        page = client.get(url, data)
        assert page.status_code == 200 and "Remove " in page.content.decode(), url
    assert len(removals) == 3 and _admin_state(mailbox) == before
    for url, data in requests:
        # A dry run shows its result, a new secret is shown once: both on the page itself.
        expected = 200 if data.get("action") in ("dry_run", "secret") else 302
        assert client.post(url, data).status_code == expected, url
    after = _admin_state(mailbox)
    assert after[0] == [world["revoked"].pk] and after[2] is True
    assert before[-3] == ["mailer-daemon@*"] and after[-3] == ["*@noreply.example"]
    assert before[-2] == [("forms@web.example", "")] and after[-2] == [("new@web.example", "")]
    assert before[-1] == "contact_first" and after[-1] == "lead_first"
    personal = world["personal"]["mailbox"].pk
    for url, data in _admin_requests(world):
        url = url.replace(f"/{mailbox.pk}/", f"/{personal}/")
        assert client.post(url, data).status_code == 404
    # Its owner neither: a personal mailbox is never granted to anyone.
    client = _login(client, world["personal"]["mailbox"].owner)
    for url, data in _admin_requests(world):
        url = url.replace(f"/{mailbox.pk}/", f"/{personal}/")
        assert client.post(url, data).status_code == 404
    assert not world["personal"]["mailbox"].granted_users.exists()


# --- importing .mbox/.eml files (docs/product.md §3.10) --------------------------------------
# Whoever manages the mailbox imports into it: the owner her personal one, an admin the shared
# one (a grantee reads it but does not import). Everyone else gets the 404 of a missing mailbox.
IMPORT_ALLOWED = {"personal": {"owner"}, "shared": {"admin_user"}}


def _import_requests(world, which) -> list[tuple[str, str, dict]]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from inbox.models import ImportJob
    from tests.connector.synckit import make_raw

    box = world[which]["mailbox"]
    job = ImportJob.objects.get_or_create(mailbox=box, defaults={"file_names": ["old.mbox"]})[0]
    return [
        ("get", reverse("inbox:mailbox_import_page", args=[box.pk]), {}),
        ("get", reverse("inbox:mailbox_import", args=[box.pk, job.pk]), {}),
        (
            "post",
            reverse("inbox:mailbox_import_upload", args=[box.pk]),
            {"files": [SimpleUploadedFile("x.eml", make_raw(f"{SECRET} imported"))]},
        ),
    ]


def _import_state():
    from inbox.models import ImportJob

    return list(ImportJob.objects.order_by("pk").values_list("pk", "mailbox", "state"))


@pytest.mark.parametrize(
    "which,persona",
    [
        (which, persona)
        for which in ("personal", "shared")
        for persona in PERSONAS
        if persona not in IMPORT_ALLOWED[which]
    ],
)
def test_only_who_manages_a_mailbox_imports_into_it(client, request, world, which, persona):
    client = _login(client, _persona(persona, request, world))
    requests = _import_requests(world, which)
    before = _import_state()
    for method, url, data in requests:
        for headers in ({}, HTMX):
            response = getattr(client, method)(url, data, headers=headers)
            assert response.status_code == 404, (persona, method, url)
            assert SECRET not in response.content.decode()
    assert _import_state() == before


@pytest.mark.parametrize("which", ["personal", "shared"])
def test_anonymous_cannot_import(client, world, which):
    requests = _import_requests(world, which)
    before = _import_state()
    for method, url, data in requests:
        response = getattr(client, method)(url, data)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert _import_state() == before


@pytest.mark.parametrize("which", ["personal", "shared"])
def test_who_manages_the_mailbox_imports_and_no_other_mailboxs_job_shows(
    client, request, world, which
):
    (persona,) = IMPORT_ALLOWED[which]
    client = _login(client, request.getfixturevalue(persona))
    other = "shared" if which == "personal" else "personal"
    other_job = _import_requests(world, other)[1][1]
    for method, url, data in _import_requests(world, which):
        response = getattr(client, method)(url, data)
        assert response.status_code in (200, 302), (method, url, response.status_code)
    # The other mailbox's import, asked for through this mailbox's URL: not found.
    mine, theirs = world[which]["mailbox"].pk, world[other]["mailbox"].pk
    assert client.get(other_job.replace(f"/{theirs}/", f"/{mine}/")).status_code == 404


# --- a shared mailbox's Google/Microsoft sign-in (docs/product.md §2.9): admins only --------


@pytest.mark.parametrize("persona", ["outsider", "revoked", "owner", "teammate", None])
def test_only_an_admin_starts_a_shared_mailbox_sign_in(client, request, world, persona):
    client = _login(client, _persona(persona, request, world) if persona else None)
    for provider in ("google", "microsoft"):
        response = client.post(
            reverse("inbox:oauth_start", args=[provider]),
            {"shared_address": "sales@relay.test"},
        )
        if persona is None:
            assert response["Location"].startswith(reverse("login"))
        else:
            assert response.status_code == 404, (persona, provider)
    assert "relay_oauth_flows" not in client.session


# Who changes a mailbox's servers (docs/product.md §2.8): its owner for a personal mailbox (admins
# included, nobody else), admins for a shared one.
SERVER_MANAGERS = {"personal": {"owner"}, "shared": {"admin_user"}}


@pytest.mark.parametrize("which", ["personal", "shared"])
@pytest.mark.parametrize("persona", [*PERSONAS, "anonymous"])
def test_server_settings_only_for_whoever_manages_the_mailbox(
    client, request, world, which, persona
):
    mailbox = world[which]["mailbox"]
    user = None if persona == "anonymous" else _persona(persona, request, world)
    client = _login(client, user)
    url = reverse("inbox:mailbox_servers", args=[mailbox.pk])
    data = {
        "servers-imap_host": "evil.example",
        "servers-imap_port": "993",
        "servers-imap_security": "ssl",
        "servers-smtp_host": "evil.example",
        "servers-smtp_port": "465",
        "servers-smtp_security": "ssl",
        "servers-smtp_auth": "same",
        "servers-password": "guess",
    }
    before = (mailbox.imap_host, mailbox.smtp_host, mailbox.password_encrypted)
    allowed = persona in SERVER_MANAGERS[which]
    page = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk]))
    if allowed:
        assert 'id="servers"' in page.content.decode()
        # Unchanged settings: nothing to test, nothing to save.
        unchanged = {
            **data,
            "servers-imap_host": mailbox.imap_host,
            "servers-imap_port": str(mailbox.imap_port),
            "servers-imap_security": mailbox.imap_security,
            "servers-smtp_host": mailbox.smtp_host,
            "servers-smtp_port": str(mailbox.smtp_port),
            "servers-smtp_security": mailbox.smtp_security,
            "servers-login": mailbox.login,
        }
        assert client.post(url, unchanged).status_code == 302
    elif page.status_code == 200:
        assert 'id="servers"' not in page.content.decode()  # a grantee sees no server form
    for headers in ({}, HTMX):
        response = client.post(url, data, headers=headers)
        if persona == "anonymous":
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("login"))
        elif not allowed:
            assert response.status_code == 404, (persona, which)
        missing = url.replace(f"/{mailbox.pk}/", f"/{mailbox.pk + 1000}/")
        if persona != "anonymous":
            assert client.post(missing, data, headers=headers).status_code == 404
    if not allowed:
        mailbox.refresh_from_db()
        assert (mailbox.imap_host, mailbox.smtp_host, mailbox.password_encrypted) == before


@pytest.mark.parametrize("persona", [*PERSONAS, "anonymous"])
def test_site_settings_only_for_administrators(client, request, world, persona):
    """docs/product.md §8.1: the Site settings page is for users with the permission
    (superusers have it); everyone else gets the 404 of a missing page and changes nothing."""
    from crm.models import SiteSettings

    user = None if persona == "anonymous" else _persona(persona, request, world)
    client = _login(client, user)
    url = reverse("crm:site_settings")
    data = {"purge_after_days": "1", "default_from_email": "x@evil.example"}
    for method, payload in (("get", None), ("post", data)):
        response = getattr(client, method)(url, payload)
        if persona == "anonymous":
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("login"))
        elif persona == "admin_user":
            assert response.status_code in (200, 302)
        else:
            assert response.status_code == 404, persona
    assert SiteSettings.objects.exists() == (persona == "admin_user")


# --- Drafts and Undo send (docs/product.md §5.5) ---------------------------------------------
# A draft is its author's alone, admins included; so is Undo of a held message.


@pytest.mark.parametrize("persona", ["outsider", "admin_user", "owner"])
def test_drafts_and_undo_are_their_authors_alone(client, request, world, teammate, persona):
    from inbox.services.composing import outbox_compose
    from inbox.services.drafts import draft_save

    shared = world["shared"]
    draft = draft_save(
        user=teammate,
        message=shared["message"],
        mode="reply",
        mailbox=shared["mailbox"],
        subject=f"{SECRET} draft",
        body_text="my words",
    )
    held = outbox_compose(
        user=teammate,
        mailbox=shared["mailbox"],
        to="ana@example.com",
        subject=f"{SECRET} held",
        text_body="x",
        hold=True,
    )
    assert held.state == OutboxEntry.State.SCHEDULED
    client = _login(client, request.getfixturevalue(persona))
    before = _state()
    assert SECRET not in client.get(reverse("inbox:drafts")).content.decode()
    for response in (
        client.get(reverse("inbox:compose") + f"?draft={draft.pk}"),
        client.post(reverse("inbox:draft_delete", args=[draft.pk])),
        client.post(reverse("inbox:undo_send", args=[held.pk])),
        client.post(
            reverse("inbox:compose"),
            {"draft": draft.pk, "mailbox": shared["mailbox"].pk, "action": "save_draft"},
        ),
    ):
        assert response.status_code == 404
        assert SECRET not in response.content.decode()
    assert _state() == before
    held.refresh_from_db()
    assert held.state == OutboxEntry.State.SCHEDULED

    # Its author sees both and may act.
    client.force_login(teammate)
    html = client.get(reverse("inbox:drafts")).content.decode()
    assert f"{SECRET} draft" in html
    assert client.get(reverse("inbox:compose") + f"?draft={draft.pk}").status_code == 200
    response = client.post(reverse("inbox:undo_send", args=[held.pk]))
    assert response.status_code == 302 and "?draft=" in response["Location"]
    assert not OutboxEntry.objects.filter(pk=held.pk).exists()
