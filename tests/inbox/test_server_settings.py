"""Changing a mailbox's servers on its settings page (docs/product.md §2.8), against the real
Dovecot and aiosmtpd of the test suite: every change is tested before it is saved, a failed test
saves nothing and says which server failed and why, a change that would carry the stored password
somewhere new asks for it again, and the SMTP server can have a login of its own or none."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils.html import escape

from inbox.models import Mailbox, SmtpAuth
from tests.connector.synckit import make_mailbox
from tests.servers.smtp import SMTP_PASSWORD, SMTP_USER

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # the connection tests' rate limits live in the cache
    yield
    cache.clear()


@pytest.fixture
def mailbox(imap_user, owner, smtp_server):
    return make_mailbox(
        imap_user,
        owner=owner,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        smtp_auth="none",  # the test server takes mail without a login too
        login=imap_user.login,
    )


def form_data(mailbox: Mailbox, **changes) -> dict:
    data = {
        "imap_host": mailbox.imap_host,
        "imap_port": str(mailbox.imap_port),
        "imap_security": mailbox.imap_security,
        "login": mailbox.login,
        "password": "",
        "smtp_host": mailbox.smtp_host,
        "smtp_port": str(mailbox.smtp_port),
        "smtp_security": mailbox.smtp_security,
        "smtp_auth": mailbox.smtp_auth,
        "smtp_login": mailbox.smtp_login,
        "smtp_password": "",
    }
    if mailbox.allow_insecure_cert:
        data["allow_insecure_cert"] = "on"
    data.update(changes)
    return {f"servers-{k}": v for k, v in data.items() if v is not None}


def post(client, mailbox, **changes):
    return client.post(
        reverse("inbox:mailbox_servers", args=[mailbox.pk]), form_data(mailbox, **changes)
    )


def saved(mailbox) -> tuple:
    row = Mailbox.objects.get(pk=mailbox.pk)
    return (
        row.imap_host,
        row.imap_port,
        row.imap_security,
        row.login,
        row.allow_insecure_cert,
        row.smtp_host,
        row.smtp_port,
        row.smtp_security,
        row.smtp_auth,
        row.smtp_login,
        row.password_encrypted,
        row.smtp_password_encrypted,
        row.state,
    )


def _errors(response) -> str:
    import re

    html = response.content.decode()
    found = re.findall(
        r'(?s)id="servers-error"[^>]*>(.*?)</div>|invalid-feedback[^>]*>(.*?)</', html
    )
    return repr(found)


def test_the_settings_page_shows_the_servers_for_editing(client, owner, mailbox):
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    assert 'id="servers"' in html and "Test and save" in html
    assert f'value="{mailbox.imap_host}"' in html and f'value="{mailbox.smtp_port}"' in html
    assert 'name="servers-smtp_auth"' in html and "A separate login and password" in html


def test_a_separate_smtp_login_is_tested_on_the_real_server_then_saved(
    client, owner, mailbox, smtp_server
):
    client.force_login(owner)
    before_password = saved(mailbox)[10]

    response = post(
        client,
        mailbox,
        smtp_auth="separate",
        smtp_login=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
    )

    assert response.status_code == 302, _errors(response)
    assert response["Location"].endswith("#servers")
    page = client.get(response["Location"]).content.decode()
    assert "Server settings tested and saved" in page
    assert "Separate login: " + SMTP_USER in page
    assert smtp_server.logins == [SMTP_USER]  # the test signed in with the new login
    row = Mailbox.objects.get(pk=mailbox.pk)
    assert (row.smtp_auth, row.smtp_login) == (SmtpAuth.SEPARATE, SMTP_USER)
    assert row.smtp_password.reveal() == SMTP_PASSWORD
    assert SMTP_PASSWORD not in row.smtp_password_encrypted  # encrypted at rest
    # Only the SMTP side changed and it has its own login: the mailbox's password stays.
    assert row.password_encrypted == before_password and row.state == Mailbox.State.ACTIVE

    # Sending uses the separate login from now on.
    response = client.post(
        reverse("inbox:mailbox_smtp_test", args=[mailbox.pk]), follow=True
    ).content.decode()
    assert f"Signed in to {smtp_server.host}: sending works." in response
    assert smtp_server.logins == [SMTP_USER, SMTP_USER]


def test_a_no_login_relay_is_tested_and_saved_and_gets_no_password(
    client, owner, mailbox, smtp_server
):
    Mailbox.objects.filter(pk=mailbox.pk).update(smtp_auth="same")
    mailbox.refresh_from_db()
    client.force_login(owner)
    response = post(client, mailbox, smtp_auth="none")
    assert response.status_code == 302, _errors(response)
    row = Mailbox.objects.get(pk=mailbox.pk)
    assert row.smtp_auth == SmtpAuth.NONE and row.smtp_password_encrypted == ""
    assert smtp_server.logins == []  # nobody signed in: nothing was sent to it
    response = client.post(reverse("inbox:mailbox_smtp_test", args=[mailbox.pk]), follow=True)
    assert "sending works" in response.content.decode() and smtp_server.logins == []


def test_a_refused_smtp_login_saves_nothing_and_says_which_server(
    client, owner, mailbox, smtp_server
):
    client.force_login(owner)
    before = saved(mailbox)
    response = post(
        client, mailbox, smtp_auth="separate", smtp_login=SMTP_USER, smtp_password="wrong"
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        escape(
            f"The outgoing server (SMTP) {smtp_server.host}:{smtp_server.port} did not work with "
            "these settings: The server refused the login."
        )
        in html
    )
    assert "Nothing was saved." in html
    assert saved(mailbox) == before
    assert "wrong" not in html  # a password is never sent back


def test_changing_the_imap_server_asks_for_the_password_then_tests_it(
    client, owner, mailbox, imap_user
):
    """docs/reliability.md C-21: the stored password only goes where it was entered for."""
    dovecot = imap_user.server
    client.force_login(owner)
    before = saved(mailbox)
    move = dict(imap_port=str(dovecot.tls_port), imap_security="ssl", allow_insecure_cert="on")

    response = post(client, mailbox, **move)
    assert response.status_code == 400
    assert "Enter the mailbox&#x27;s password again" in response.content.decode()
    assert saved(mailbox) == before

    response = post(client, mailbox, password="not-the-password", **move)
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        escape(
            f"The incoming server (IMAP) {dovecot.host}:{dovecot.tls_port} did not work with these "
            "settings: The server refused the login."
        )
        in html
    )
    assert saved(mailbox) == before

    response = post(client, mailbox, password=imap_user.password, **move)
    assert response.status_code == 302, _errors(response)
    row = Mailbox.objects.get(pk=mailbox.pk)
    assert (row.imap_port, row.imap_security, row.allow_insecure_cert) == (
        dovecot.tls_port,
        "ssl",
        True,
    )
    assert row.password.reveal() == imap_user.password and row.state == Mailbox.State.ACTIVE


def test_a_local_host_refused_by_the_guard_names_the_setting_that_allows_it(
    client, owner, mailbox, imap_user, settings
):
    settings.RELAY_ALLOWED_MAIL_HOSTS = []
    client.force_login(owner)
    before = saved(mailbox)
    response = post(
        client,
        mailbox,
        imap_host="127.0.0.1",
        imap_port=str(imap_user.server.tls_port),
        imap_security="ssl",
        password=imap_user.password,
    )
    assert response.status_code == 400
    assert "RELAY_ALLOWED_MAIL_HOSTS" in response.content.decode()
    assert saved(mailbox) == before


def test_a_mailbox_waiting_for_a_reconnect_syncs_again_after_a_working_change(
    client, owner, mailbox, imap_user
):
    Mailbox.objects.filter(pk=mailbox.pk).update(
        state=Mailbox.State.NEEDS_RECONNECT, reconnect_reason="Someone changed the port."
    )
    client.force_login(owner)
    response = post(
        client,
        mailbox,
        imap_port=str(imap_user.server.tls_port),
        imap_security="ssl",
        allow_insecure_cert="on",
        password=imap_user.password,
    )
    assert response.status_code == 302, _errors(response)
    row = Mailbox.objects.get(pk=mailbox.pk)
    assert row.state == Mailbox.State.ACTIVE and row.reconnect_reason == ""
    assert row.sync_requested_at is not None
    page = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()
    assert "needs to be reconnected" not in page


def test_nothing_changed_saves_nothing_and_tests_nothing(client, owner, mailbox, smtp_server):
    client.force_login(owner)
    before = saved(mailbox)
    response = post(client, mailbox)
    assert response.status_code == 302
    assert "Nothing changed" in client.get(response["Location"]).content.decode()
    assert saved(mailbox) == before and smtp_server.logins == []


def test_bad_input_is_refused_with_the_field_named(client, owner, mailbox):
    client.force_login(owner)
    before = saved(mailbox)
    for changes, error in (
        ({"imap_host": "https://imap.example.com"}, "is not a host name"),
        ({"imap_port": "70000"}, "less than or equal to 65535"),
        ({"smtp_auth": "separate", "smtp_login": ""}, "Enter the SMTP server&#x27;s login name."),
        ({"smtp_security": "rot13"}, "Select a valid choice"),
    ):
        response = post(client, mailbox, **changes)
        assert response.status_code == 400, changes
        assert error in response.content.decode(), changes
    assert saved(mailbox) == before


def test_an_oauth_mailbox_has_no_server_form(client, owner):
    from tests import factories as f

    google = f.MailboxFactory(owner=owner, connection_type="google")
    client.force_login(owner)
    html = client.get(reverse("inbox:mailbox_settings", args=[google.pk])).content.decode()
    assert 'id="servers"' not in html
    response = client.post(reverse("inbox:mailbox_servers", args=[google.pk]), {})
    assert response.status_code == 404


def test_the_servers_action_costs_the_same_queries_whatever_the_data(client, owner, mailbox):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests import factories as f

    client.force_login(owner)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert post(client, mailbox).status_code == 302
        return len(queries)

    few = count()
    for i in range(20):
        f.FolderFactory(mailbox=mailbox, name=f"Folder {i}")
        f.MailboxFactory(owner=owner)
    assert count() == few
