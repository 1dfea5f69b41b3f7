"""Google and Microsoft sign-in for shared mailboxes, and warnings before a sign-in dies
(docs/product.md §2.9; docs/reliability.md C-34, C-35).

What is faked and why: Google's and Microsoft's endpoints cannot be reached from here, so
tests/servers/oauth.py plays the provider, including Exchange's "Full access" of a user on a
shared mailbox (`full_access`) and a refresh token's told lifetime (`refresh_token_expires_in`).
Everything else is real: the flow goes through the Django views and authlib over HTTP, tokens
land encrypted in PostgreSQL, and the XOAUTH2 login naming the shared mailbox with the admin's
token is checked by a real Dovecot asking the fake provider's introspection endpoint."""

# The fixtures of tests/servers/oauth.py are imported by name: test parameters "redefine" them.
# ruff: noqa: F811
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from connector.sync import mailbox as sync
from connector.transport import oauth
from inbox.crypto import Secret
from inbox.models import Mailbox, Message
from inbox.services.mailboxes import warn_expiring_grants
from notifications.models import Notification
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.synckit import make_raw
from tests.connector.transport.test_oauth import sign_in
from tests.servers.oauth import dovecot_oauth, oauth_server, oauth_server_session  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]


@pytest.fixture
def ada(db):
    return f.UserFactory(
        username="ada", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )


def sign_in_shared(client, provider: str, address: str):
    """sign_in() of test_oauth.py, with the shared mailbox's address typed first."""
    from urllib.parse import urlsplit

    import requests

    start = client.post(reverse("inbox:oauth_start", args=[provider]), {"shared_address": address})
    assert start.status_code == 302, start
    consent = requests.get(start["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(consent.headers["Location"])
    return client.get(f"{back.path}?{back.query}", follow=True)


def test_an_admin_opens_a_shared_microsoft_mailbox_with_her_own_sign_in(
    client, ada, oauth_server, dovecot_oauth
):
    support = dovecot_oauth.create_user()
    oauth_server.sign_in_as = "ada@contoso.example"
    oauth_server.full_access["ada@contoso.example"] = support  # Exchange: Ada has Full access
    client.force_login(ada)

    page = sign_in_shared(client, "microsoft", support.upper())

    mailbox = Mailbox.objects.get()
    assert mailbox.kind == Mailbox.Kind.SHARED and mailbox.owner is None
    assert mailbox.email_address == support and mailbox.connection_type == "microsoft"
    assert mailbox.oauth_account == "ada@contoso.example"
    assert list(mailbox.granted_users.all()) == [ada]  # never readable by nobody
    assert f"{support} is connected." in page.content.decode()
    lifetime = mailbox.oauth_grant_expires_at - timezone.now()
    assert dt.timedelta(days=89) < lifetime <= dt.timedelta(days=90)  # Microsoft's documented
    refresh = Secret(mailbox.oauth_refresh_token_encrypted).reveal()
    assert refresh == oauth_server.current_refresh_token("ada@contoso.example")

    # The sync logs in with XOAUTH2 as the shared mailbox, with Ada's token: the real Dovecot
    # asks the provider about the token and lets it open support@ only because of Full access.
    Mailbox.objects.filter(pk=mailbox.pk).update(
        imap_host=dovecot_oauth.host,
        imap_port=dovecot_oauth.port,
        imap_security="none",
        active_folders=[],
        state=Mailbox.State.ACTIVE,
        oauth_expires_at=timezone.now() - dt.timedelta(seconds=5),
    )
    for i in range(2):
        dovecot_oauth.deliver(support, make_raw(f"to support {i}"))
    report = sync.sync_mailbox(mailbox.pk, connect=oauth.connect_imap)
    assert report.completed, report.summary()
    assert Message.objects.filter(mailbox=mailbox).count() == 2
    mailbox.refresh_from_db()
    assert Secret(mailbox.oauth_access_token_encrypted).reveal() in oauth_server.introspections

    # Without Full access the same token opens nothing: the mailbox needs reconnecting.
    oauth_server.full_access.clear()
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    report = sync.sync_mailbox(mailbox.pk, connect=oauth.connect_imap)
    mailbox.refresh_from_db()
    assert not report.completed and mailbox.state == Mailbox.State.NEEDS_RECONNECT


def test_google_opens_a_shared_mailbox_only_signed_in_as_itself(client, ada, oauth_server):
    client.force_login(ada)
    oauth_server.sign_in_as = "ada@gmail.example"
    page = sign_in_shared(client, "google", "support@gmail.example")
    assert "sign in as support@gmail.example itself; nothing was connected" in (
        page.content.decode()
    )
    assert not Mailbox.objects.exists()

    oauth_server.sign_in_as = "support@gmail.example"
    sign_in_shared(client, "google", "support@gmail.example")
    mailbox = Mailbox.objects.get()
    assert mailbox.kind == "shared" and mailbox.oauth_account == ""


def test_only_an_admin_starts_a_shared_sign_in_and_a_bad_address_is_named(
    client, ada, teammate, oauth_server
):
    client.force_login(teammate)
    answer = client.post(
        reverse("inbox:oauth_start", args=["microsoft"]), {"shared_address": "support@x.example"}
    )
    assert answer.status_code == 404
    assert not oauth_server.authorize_requests

    client.force_login(ada)
    answer = client.post(
        reverse("inbox:oauth_start", args=["microsoft"]),
        {"shared_address": "not an address"},
        follow=True,
    )
    assert "Enter the shared mailbox&#x27;s address" in answer.content.decode()
    assert not oauth_server.authorize_requests and not Mailbox.objects.exists()


def signed_in_as(client, mailbox) -> str:
    """The "Signed in as" line of the mailbox's settings page, as its text reads."""
    import re

    page = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk]))
    assert page.status_code == 200
    (cell,) = re.findall(r'<dd id="oauth-account">(.*?)</dd>', page.content.decode(), re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", cell).split()).replace(" )", ")")


