"""OAuth 2 for Google and Microsoft mailboxes (docs/reliability.md C-10).

What is faked and why: Google's and Microsoft's endpoints cannot be reached from here, so
tests/servers/oauth.py plays the provider (authorise with PKCE, token with refresh-token
rotation and invalid_grant, userinfo, and RFC 7662 introspection). Everything else is real:
the flow goes through the Django views and authlib over HTTP, tokens land encrypted in the
test PostgreSQL, and XOAUTH2 logins are checked by a real Dovecot whose ``oauth2`` passdb asks
the fake provider's introspection endpoint, and by the aiosmtpd server."""

# The fixtures of tests/servers/oauth.py are imported by name (the shared conftest is not ours
# to change), so test parameters "redefine" them:
# ruff: noqa: F811
from __future__ import annotations

import datetime as dt
import threading
from urllib.parse import urlsplit

import pytest
import requests
from django.db import close_old_connections, connection
from django.urls import reverse
from django.utils import timezone

from connector.outbound import outbox as sending
from connector.scheduling import dispatch
from connector.sync import mailbox as sync
from connector.transport import oauth
from connector.transport.errors import AuthenticationFailed, TemporaryFailure
from inbox.crypto import Secret
from inbox.models import Folder, Mailbox, Message, OutboxEntry
from inbox.services.composing import outbox_compose
from tests import factories as f
from tests.connector.filingkit import eager_celery  # noqa: F401
from tests.connector.synckit import assert_in_step, make_raw
from tests.servers.oauth import dovecot_oauth, oauth_server, oauth_server_session  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]


def oauth_mailbox(owner, oauth_server, email: str, *, expired: bool = False, **fields) -> Mailbox:
    access, refresh = oauth_server.issue(email)
    mailbox = f.MailboxFactory(owner=owner, email_address=email, connection_type="google", **fields)
    when = timezone.now() + (dt.timedelta(seconds=-10) if expired else dt.timedelta(hours=1))
    mailbox.set_oauth_tokens(access_token=access, refresh_token=refresh, expires_at=when)
    mailbox.save()
    return mailbox


def stored_tokens(mailbox: Mailbox) -> tuple[str, str]:
    mailbox.refresh_from_db()
    return (
        Secret(mailbox.oauth_access_token_encrypted).reveal(),
        Secret(mailbox.oauth_refresh_token_encrypted).reveal(),
    )


def sign_in(client, provider: str, *, mailbox: Mailbox | None = None):
    """Start in the CRM, "consent" at the fake provider, come back to the callback."""
    data = {"mailbox": mailbox.pk} if mailbox else {}
    start = client.post(reverse("inbox:oauth_start", args=[provider]), data)
    assert start.status_code == 302, start
    consent = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["Location"])
    assert back.path == reverse("inbox:oauth_callback")
    return start, client.get(f"{back.path}?{back.query}")


# --- the flow -------------------------------------------------------------------------------


def test_connect_with_google_uses_pkce_and_offline_access(client, owner, oauth_server):
    client.force_login(owner)
    oauth_server.sign_in_as = "Olivia.Owner@Gmail.example"
    start, callback = sign_in(client, "google")

    asked = oauth_server.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["access_type"] == "offline" and asked["prompt"] == "consent"
    assert "https://mail.google.com/" in asked["scope"].split()
    assert asked["nonce"] and asked["state"]
    assert "code_verifier" not in start["Location"]  # the verifier never leaves the server
    assert oauth_server.pkce_checked == 1
    assert callback.status_code == 302

    mailbox = Mailbox.objects.get(owner=owner)
    assert mailbox.email_address == "olivia.owner@gmail.example"
    assert mailbox.connection_type == "google" and mailbox.kind == "personal"
    assert mailbox.state == Mailbox.State.PAUSED  # the connect wizard picks folders first
    access, refresh = stored_tokens(mailbox)
    assert refresh == oauth_server.current_refresh_token("Olivia.Owner@Gmail.example")
    assert access.startswith("at-") and mailbox.oauth_expires_at > timezone.now()
    # Encrypted at rest: the database never holds the token itself (docs/reliability.md C-01).
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM inbox_mailbox WHERE id = %s", [mailbox.pk])
        row = " ".join(str(v) for v in cursor.fetchone())
    assert refresh not in row and access not in row


def test_microsoft_address_comes_from_the_id_token(client, owner, oauth_server):
    client.force_login(owner)
    oauth_server.sign_in_as = "olivia@contoso.example"
    _, callback = sign_in(client, "microsoft")
    assert callback.status_code == 302
    mailbox = Mailbox.objects.get(owner=owner)
    assert (mailbox.email_address, mailbox.connection_type) == (
        "olivia@contoso.example",
        "microsoft",
    )
    asked = oauth_server.authorize_requests[-1]
    assert "offline_access" in asked["scope"].split()
    assert "https://outlook.office.com/SMTP.Send" in asked["scope"].split()


