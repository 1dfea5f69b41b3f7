"""Mailbox settings pages as a person uses them: the list and its actions, the connect wizard,
Reconnect, options, the health page and its held messages, the reconnect banner; bad input,
permissions (an outsider gets the 404 of a missing mailbox), the password canary, query counts.

Test connection is replaced by a fake where the answer is what matters; one test goes through
the real connector against the test Dovecot."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from connector.transport.errors import USER_MESSAGES
from inbox import ports
from inbox.context_processors import reconnect_banner
from inbox.models import Folder, LedgerEntry, Mailbox, PrimaryMailbox
from inbox.ports import ConnectionReport, FolderPreview
from inbox.ratelimit import RECONNECT_AUTH_FAILURES
from inbox.services.mailboxes import mailbox_connect, mailbox_reconnect, mailbox_update_options
from tests import factories as f

pytestmark = pytest.mark.django_db

CANARY = "canary-S3cr3t-pa55-9d1e"
MISSING = 999_999


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # rate limits live in the cache
    yield
    cache.clear()


def folders_report(**overrides) -> ConnectionReport:
    report = ConnectionReport(
        ok=True,
        folders=[
            FolderPreview("INBOX", "inbox", True, messages=120, since_count=40),
            FolderPreview("Sent", "sent", True, messages=30, since_count=12),
            FolderPreview("Trash", "trash", True, messages=9, since_count=9),
            FolderPreview("Junk", "junk", True, messages=5, since_count=5),
            FolderPreview("Projects", "", True, messages=7, since_count=3),
            FolderPreview("Shared", "", False),
        ],
        smtp_ok=True,
    )
    for name, value in overrides.items():
        setattr(report, name, value)
    return report


class FakeTester:
    """Stands in for the mail port's test_connection (no server behind the wizard's forms);
    remembers what it was given."""

    def __init__(self, report: ConnectionReport | None = None):
        self.report = report or folders_report()
        self.calls: list[tuple] = []

    def __call__(self, mailbox, sync_from=None, **kwargs):
        self.calls.append((mailbox, sync_from, mailbox.password.reveal()))
        return self.report


@pytest.fixture
def tester(monkeypatch):
    fake = FakeTester()
    monkeypatch.setattr(ports.mail(), "test_connection", fake)
    return fake


def failing(category: str) -> ConnectionReport:
    return ConnectionReport(ok=False, error=USER_MESSAGES[category], error_category=category)


def wizard_data(**overrides) -> dict:
    data = {
        "email_address": "Ana@Example.com",
        "display_name": "Ana Lopez",
        "login": "",
        "password": CANARY,
        "imap_host": "imap.example.com",
        "imap_port": "993",
        "imap_security": "ssl",
        "smtp_host": "smtp.example.com",
        "smtp_port": "465",
        "smtp_security": "ssl",
        "sync_from": (timezone.localdate() - dt.timedelta(days=30)).isoformat(),
        "folders_shown": "1",
        "active_folders": ["INBOX", "Sent"],
        "create_contacts": "on",
        "refresh_interval": "300",
        "signature": "Ana\nRelay",
        "privacy": "subject",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- the list and its actions --------------------------------------------------------------


def test_settings_list_shows_own_and_granted_mailboxes_primary_first(
    client, owner, personal_mailbox, shared_mailbox
):
    second = f.MailboxFactory(owner=owner, email_address="another@relay.test")
    shared_mailbox.granted_users.add(owner)
    PrimaryMailbox.objects.create(user=owner, mailbox=second)
    f.MailboxFactory(email_address="stranger@relay.test")  # someone else's
    client.force_login(owner)
    response = client.get(reverse("inbox:mailbox_list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "stranger@relay.test" not in html
    positions = [
        html.index(f'data-mailbox="{a}"')
        for a in ("another@relay.test", "olivia@relay.test", "support@relay.test")
    ]
    assert positions == sorted(positions), "primary first, then personal, then shared"
    assert "Primary" in html and "Needs reconnect" not in html


def test_empty_list_invites_to_connect(client, owner):
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_list")).content.decode()
    assert "No mailboxes yet" in html and reverse("inbox:mailbox_connect") in html


def test_make_primary_pause_resume_and_sync_now(client, owner, personal_mailbox):
    other = f.MailboxFactory(owner=owner, email_address="second@relay.test")
    client.force_login(owner)
    response = client.post(reverse("inbox:mailbox_primary", args=[other.pk]))
    assert response.status_code == 302
    assert PrimaryMailbox.objects.get(user=owner).mailbox == other

    client.post(reverse("inbox:mailbox_pause", args=[other.pk]))
    other.refresh_from_db()
    assert other.state == Mailbox.State.PAUSED
    # Sync now on a paused mailbox does nothing but say why.
    response = client.post(reverse("inbox:mailbox_sync_now", args=[other.pk]), follow=True)
    assert "resume it first" in response.content.decode()
    other.refresh_from_db()
    assert other.sync_requested_at is None

    client.post(reverse("inbox:mailbox_resume", args=[other.pk]))
    other.refresh_from_db()
    assert other.state == Mailbox.State.ACTIVE and other.sync_requested_at is not None

    Mailbox.objects.filter(pk=other.pk).update(sync_requested_at=None)
    response = client.post(reverse("inbox:mailbox_sync_now", args=[other.pk]), {"next": "health"})
    assert response["Location"] == reverse("inbox:mailbox_health", args=[other.pk])
    other.refresh_from_db()
    assert other.sync_requested_at is not None


def test_actions_refuse_get(client, owner, personal_mailbox):
    client.force_login(owner)
    for name in ("mailbox_primary", "mailbox_pause", "mailbox_resume", "mailbox_sync_now"):
        assert client.get(reverse(f"inbox:{name}", args=[personal_mailbox.pk])).status_code == 405


# --- permissions ----------------------------------------------------------------------------


@pytest.fixture
def world(owner, teammate, outsider, admin_user, personal_mailbox, shared_mailbox):
    revoked = f.UserFactory(username="revoked")
    shared_mailbox.granted_users.add(revoked)
    shared_mailbox.granted_users.remove(revoked)
    for mailbox in (personal_mailbox, shared_mailbox):
        folder = f.FolderFactory(mailbox=mailbox, name="INBOX")
        f.LedgerEntryFactory(folder=folder, outcome=LedgerEntry.Outcome.HELD, attempts=3)
    return {
        "mailboxes": {"personal": personal_mailbox, "shared": shared_mailbox},
        "users": {
            "owner": owner,
            "teammate": teammate,
            "outsider": outsider,
            "admin": admin_user,
            "revoked": revoked,
        },
    }


VIEWERS = {  # who may see the settings and health pages (read-only or not)
    ("owner", "personal"),
    ("teammate", "shared"),
    ("admin", "shared"),
}
MANAGERS = {("owner", "personal"), ("admin", "shared")}
READERS = {("owner", "personal"), ("teammate", "shared")}  # may make it their primary


def pages(mailbox):
    return [
        reverse("inbox:mailbox_settings", args=[mailbox.pk]),
        reverse("inbox:mailbox_health", args=[mailbox.pk]),
    ]


def actions(mailbox):
    entry = mailbox.ledger.get()
    return [
        ("post", reverse("inbox:mailbox_pause", args=[mailbox.pk])),
        ("post", reverse("inbox:mailbox_resume", args=[mailbox.pk])),
        ("post", reverse("inbox:mailbox_sync_now", args=[mailbox.pk])),
        ("get", reverse("inbox:mailbox_reconnect", args=[mailbox.pk])),
        ("post", reverse("inbox:mailbox_reconnect", args=[mailbox.pk])),
        ("post", reverse("inbox:mailbox_reconnect_test", args=[mailbox.pk])),
        ("post", reverse("inbox:mailbox_held_retry", args=[mailbox.pk, entry.pk])),
        ("post", reverse("inbox:mailbox_settings", args=[mailbox.pk])),
    ]


@pytest.mark.parametrize("who", ["owner", "teammate", "outsider", "admin", "revoked"])
@pytest.mark.parametrize("which", ["personal", "shared"])
def test_permission_matrix(client, world, tester, who, which):
    """Viewers see the pages; only managers change anything; everyone else gets the 404 of
    a missing mailbox, and nothing changes."""
    client.force_login(world["users"][who])
    mailbox = world["mailboxes"][which]
    for url in pages(mailbox):
        response = client.get(url)
        assert response.status_code == (200 if (who, which) in VIEWERS else 404), url
    for method, url in actions(mailbox):
        response = getattr(client, method)(url)
        if (who, which) in MANAGERS:
            assert response.status_code != 404, url
        else:
            assert response.status_code == 404, (who, which, url)
    primary = client.post(reverse("inbox:mailbox_primary", args=[mailbox.pk]))
    assert primary.status_code == (302 if (who, which) in READERS else 404)
    if (who, which) not in MANAGERS:
        mailbox.refresh_from_db()
        assert mailbox.state == Mailbox.State.ACTIVE and mailbox.sync_requested_at is None
        assert mailbox.ledger.get().outcome == LedgerEntry.Outcome.HELD


def test_missing_mailbox_is_the_same_404(client, world):
    client.force_login(world["users"]["owner"])
    for url in [
        reverse("inbox:mailbox_settings", args=[MISSING]),
        reverse("inbox:mailbox_health", args=[MISSING]),
    ]:
        assert client.get(url).status_code == 404
    assert client.post(reverse("inbox:mailbox_pause", args=[MISSING])).status_code == 404


def test_anonymous_meets_the_login_wall_like_for_a_missing_mailbox(client, world):
    mailbox = world["mailboxes"]["personal"]
    for url in [*pages(mailbox), reverse("inbox:mailbox_list"), reverse("inbox:mailbox_connect")]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    for url in pages(mailbox):
        missing = client.get(url.replace(f"/{mailbox.pk}/", f"/{MISSING}/"))
        assert missing.status_code == 302
    response = client.post(reverse("inbox:mailbox_pause", args=[mailbox.pk]))
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE


def test_grantee_sees_shared_settings_read_only(client, world):
    client.force_login(world["users"]["teammate"])
    mailbox = world["mailboxes"]["shared"]
    html = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    assert "Only an admin can change" in html and 'name="signature"' not in html
    health = client.get(reverse("inbox:mailbox_health", args=[mailbox.pk])).content.decode()
    assert ">Retry</button>" not in health and "Sync now" not in health
    listing = client.get(reverse("inbox:mailbox_list")).content.decode()
    assert "support@relay.test" in listing
    assert reverse("inbox:mailbox_pause", args=[mailbox.pk]) not in listing


def test_admin_lists_shared_mailboxes_but_never_personal_ones(client, world):
    client.force_login(world["users"]["admin"])
    html = client.get(reverse("inbox:mailbox_list")).content.decode()
    assert "support@relay.test" in html and "olivia@relay.test" not in html
    assert "New shared mailbox" in html


# --- the connect wizard ---------------------------------------------------------------------


def test_wizard_page_offers_providers_and_guesses(client, owner):
    client.force_login(owner)
    response = client.get(reverse("inbox:mailbox_connect"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Test connection / Retrieve folders" in html
    assert '"gmail.com": {"imap_host": "imap.gmail.com"' in html  # the guess table
    # No OAuth client configured here: the provider buttons are shown disabled, with a reason.
    assert "Continue with Google" in html and "has not set up sign-in" in html
    assert 'name="kind"' not in html  # only admins create shared mailboxes


@pytest.mark.parametrize(
    "email, imap, smtp",
    [
        ("a@gmail.com", ("imap.gmail.com", 993, "ssl"), ("smtp.gmail.com", 465, "ssl")),
        ("a@googlemail.com", ("imap.gmail.com", 993, "ssl"), ("smtp.gmail.com", 465, "ssl")),
        (
            "a@hotmail.com",
            ("outlook.office365.com", 993, "ssl"),
            ("smtp.office365.com", 587, "starttls"),
        ),
        ("a@icloud.com", ("imap.mail.me.com", 993, "ssl"), ("smtp.mail.me.com", 587, "starttls")),
        ("a@yahoo.co.uk", ("imap.mail.yahoo.com", 993, "ssl"), ("smtp.mail.yahoo.com", 465, "ssl")),
        ("a@web.de", ("imap.web.de", 993, "ssl"), ("smtp.web.de", 587, "starttls")),
        ("a@acme.example", ("imap.acme.example", 993, "ssl"), ("smtp.acme.example", 465, "ssl")),
    ],
)
def test_provider_guesses(email, imap, smtp):
    from inbox.mailbox_forms import guess_server_settings

    guess = guess_server_settings(email)
    assert (guess["imap_host"], guess["imap_port"], guess["imap_security"]) == imap
    assert (guess["smtp_host"], guess["smtp_port"], guess["smtp_security"]) == smtp


def test_test_connection_lists_folders_with_the_preview(client, owner, tester):
    client.force_login(owner)
    data = wizard_data(folders_shown=None, active_folders=None)
    response = client.post(reverse("inbox:mailbox_test"), data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Signed in." in html and "6 folders found" in html
    checked = {
        name
        for name in ("INBOX", "Sent", "Trash", "Junk", "Projects")
        if f'value="{name}" id=' in html
        and "checked" in html.split(f'value="{name}"', 1)[1].split(">", 1)[0]
    }
    assert checked == {"INBOX", "Sent"}  # Trash and Junk off, other folders off
    assert "The first sync brings <strong data-preview-total>52</strong>" in html
    assert 'name="refresh_interval"' in html and "Connect</button>" in html
    # The unsaved mailbox it tested had the typed settings and the date for the preview.
    mailbox, sync_from, password = tester.calls[0]
    assert mailbox.pk is None and mailbox.imap_host == "imap.example.com"
    assert sync_from == timezone.localdate() - dt.timedelta(days=30)
    assert password == CANARY
    assert CANARY not in html
    assert not Mailbox.objects.exists()


@pytest.mark.parametrize(
    "category, headline",
    [
        ("auth", "Wrong login name or password"),
        ("unreachable", "The mail server could not be reached"),
        ("tls", "The secure connection failed"),
    ],
)
def test_test_connection_failures_are_clear(client, owner, tester, category, headline):
    tester.report = failing(category)
    client.force_login(owner)
    html = client.post(reverse("inbox:mailbox_test"), wizard_data()).content.decode()
    assert headline in html and USER_MESSAGES[category] in html
    assert "Connect</button>" not in html


def test_test_connection_says_what_is_missing(client, owner, tester):
    client.force_login(owner)
    data = wizard_data(email_address="not an address", imap_host="http://evil/", password="")
    html = client.post(reverse("inbox:mailbox_test"), data).content.decode()
    assert "Fill in these first" in html
    assert "Email address: Enter a valid email address" in html
    assert "IMAP server:" in html and "not a host name" in html
    assert "Password: This field is required." in html
    assert tester.calls == []


def test_test_connection_is_rate_limited_per_user(client, owner, tester):
    client.force_login(owner)
    for _ in range(10):
        assert (
            "Signed in."
            in client.post(reverse("inbox:mailbox_test"), wizard_data()).content.decode()
        )
    html = client.post(reverse("inbox:mailbox_test"), wizard_data()).content.decode()
    assert "Too many connection tests" in html
    assert len(tester.calls) == 10


def test_connect_saves_encrypts_and_requests_the_first_sync(client, owner, tester, caplog):
    client.force_login(owner)
    with caplog.at_level(logging.DEBUG):
        response = client.post(reverse("inbox:mailbox_connect"), wizard_data())
    mailbox = Mailbox.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:mailbox_health", args=[mailbox.pk])
    assert mailbox.kind == Mailbox.Kind.PERSONAL and mailbox.owner == owner
    assert mailbox.email_address == "ana@example.com"
    assert mailbox.active_folders == ["INBOX", "Sent"]
    assert mailbox.sync_from == timezone.localdate() - dt.timedelta(days=30)
    assert mailbox.create_contacts and mailbox.refresh_interval == 300
    assert mailbox.privacy == "subject" and mailbox.signature == "Ana\r\nRelay".replace("\r", "")
    assert mailbox.state == Mailbox.State.ACTIVE and mailbox.sync_requested_at is not None
    assert CANARY not in mailbox.password_encrypted and mailbox.password.reveal() == CANARY
    assert PrimaryMailbox.objects.get(user=owner).mailbox == mailbox  # the first one
    assert CANARY not in caplog.text
    html = client.get(response["Location"]).content.decode()
    assert "is connected" in html and CANARY not in html


def test_admin_creates_a_shared_mailbox(client, admin_user, tester):
    client.force_login(admin_user)
    assert (
        'name="kind"'
        in client.get(reverse("inbox:mailbox_connect") + "?kind=shared").content.decode()
    )
    response = client.post(reverse("inbox:mailbox_connect"), wizard_data(kind="shared"))
    assert response.status_code == 302
    mailbox = Mailbox.objects.get()
    assert mailbox.kind == Mailbox.Kind.SHARED and mailbox.owner is None
    assert not PrimaryMailbox.objects.exists()
    # Its creator reads it from the start (docs/product.md §2.7) and the page says so.
    assert list(mailbox.granted_users.all()) == [admin_user]
    html = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    assert "Ada Admin" in html.split('id="grants"')[1].split("</ul>")[0]


def test_a_user_cannot_create_a_shared_mailbox(client, owner, tester):
    client.force_login(owner)
    client.post(reverse("inbox:mailbox_connect"), wizard_data(kind="shared"))
    mailbox = Mailbox.objects.get()
    assert mailbox.kind == Mailbox.Kind.PERSONAL and mailbox.owner == owner


BAD_INPUT = [
    ({"email_address": "ana@"}, "Enter a valid email address"),
    ({"email_address": ""}, "This field is required"),
    ({"password": ""}, "This field is required"),
    ({"imap_host": "imap.example.com/path"}, "is not a host name"),
    ({"smtp_host": "smtp://x.example"}, "is not a host name"),
    ({"imap_port": "0"}, "greater than or equal to 1"),
    ({"smtp_port": "70000"}, "less than or equal to 65535"),
    ({"imap_security": "telnet"}, "Select a valid choice"),
    ({"sync_from": "2999-01-01"}, "today or a date in the past"),
    ({"sync_from": "1970-01-01"}, "Pick a date after"),
    ({"sync_from": "yesterday"}, "Enter a valid date"),
    ({"active_folders": []}, "Pick at least one folder"),
    ({"active_folders": ["Nope"]}, "Select a valid choice"),
    ({"active_folders": ["Shared"]}, "Select a valid choice"),  # not selectable
    ({"refresh_interval": "5"}, "Select a valid choice"),
    ({"privacy": "everyone"}, "Select a valid choice"),
    ({"password": "a\nb"}, "may not contain line breaks"),
]


@pytest.mark.parametrize("overrides, error", BAD_INPUT)
def test_connect_refuses_bad_input_and_saves_nothing(client, owner, tester, overrides, error):
    client.force_login(owner)
    response = client.post(reverse("inbox:mailbox_connect"), wizard_data(**overrides))
    assert response.status_code == 400
    html = response.content.decode()
    assert error in html
    assert CANARY not in html
    assert not Mailbox.objects.exists()


def test_connect_refuses_an_address_already_connected(client, owner, personal_mailbox, tester):
    client.force_login(owner)
    response = client.post(
        reverse("inbox:mailbox_connect"), wizard_data(email_address="olivia@relay.test")
    )
    assert response.status_code == 400
    assert "already connected this address" in response.content.decode()
    assert Mailbox.objects.count() == 1


@pytest.mark.parametrize("category", ["auth", "unreachable", "tls"])
def test_connect_when_the_server_refuses_saves_nothing(client, owner, tester, category):
    tester.report = failing(category)
    client.force_login(owner)
    response = client.post(reverse("inbox:mailbox_connect"), wizard_data())
    assert response.status_code == 400
    html = response.content.decode()
    assert USER_MESSAGES[category] in html and CANARY not in html
    assert not Mailbox.objects.exists()


def test_insecure_certificate_is_audit_logged(client, owner, tester, caplog):
    client.force_login(owner)
    with caplog.at_level(logging.WARNING, logger="relay.audit"):
        client.post(reverse("inbox:mailbox_connect"), wizard_data(allow_insecure_cert="on"))
    mailbox = Mailbox.objects.get()
    assert mailbox.allow_insecure_cert
    assert "allows an untrusted certificate" in caplog.text and CANARY not in caplog.text


def test_wizard_against_the_test_dovecot(client, owner, imap_user):
    """The real connector through inbox/ports.py: folders and counts from the server."""
    imap_user.server.deliver(imap_user, b"Subject: hello\r\nFrom: a@b.example\r\n\r\nHi\r\n")
    client.force_login(owner)
    data = wizard_data(
        email_address=imap_user.email,
        login=imap_user.login,
        password=imap_user.password,
        imap_host=imap_user.server.host,
        imap_port=str(imap_user.server.port),
        imap_security="none",
        smtp_host="",
        folders_shown=None,
        active_folders=None,
    )
    html = client.post(reverse("inbox:mailbox_test"), data).content.decode()
    assert "Signed in." in html, html
    assert 'value="INBOX"' in html and imap_user.password not in html
    wrong = client.post(reverse("inbox:mailbox_test"), {**data, "password": "wrong"})
    assert "Wrong login name or password" in wrong.content.decode()


# --- Reconnect --------------------------------------------------------------------------------


@pytest.fixture
def broken(owner):
    mailbox = f.MailboxFactory(
        owner=owner,
        email_address="olivia@relay.test",
        state=Mailbox.State.NEEDS_RECONNECT,
        last_error="AUTHENTICATIONFAILED Authentication failed.",
        consecutive_failures=1,
        first_sync_done=True,
        sync_from=dt.date(2026, 1, 1),
    )
    f.FolderFactory(mailbox=mailbox, name="INBOX", uidvalidity=77, last_uid=42, special_use="inbox")
    f.FolderFactory(mailbox=mailbox, name="Sent", uidvalidity=78, last_uid=9, special_use="sent")
    return mailbox


def test_banner_shows_on_every_page_to_the_owner_only(client, owner, teammate, broken):
    client.force_login(owner)
    for url in (reverse("inbox:mailbox_list"), reverse("crm:contact_list")):
        html = client.get(url).content.decode()
        assert 'id="reconnect-banner"' in html and "olivia@relay.test" in html
        assert reverse("inbox:mailbox_reconnect", args=[broken.pk]) in html
    client.force_login(teammate)
    assert 'id="reconnect-banner"' not in client.get(reverse("crm:contact_list")).content.decode()


def test_banner_for_a_shared_mailbox_goes_to_admins(client, admin_user, teammate, shared_mailbox):
    Mailbox.objects.filter(pk=shared_mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    client.force_login(admin_user)
    assert 'id="reconnect-banner"' in client.get(reverse("crm:contact_list")).content.decode()
    client.force_login(teammate)  # reads it, cannot reconnect it: no banner to act on
    assert 'id="reconnect-banner"' not in client.get(reverse("crm:contact_list")).content.decode()


def test_banner_costs_one_query(rf, owner, broken):
    f.MailboxFactory(owner=owner, state=Mailbox.State.NEEDS_RECONNECT)
    request = rf.get("/")
    request.user = owner
    context = reconnect_banner(request)
    with CaptureQueriesContext(connection) as queries:
        assert len(list(context["reconnect_banner"])) == 2
        assert bool(context["reconnect_banner"])
    assert len(queries) == 1


def test_settings_show_the_reason_and_reconnect(client, owner, broken):
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_settings", args=[broken.pk])).content.decode()
    assert "needs to be reconnected" in html and "AUTHENTICATIONFAILED" in html
    assert reverse("inbox:mailbox_reconnect", args=[broken.pk]) in html


def test_reconnect_resumes_where_it_stopped(client, owner, broken, tester):
    client.force_login(owner)
    page = client.get(reverse("inbox:mailbox_reconnect", args=[broken.pk])).content.decode()
    assert "AUTHENTICATIONFAILED" in page and "stays the same" in page
    test = client.post(
        reverse("inbox:mailbox_reconnect_test", args=[broken.pk]), {"password": CANARY}
    ).content.decode()
    assert "Signed in." in test and "Reconnect</button>" in test and CANARY not in test
    response = client.post(
        reverse("inbox:mailbox_reconnect", args=[broken.pk]),
        {"password": CANARY, "folders_shown": "1", "active_folders": ["INBOX", "Sent"]},
    )
    assert response.status_code == 302
    broken.refresh_from_db()
    assert broken.state == Mailbox.State.ACTIVE and broken.last_error == ""
    assert broken.consecutive_failures == 0 and broken.sync_requested_at is not None
    assert broken.password.reveal() == CANARY
    cursors = {f.name: (f.uidvalidity, f.last_uid) for f in broken.folders.all()}
    assert cursors == {"INBOX": (77, 42), "Sent": (78, 9)}  # nothing reset
    assert tester.calls[-1][0].email_address == "olivia@relay.test"


def test_reconnect_refuses_another_address(client, owner, broken, tester):
    client.force_login(owner)
    before = broken.password_encrypted
    response = client.post(
        reverse("inbox:mailbox_reconnect", args=[broken.pk]),
        {
            "password": CANARY,
            "folders_shown": "1",
            "active_folders": ["INBOX"],
            "email_address": "someone.else@relay.test",
        },
    )
    assert response.status_code == 400
    assert "another address cannot be connected" in response.content.decode()
    broken.refresh_from_db()
    assert broken.state == Mailbox.State.NEEDS_RECONNECT
    assert broken.password_encrypted == before


def test_reconnect_with_a_wrong_password_changes_nothing(client, owner, broken, tester):
    tester.report = failing("auth")
    client.force_login(owner)
    before = broken.password_encrypted
    response = client.post(
        reverse("inbox:mailbox_reconnect", args=[broken.pk]),
        {"password": "still-wrong", "folders_shown": "1", "active_folders": ["INBOX"]},
    )
    assert response.status_code == 400
    assert "Wrong login name or password" in response.content.decode()
    broken.refresh_from_db()
    assert broken.password_encrypted == before and broken.state == Mailbox.State.NEEDS_RECONNECT


def test_reconnect_stops_after_repeated_refusals(client, owner, broken, tester):
    """docs/reliability.md C-09: a few refused passwords, then a pause, so the provider does not
    lock the account."""
    tester.report = failing("auth")
    client.force_login(owner)
    url = reverse("inbox:mailbox_reconnect", args=[broken.pk])
    limit = RECONNECT_AUTH_FAILURES[0]
    for _ in range(limit):
        client.post(url, {"password": "guess", "folders_shown": "1", "active_folders": ["INBOX"]})
    response = client.post(url, {"password": "guess", "active_folders": ["INBOX"]})
    assert response.status_code == 429
    assert "wait 15 minutes" in response.content.decode()
    assert len(tester.calls) == limit
    # The Test button is stopped as well: it is the same password guess.
    test = client.post(reverse("inbox:mailbox_reconnect_test", args=[broken.pk]), {"password": "x"})
    assert "wait 15 minutes" in test.content.decode() and len(tester.calls) == limit


def test_reconnect_bad_input_saves_nothing(client, owner, broken, tester):
    client.force_login(owner)
    url = reverse("inbox:mailbox_reconnect", args=[broken.pk])
    before = broken.password_encrypted
    for data, error in [
        ({"password": ""}, "This field is required"),
        ({"password": CANARY, "folders_shown": "1"}, "Pick at least one folder"),
        ({"password": CANARY, "folders_shown": "1", "active_folders": ["X"]}, "valid choice"),
    ]:
        response = client.post(url, data)
        assert response.status_code == 400 and error in response.content.decode()
    broken.refresh_from_db()
    assert broken.password_encrypted == before and broken.state == Mailbox.State.NEEDS_RECONNECT


def test_oauth_mailbox_reconnect_offers_the_provider_sign_in(client, owner):
    mailbox = f.MailboxFactory(
        owner=owner, connection_type="google", state=Mailbox.State.NEEDS_RECONNECT
    )
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_reconnect", args=[mailbox.pk])).content.decode()
    assert "Sign in with Google again" in html and 'name="password"' not in html


# --- options ------------------------------------------------------------------------------------


def test_options_save_and_bad_input_saves_nothing(client, owner, personal_mailbox):
    client.force_login(owner)
    url = reverse("inbox:mailbox_settings", args=[personal_mailbox.pk])
    good = {
        "display_name": "Olivia",
        "create_contacts": "on",
        "refresh_interval": "900",
        "signature": "-- \nOlivia",
        "privacy": "people",
        "sync_from": "2001-01-01",  # not a field: ignored
        "email_address": "x@evil.example",  # neither
    }
    assert client.post(url, good).status_code == 302
    personal_mailbox.refresh_from_db()
    assert personal_mailbox.refresh_interval == 900 and personal_mailbox.privacy == "people"
    assert personal_mailbox.email_address == "olivia@relay.test"
    assert personal_mailbox.sync_from is None
    response = client.post(url, {**good, "refresh_interval": "1", "display_name": "Changed"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    personal_mailbox.refresh_from_db()
    assert personal_mailbox.display_name == "Olivia"


# --- health -------------------------------------------------------------------------------------


def test_health_shows_state_folders_ledger_and_held(client, owner, personal_mailbox):
    inbox = f.FolderFactory(
        mailbox=personal_mailbox, name="INBOX", uidvalidity=1234, last_uid=57, messages_on_server=3
    )
    for _ in range(2):
        f.LocationFactory(message=f.MessageFactory(mailbox=personal_mailbox), folder=inbox)
    f.LedgerEntryFactory(folder=inbox, outcome=LedgerEntry.Outcome.STORED)
    held = f.LedgerEntryFactory(
        folder=inbox,
        uid=55,
        outcome=LedgerEntry.Outcome.HELD,
        attempts=3,
        reason="failed repeatedly",
        error="MIME nesting too deep",
    )
    Mailbox.objects.filter(pk=personal_mailbox.pk).update(
        first_sync_done=True, last_success_at=timezone.now()
    )
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_health", args=[personal_mailbox.pk])).content.decode()
    assert "1234" in html and ">57<" in html and "MIME nesting too deep" in html
    assert "UID 55" in html and ">Retry</button>" in html
    assert 'hx-trigger="every 2s"' not in html  # nothing moving: no polling

    response = client.post(
        reverse("inbox:mailbox_held_retry", args=[personal_mailbox.pk, held.pk]), follow=True
    )
    assert "will be fetched again" in response.content.decode()
    held.refresh_from_db()
    assert held.outcome == LedgerEntry.Outcome.FAILED and held.attempts == 0
    personal_mailbox.refresh_from_db()
    assert personal_mailbox.sync_requested_at is not None
    again = client.post(
        reverse("inbox:mailbox_held_retry", args=[personal_mailbox.pk, held.pk]), follow=True
    )
    assert "Only a message that could not be stored" in again.content.decode()


def test_health_polls_during_the_first_sync(client, owner, personal_mailbox):
    Mailbox.objects.filter(pk=personal_mailbox.pk).update(
        state=Mailbox.State.SYNCING, progress_total=200, progress_done=50
    )
    client.force_login(owner)
    url = reverse("inbox:mailbox_health", args=[personal_mailbox.pk])
    html = client.get(url).content.decode()
    assert 'hx-trigger="every 2s"' in html and "50 of 200 messages" in html
    part = client.get(url + "?part=live", HTTP_HX_REQUEST="true").content.decode()
    assert part.lstrip().startswith('<div id="health-live"') and "<html" not in part
    Mailbox.objects.filter(pk=personal_mailbox.pk).update(
        state=Mailbox.State.ACTIVE, progress_done=200, first_sync_done=True
    )
    part = client.get(url + "?part=live", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' not in part  # done: polling stops


def test_retry_of_another_mailboxs_entry_is_404(client, owner, personal_mailbox):
    other = f.LedgerEntryFactory(outcome=LedgerEntry.Outcome.HELD)
    client.force_login(owner)
    url = reverse("inbox:mailbox_held_retry", args=[personal_mailbox.pk, other.pk])
    assert client.post(url).status_code == 404
    other.refresh_from_db()
    assert other.outcome == LedgerEntry.Outcome.HELD


# --- bounded queries ----------------------------------------------------------------------------


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_query_counts_do_not_grow_with_data(client, owner):
    def fill(n):
        mailbox = f.MailboxFactory(owner=owner)
        for i in range(3):
            folder = f.FolderFactory(mailbox=mailbox, name=f"F{i}")
            for _ in range(n // 3):
                f.LedgerEntryFactory(folder=folder, outcome=LedgerEntry.Outcome.HELD)
        return mailbox

    client.force_login(owner)
    small, large = fill(3), fill(300)
    f.MailboxFactory.create_batch(10, owner=owner)
    health = [
        _queries(client, reverse("inbox:mailbox_health", args=[m.pk])) for m in (small, large)
    ]
    assert health[0] == health[1]
    listing_many = _queries(client, reverse("inbox:mailbox_list"))
    Mailbox.objects.exclude(pk__in=[small.pk]).delete()
    assert _queries(client, reverse("inbox:mailbox_list")) == listing_many


def test_password_canary_never_on_any_page(client, owner, tester):
    client.force_login(owner)
    client.post(reverse("inbox:mailbox_connect"), wizard_data())
    mailbox = Mailbox.objects.get()
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    urls = [
        reverse("inbox:mailbox_list"),
        reverse("inbox:mailbox_settings", args=[mailbox.pk]),
        reverse("inbox:mailbox_health", args=[mailbox.pk]),
        reverse("inbox:mailbox_reconnect", args=[mailbox.pk]),
        reverse("inbox:mailbox_connect"),
    ]
    for url in urls:
        assert CANARY not in client.get(url).content.decode(), url
    failed = client.post(
        reverse("inbox:mailbox_reconnect", args=[mailbox.pk]), {"password": CANARY}
    )
    assert CANARY not in failed.content.decode()
    assert Folder.objects.count() == 0


# --- admin site -----------------------------------------------------------------------------------


def test_admin_lists_grants_and_keeps_the_ledger_read_only(client, admin_user, world):
    client.force_login(admin_user)
    shared = world["mailboxes"]["shared"]
    listing = client.get(reverse("admin:inbox_mailbox_changelist")).content.decode()
    assert "1 user(s), 0 group(s)" in listing
    entry = shared.ledger.get()
    assert client.get(reverse("admin:inbox_ledgerentry_changelist")).status_code == 200
    detail = client.get(reverse("admin:inbox_ledgerentry_change", args=[entry.pk]))
    assert detail.status_code == 200 and 'name="outcome"' not in detail.content.decode()
    delete = client.post(
        reverse("admin:inbox_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403 and LedgerEntry.objects.filter(pk=entry.pk).exists()
    for path in (
        "admin:inbox_exclusionpattern_changelist",
        "admin:inbox_matchingsettings_changelist",
    ):
        assert client.get(reverse(path)).status_code == 200


def test_admin_retries_held_messages_it_manages(client, admin_user, world):
    client.force_login(admin_user)
    shared, personal = world["mailboxes"]["shared"], world["mailboxes"]["personal"]
    entries = [shared.ledger.get(), personal.ledger.get()]
    response = client.post(
        reverse("admin:inbox_ledgerentry_changelist"),
        {"action": "retry_held", "_selected_action": [e.pk for e in entries]},
        follow=True,
    )
    html = response.content.decode()
    assert "1 held message(s) will be fetched again" in html
    assert shared.ledger.get().outcome == LedgerEntry.Outcome.FAILED
    # Someone's personal ledger is not even listed to the admin (docs/reliability.md C-22).
    assert personal.ledger.get().outcome == LedgerEntry.Outcome.HELD


# --- finishing a mailbox an OAuth sign-in created ------------------------------------------------


@pytest.fixture
def signed_in(owner):
    """What inbox.services.mailboxes.mailbox_oauth_connected leaves: paused, no folders, no date."""
    return f.MailboxFactory(
        owner=owner,
        email_address="olivia@gmail.example",
        connection_type="google",
        state=Mailbox.State.PAUSED,
        active_folders=[],
    )


def test_oauth_mailbox_is_finished_in_the_setup_step(client, owner, signed_in, tester):
    client.force_login(owner)
    health = client.get(signed_in.get_absolute_url()).content.decode()
    assert 'id="finish-setup"' in health
    # Resume would sync everything from the start: it leads to the setup step instead.
    resume = client.post(reverse("inbox:mailbox_resume", args=[signed_in.pk]))
    assert resume["Location"] == reverse("inbox:mailbox_setup", args=[signed_in.pk])
    assert client.get(resume["Location"]).status_code == 200
    part = client.post(
        reverse("inbox:mailbox_setup_test", args=[signed_in.pk]),
        {"sync_from": "2026-06-01"},
    ).content.decode()
    assert "Signed in." in part and "Start syncing</button>" in part
    assert tester.calls[-1][1] == dt.date(2026, 6, 1)

    url = reverse("inbox:mailbox_setup", args=[signed_in.pk])
    bad = client.post(url, {"sync_from": "2999-01-01", "folders_shown": "1"})
    assert bad.status_code == 400 and "today or a date in the past" in bad.content.decode()
    none = client.post(
        url,
        {"sync_from": "2026-06-01", "folders_shown": "1", "refresh_interval": "300"},
    )
    assert none.status_code == 400 and "Pick at least one folder" in none.content.decode()
    signed_in.refresh_from_db()
    assert signed_in.sync_from is None and signed_in.state == Mailbox.State.PAUSED

    done = client.post(
        url,
        {
            "sync_from": "2026-06-01",
            "folders_shown": "1",
            "active_folders": ["INBOX", "Projects"],
            "refresh_interval": "900",
            "privacy": "people",
            "create_contacts": "on",
        },
    )
    assert done.status_code == 302
    signed_in.refresh_from_db()
    assert signed_in.state == Mailbox.State.ACTIVE and signed_in.sync_from == dt.date(2026, 6, 1)
    assert signed_in.active_folders == ["INBOX", "Projects"] and signed_in.refresh_interval == 900
    assert signed_in.sync_requested_at is not None
    assert PrimaryMailbox.objects.get(user=owner).mailbox == signed_in
    again = client.get(url)
    assert again["Location"] == reverse("inbox:mailbox_settings", args=[signed_in.pk])


def test_setup_is_404_for_others(client, outsider, admin_user, signed_in, tester):
    for user in (outsider, admin_user):
        client.force_login(user)
        assert client.get(reverse("inbox:mailbox_setup", args=[signed_in.pk])).status_code == 404
        response = client.post(
            reverse("inbox:mailbox_setup_test", args=[signed_in.pk]), {"sync_from": "2026-06-01"}
        )
        assert response.status_code == 404
    assert tester.calls == []


# --- outgoing mail ------------------------------------------------------------------------------


def test_smtp_test_and_test_email_from_the_settings_page(client, owner, smtp_server):
    from inbox.models import OutboxEntry

    mailbox = f.MailboxFactory(
        owner=owner,
        email_address="olivia@relay.test",
        login="olivia",
        password=CANARY,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    smtp_server.user, smtp_server.password = "olivia", CANARY
    client.force_login(owner)
    page = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    assert "Test SMTP connection" in page and "Send test email" in page
    ok = client.post(reverse("inbox:mailbox_smtp_test", args=[mailbox.pk]), follow=True)
    assert "sending works" in ok.content.decode()
    smtp_server.password = "changed-on-the-server"
    refused = client.post(reverse("inbox:mailbox_smtp_test", args=[mailbox.pk]), follow=True)
    html = refused.content.decode()
    assert "Sending does not work" in html and "refused the login" in html and CANARY not in html

    bad = client.post(
        reverse("inbox:mailbox_send_test", args=[mailbox.pk]), {"to": "not an address"}, follow=True
    )
    assert "not an address" in bad.content.decode() and not OutboxEntry.objects.exists()
    sent = client.post(
        reverse("inbox:mailbox_send_test", args=[mailbox.pk]), {"to": "me@elsewhere.example"}
    )
    assert sent.status_code == 302
    entry = OutboxEntry.objects.get()
    assert entry.purpose == "test" and entry.to == ["me@elsewhere.example"]


def test_outgoing_actions_are_404_for_non_managers(client, world, smtp_server):
    for who, which in [("teammate", "shared"), ("admin", "personal"), ("outsider", "personal")]:
        client.force_login(world["users"][who])
        mailbox = world["mailboxes"][which]
        for name in ("mailbox_smtp_test", "mailbox_send_test"):
            url = reverse(f"inbox:{name}", args=[mailbox.pk])
            assert client.post(url, {"to": "x@y.example"}).status_code == 404


# --- services, called directly ------------------------------------------------------------------


def test_services_refuse_what_the_pages_never_offer(owner, admin_user, broken):
    from django.core.exceptions import PermissionDenied, ValidationError

    common = dict(
        email_address="team@relay.test",
        password=CANARY,
        active_folders=["INBOX"],
        sync_from=dt.date(2026, 1, 1),
        imap_host="imap.relay.test",
    )
    with pytest.raises(PermissionDenied):
        mailbox_connect(user=owner, kind="shared", **common)
    with pytest.raises(ValidationError):
        mailbox_connect(user=owner, kind="personal", **{**common, "active_folders": []})
    with pytest.raises(TypeError):
        mailbox_connect(user=owner, kind="personal", state="active", **common)
    assert not Mailbox.objects.filter(email_address="team@relay.test").exists()
    with pytest.raises(PermissionDenied):
        mailbox_reconnect(user=admin_user, mailbox=broken, password=CANARY)
    with pytest.raises(TypeError):
        mailbox_update_options(user=owner, mailbox=broken, sync_from=dt.date(2020, 1, 1))
    with pytest.raises(ValidationError):
        mailbox_update_options(user=owner, mailbox=broken, refresh_interval=1)
    broken.refresh_from_db()
    assert broken.sync_from == dt.date(2026, 1, 1) and broken.refresh_interval == 300


@pytest.mark.django_db
def test_health_calls_imported_folders_imported_not_gone(client, owner):
    mailbox = f.MailboxFactory(owner=owner)
    f.FolderFactory(
        mailbox=mailbox, name="Archive 2019", is_local=True, exists_on_server=False, is_active=False
    )
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_health", args=[mailbox.pk])).content.decode()
    assert "Archive 2019" in html and "imported" in html
    assert "gone from the server" not in html


def test_an_internal_name_and_an_unknown_name_get_the_same_answer(client, owner, settings):
    """docs/reliability.md C-25: through the real Test connection (no stand-in for the port),
    "localhost" (resolves, but to an internal address) and a name that resolves to nothing
    get the same page; a sync of mailboxes pointed at them leaves the same error for the owner
    to read. Otherwise the form tells which internal names exist."""
    from connector.sync.mailbox import sync_mailbox

    settings.RELAY_ALLOWED_MAIL_HOSTS = []
    client.force_login(owner)
    pages, errors = [], []
    for host in ("localhost", "no-such-host.invalid"):
        cache.clear()
        data = wizard_data(imap_host=host, smtp_host=host, folders_shown=None, active_folders=None)
        response = client.post(reverse("inbox:mailbox_test"), data, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        pages.append(response.content.decode().replace(host, "HOST"))
        mailbox = f.MailboxFactory(owner=owner, imap_host=host, smtp_host=host)
        sync_mailbox(mailbox.pk)
        mailbox.refresh_from_db()
        errors.append(mailbox.last_error.replace(host, "HOST"))
        listing = client.get(reverse("inbox:mailbox_list")).content.decode()
        assert escape(mailbox.last_error) in listing
    assert pages[0] == pages[1]
    assert "The mail server could not be reached" in pages[0]
    assert USER_MESSAGES["unreachable"] in pages[0]
    assert errors[0] == errors[1] and "127.0.0.1" not in errors[0]