def test_another_admin_reconnects_a_shared_microsoft_mailbox_with_her_sign_in(
    client, ada, oauth_server
):
    mailbox = f.SharedMailboxFactory(
        email_address="support@contoso.example",
        connection_type="microsoft",
        state=Mailbox.State.NEEDS_RECONNECT,
        oauth_account="gone@contoso.example",
    )
    client.force_login(ada)
    oauth_server.sign_in_as = "ada@contoso.example"
    sign_in(client, "microsoft", mailbox=mailbox)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE
    assert mailbox.oauth_account == "ada@contoso.example"
    assert signed_in_as(client, mailbox).startswith(
        "ada@contoso.example (Microsoft account) The sign-in lasts until "
    )
    # A personal mailbox still takes only its own account (docs/reliability.md C-20).
    personal = f.MailboxFactory(
        owner=ada, email_address="ada@contoso.example", connection_type="microsoft"
    )
    oauth_server.sign_in_as = "mallory@contoso.example"
    page = sign_in(client, "microsoft", mailbox=personal)[1]
    personal.refresh_from_db()
    assert personal.oauth_account == "" and page.status_code == 302


def test_a_week_before_a_sign_in_dies_the_admins_are_told_once(client, ada, teammate, oauth_server):
    """The provider says when the refresh token dies (Google, for an app in "testing"): the
    admins of the shared mailbox are told once, on the bell and by mail, and the health page
    says it; grantees who do not manage it are not told."""
    second_admin = f.UserFactory(username="bo", is_staff=True, is_superuser=True)
    oauth_server.refresh_token_expires_in = 5 * 24 * 3600
    oauth_server.sign_in_as = "support@gmail.example"
    client.force_login(ada)
    sign_in_shared(client, "google", "support@gmail.example")
    mailbox = Mailbox.objects.get()
    mailbox.granted_users.add(teammate)
    left = mailbox.oauth_grant_expires_at - timezone.now()
    assert dt.timedelta(days=4, hours=23) < left <= dt.timedelta(days=5)

    assert warn_expiring_grants() == [mailbox.pk]
    assert warn_expiring_grants() == []  # once per expiry, however often the beat runs
    told = Notification.objects.filter(kind="reconnect")
    assert sorted(told.values_list("recipient__username", flat=True)) == ["ada", "bo"]
    assert second_admin.notifications.get().url == reverse(
        "inbox:mailbox_reconnect", args=[mailbox.pk]
    )
    assert "sign-in of support@gmail.example expires on" in told.first().text

    html = client.get(reverse("inbox:mailbox_health", args=[mailbox.pk])).content.decode()
    assert 'id="grant-expiry"' in html and "Reconnect now" in html
    # The settings page names the account the sign-in goes through, and its expiry.
    expiry = f"{timezone.localtime(mailbox.oauth_grant_expires_at):%-d %B %Y}"
    assert signed_in_as(client, mailbox) == (
        f"support@gmail.example (Google account: the mailbox's own) The sign-in lasts until "
        f"{expiry} unless renewed (each sync renews it)."
    )

    # Reconnected: a new grant, and its own warning when it comes close again.
    oauth_server.refresh_token_expires_in = None
    sign_in(client, "google", mailbox=mailbox)
    mailbox.refresh_from_db()
    assert mailbox.oauth_grant_expires_at > timezone.now() + dt.timedelta(days=150)
    assert warn_expiring_grants() == []
    html = client.get(reverse("inbox:mailbox_health", args=[mailbox.pk])).content.decode()
    assert "Reconnect now" not in html and "unless renewed" in html


def test_a_personal_microsoft_sign_in_warns_its_owner_near_the_documented_lifetime(
    client, owner, ada, oauth_server
):
    """Microsoft does not say when a refresh token dies: 90 days after its last use, as
    documented. Each refresh renews it; one not renewed warns its owner only (never an admin:
    docs/product.md §2.2) in its last week."""
    client.force_login(owner)
    oauth_server.sign_in_as = "olivia@contoso.example"
    sign_in(client, "microsoft")
    mailbox = Mailbox.objects.get()
    assert warn_expiring_grants() == []
    expires = mailbox.oauth_grant_expires_at
    assert warn_expiring_grants(now=expires - dt.timedelta(days=8)) == []
    assert warn_expiring_grants(now=expires - dt.timedelta(days=6)) == [mailbox.pk]
    assert list(Notification.objects.values_list("recipient__username", flat=True)) == ["owner"]

    # A refresh renews the grant: its expiry moves on.
    Mailbox.objects.filter(pk=mailbox.pk).update(
        oauth_expires_at=timezone.now() - dt.timedelta(seconds=1),
        oauth_grant_expires_at=timezone.now() + dt.timedelta(days=3),
    )
    oauth.ensure_access_token(mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.oauth_grant_expires_at > timezone.now() + dt.timedelta(days=89)