def test_microsoft_sign_in_never_takes_the_unverified_email_claim(client, owner, oauth_server):
    """docs/reliability.md C-20. tests/servers/oauth.py stands in for Microsoft, which cannot be
    reached from here. Its id_token carries what any tenant's administrator can write: an
    `email` claim naming someone else's address (Microsoft does not verify it), beside the
    account's sign-in name, `preferred_username`, whose domain the tenant had to prove."""
    client.force_login(owner)
    oauth_server.sign_in_as = "mallory@attacker.example"
    oauth_server.id_token_claims = {"email": "ceo@victim.example", "email_verified": None}

    _, callback = sign_in(client, "microsoft")

    assert callback.status_code == 302
    assert list(Mailbox.objects.values_list("email_address", flat=True)) == [
        "mallory@attacker.example"
    ]

    # Without the sign-in name there is nothing verified to go on: nothing is connected.
    Mailbox.objects.all().delete()
    oauth_server.id_token_claims = {"email": "ceo@victim.example", "preferred_username": None}
    _, callback = sign_in(client, "microsoft")
    shown = [str(m) for m in callback.wsgi_request._messages]
    assert any("did not give the account's sign-in address" in m for m in shown), shown
    assert not Mailbox.objects.exists()


def test_a_callback_this_browser_did_not_start_is_refused(client, owner, oauth_server):
    client.force_login(owner)
    answer = client.get(reverse("inbox:oauth_callback") + "?code=stolen&state=forged")
    assert answer.status_code == 400
    assert not Mailbox.objects.exists()
    # A state is used once: replaying a real callback is refused too.
    oauth_server.sign_in_as = "olivia@gmail.example"
    start = client.post(reverse("inbox:oauth_start", args=["google"]))
    back = urlsplit(requests.get(start["Location"], allow_redirects=False).headers["Location"])
    assert client.get(f"{back.path}?{back.query}").status_code == 302
    assert client.get(f"{back.path}?{back.query}").status_code == 400


def test_reconnect_as_another_account_is_refused_and_changes_nothing(client, owner, oauth_server):
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example")
    Mailbox.objects.filter(pk=mailbox.pk).update(
        state=Mailbox.State.NEEDS_RECONNECT, last_error="revoked"
    )
    before = stored_tokens(mailbox)
    client.force_login(owner)
    oauth_server.sign_in_as = "mallory@gmail.example"
    _, callback = sign_in(client, "google", mailbox=mailbox)
    assert callback.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    assert stored_tokens(mailbox) == before
    assert Mailbox.objects.count() == 1
    shown = [str(m) for m in callback.wsgi_request._messages]
    assert any(
        "You signed in as mallory@gmail.example, but this mailbox is olivia@gmail.example" in m
        and "nothing was changed" in m
        for m in shown
    ), shown

    oauth_server.sign_in_as = "olivia@gmail.example"
    sign_in(client, "google", mailbox=mailbox)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE and mailbox.last_error == ""
    assert stored_tokens(mailbox)[1] == oauth_server.current_refresh_token("olivia@gmail.example")


def test_nobody_else_can_reconnect_a_mailbox(client, owner, outsider, oauth_server):
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example")
    client.force_login(outsider)
    answer = client.post(reverse("inbox:oauth_start", args=["google"]), {"mailbox": mailbox.pk})
    assert answer.status_code == 404


# --- refresh ----------------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_before_use_and_the_rotation_saved(
    owner, oauth_server
):
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example", expired=True)
    old_access, old_refresh = stored_tokens(mailbox)

    token = oauth.ensure_access_token(mailbox.pk)

    new_access, new_refresh = stored_tokens(mailbox)
    assert token == new_access != old_access
    assert new_refresh != old_refresh  # rotated, and saved
    assert new_refresh == oauth_server.current_refresh_token("olivia@gmail.example")
    assert mailbox.oauth_expires_at > timezone.now() + dt.timedelta(minutes=50)
    # Fresh now: no second refresh.
    assert oauth.ensure_access_token(mailbox.pk) == new_access
    assert oauth_server.refreshes == 1
    # About to expire (inside the margin): refreshed ahead of time.
    Mailbox.objects.filter(pk=mailbox.pk).update(
        oauth_expires_at=timezone.now() + dt.timedelta(seconds=60)
    )
    assert oauth.ensure_access_token(mailbox.pk) != new_access
    assert oauth_server.refreshes == 2


def test_a_provider_that_does_not_rotate_keeps_the_refresh_token(owner, oauth_server):
    oauth_server.rotate = False
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example", expired=True)
    _, refresh = stored_tokens(mailbox)
    oauth.ensure_access_token(mailbox.pk)
    assert stored_tokens(mailbox)[1] == refresh


def test_two_workers_refreshing_at_once_never_lose_the_newest_refresh_token(owner, oauth_server):
    """100 rounds: the token expires, two workers need it at the same moment. With rotation
    a second refresh with the old token would get invalid_grant (or, saved late, overwrite
    the newest token). The row lock makes it one refresh per round, the newest token kept."""
    oauth_server.refresh_delay = 0.01  # the provider takes a moment: both workers overlap
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example")
    errors: list[BaseException] = []

    def worker(barrier: threading.Barrier, results: list[str]) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(oauth.ensure_access_token(mailbox.pk))
        except BaseException as exc:  # reported below, with the round
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    for round_ in range(100):
        Mailbox.objects.filter(pk=mailbox.pk).update(
            oauth_expires_at=timezone.now() - dt.timedelta(seconds=1)
        )
        barrier, results = threading.Barrier(2), []
        threads = [threading.Thread(target=worker, args=(barrier, results)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, f"round {round_}: {errors!r}"
        assert len(results) == 2 and results[0] == results[1], round_
        assert oauth_server.refreshes == round_ + 1, round_
        assert stored_tokens(mailbox)[1] == oauth_server.current_refresh_token(
            "olivia@gmail.example"
        )
        mailbox.refresh_from_db()
        assert mailbox.state == Mailbox.State.ACTIVE
    assert oauth_server.rejected_refreshes == 0


def test_a_revoked_grant_needs_reconnect_without_a_retry_storm(owner, oauth_server):
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example", expired=True)
    before = stored_tokens(mailbox)
    oauth_server.revoke("olivia@gmail.example")

    with pytest.raises(AuthenticationFailed):
        oauth.ensure_access_token(mailbox.pk)

    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    assert "Reconnect" in mailbox.last_error
    assert stored_tokens(mailbox) == before  # nothing overwritten
    assert oauth_server.refresh_calls == 1
    # The owner sees it (the banner reads this state); nobody hammers the provider: the sync
    # is not dispatched, a sync that runs anyway stops at once, sending waits.
    assert mailbox.pk not in dispatch.due_mailboxes().values_list("pk", flat=True)
    report = sync.sync_mailbox(mailbox.pk, connect=oauth.connect_imap)
    assert report.outcome == "not_active"
    entry = outbox_compose(
        user=owner, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
    )
    for _ in range(5):
        sending.process_entry(entry.pk)
        sending.dispatch_due(enqueue=sending.process_entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.QUEUED and "reconnected" in entry.last_error
    with pytest.raises(AuthenticationFailed):
        oauth.ensure_access_token(mailbox.pk)
    assert oauth_server.refresh_calls == 1


def test_a_network_error_is_only_temporary(owner, oauth_server, settings):
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example", expired=True)
    before = stored_tokens(mailbox)
    oauth_server.failing = True  # the provider answers 503
    with pytest.raises(TemporaryFailure):
        oauth.ensure_access_token(mailbox.pk)
    oauth_server.failing = False
    settings.RELAY_OAUTH_PROVIDERS["google"]["token_url"] = "http://127.0.0.1:9/token"
    with pytest.raises(TemporaryFailure):
        oauth.ensure_access_token(mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE
    assert stored_tokens(mailbox) == before


# --- XOAUTH2 against the real servers --------------------------------------------------------


def test_xoauth2_sync_against_the_real_dovecot_and_reconnect_imports_nothing_twice(
    client, owner, oauth_server, dovecot_oauth
):
    login = dovecot_oauth.create_user()
    mailbox = oauth_mailbox(
        owner,
        oauth_server,
        login,
        expired=True,
        imap_host=dovecot_oauth.host,
        imap_port=dovecot_oauth.port,
        imap_security="none",
        active_folders=[],
    )
    for i in range(3):
        dovecot_oauth.deliver(login, make_raw(f"mail {i}"))

    report = sync.sync_mailbox(mailbox.pk, connect=oauth.connect_imap)

    assert report.completed, report.summary()
    assert oauth_server.refreshes == 1  # the expired token was refreshed before the login
    access, _ = stored_tokens(mailbox)
    assert access in oauth_server.introspections  # Dovecot checked it with the provider
    assert Message.objects.filter(mailbox=mailbox).count() == 3

    # Revoked at the provider: Dovecot refuses the token, the refresh gets invalid_grant.
    oauth_server.revoke(login)
    report = sync.sync_mailbox(mailbox.pk, connect=oauth.connect_imap)
    mailbox.refresh_from_db()
    assert report.outcome == "needs_reconnect" and mailbox.state == "needs_reconnect"
    cursor = Folder.objects.get(mailbox=mailbox, name="INBOX").last_uid

    # Reconnect with the same account: syncing resumes where it stopped.
    dovecot_oauth.deliver(login, make_raw("while disconnected"))
    client.force_login(owner)
    oauth_server.sign_in_as = login
    sign_in(client, "google", mailbox=mailbox)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.ACTIVE
    report = sync.sync_mailbox(mailbox.pk, connect=oauth.connect_imap)
    assert report.completed, report.summary()
    assert report.total("stored") == 1  # only the new one: nothing re-imported
    assert Folder.objects.get(mailbox=mailbox, name="INBOX").last_uid > cursor
    assert Message.objects.filter(mailbox=mailbox).count() == 4

    class User(str):
        server = dovecot_oauth

    user = User(login)
    user.login = login
    assert_in_step(mailbox, user)


def test_a_wrong_token_is_refused_by_the_real_dovecot(owner, oauth_server, dovecot_oauth):
    from connector.transport.imap import ImapSettings, open_session

    login = dovecot_oauth.create_user()
    with pytest.raises(AuthenticationFailed):
        open_session(
            ImapSettings(
                host=dovecot_oauth.host,
                port=dovecot_oauth.port,
                security="none",
                login=login,
                access_token="at-not-a-real-token",
            )
        )
    # A real token of another account does not open this one either.
    other_access, _ = oauth_server.issue("someone-else@relay.test")
    with pytest.raises(AuthenticationFailed):
        open_session(
            ImapSettings(
                host=dovecot_oauth.host,
                port=dovecot_oauth.port,
                security="none",
                login=login,
                access_token=other_access,
            )
        )


def test_xoauth2_sending_through_smtp_with_a_refreshed_token(owner, oauth_server, smtp_server):
    """Gmail-style: XOAUTH2 on SMTP with a token refreshed first, checked by the server
    against the provider."""
    mailbox = oauth_mailbox(
        owner,
        oauth_server,
        "olivia@gmail.example",
        expired=True,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    old_access, _ = stored_tokens(mailbox)

    class ValidAtTheProvider:
        """The aiosmtpd fixture compares the bearer token with ``oauth_token``: this one
        asks the fake provider, as Gmail's SMTP server asks Google."""

        def __eq__(self, token):
            return oauth_server.valid_access(token) == smtp_server.user

        __hash__ = None

    smtp_server.user = "olivia@gmail.example"
    smtp_server.oauth_token = ValidAtTheProvider()

    entry = outbox_compose(
        user=owner, mailbox=mailbox, to="ana@acme.example", subject="Hi", text_body="x"
    )

    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.SENT, entry.last_error
    assert smtp_server.logins == ["olivia@gmail.example"]
    assert len(smtp_server.received) == 1
    assert oauth_server.refreshes == 1 and stored_tokens(mailbox)[0] != old_access
    # No APPEND: the entry waits to be linked to the copy Gmail files in Sent (this mailbox
    # has no IMAP server here; test_sending covers the linking against Dovecot).
    assert not entry.appended_to_sent and entry.next_attempt_at is not None


def test_tokens_never_reach_the_logs_or_a_repr(owner, oauth_server):
    """docs/reliability.md C-01 for OAuth: refresh, rotation and a revoked grant at DEBUG level log
    no token, and the objects that carry them do not print them."""
    import io
    import logging

    # Our own DEBUG handler on the root logger (works with pytest's logging plugin off).
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        printed = _exercise_tokens(owner, oauth_server)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    secrets_seen, text = printed
    text += captured.getvalue()
    assert "refreshed" in text  # the log was captured
    for secret in (*secrets_seen, "at-secret", "rt-secret", "verifier-secret"):
        assert secret not in text


def _exercise_tokens(owner, oauth_server):
    mailbox = oauth_mailbox(owner, oauth_server, "olivia@gmail.example", expired=True)
    secrets_seen = set(stored_tokens(mailbox))
    oauth.ensure_access_token(mailbox.pk)
    secrets_seen |= set(stored_tokens(mailbox))
    Mailbox.objects.filter(pk=mailbox.pk).update(oauth_expires_at=timezone.now())
    oauth_server.revoke("olivia@gmail.example")
    with pytest.raises(AuthenticationFailed) as refused:
        oauth.ensure_access_token(mailbox.pk)
    grant = oauth.OAuthGrant(
        email="x@gmail.example", access_token="at-secret", refresh_token="rt-secret"
    )
    request = oauth.AuthorizationRequest(
        url="https://x", state="s", code_verifier="verifier-secret", nonce="n"
    )
    return secrets_seen, " ".join(
        [str(refused.value), repr(grant), repr(request), repr(mailbox.password)]
    )
