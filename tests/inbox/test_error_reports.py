"""Error pages of the views that take a password or a token never show it
(docs/reliability.md C-23).

The fault is a real one: PostgreSQL refuses the write that saves the mailbox (a trigger that
raises, as a full disk or a lost replica would), after the page has read the password, logged
in to the real Dovecot with it, or exchanged an OAuth code at the provider. With DEBUG on,
Django then shows its technical 500 page: the request's POST and GET data and every frame's
local variables. The canary must appear nowhere in it, as HTML or as text."""

# The fixtures of tests/servers/oauth.py are imported by name, as in
# tests/connector/transport/test_oauth.py.
# ruff: noqa: F811
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection
from django.urls import reverse

from inbox.models import Mailbox
from tests.connector.synckit import make_mailbox
from tests.inbox.test_admin import change_form
from tests.inbox.test_mailboxes import CANARY
from tests.servers.oauth import oauth_server, oauth_server_session  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_pages(client, settings):
    """DEBUG on (a developer's machine, or a staging server left so), and the client given
    the error page instead of the exception."""
    settings.DEBUG = True
    client.raise_request_exception = False
    return client


def refuse_mailbox_writes() -> None:
    """From now on until the test's transaction is rolled back, saving a mailbox fails."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION relay_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'could not extend file (test fault)'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER relay_test_refuse BEFORE INSERT OR UPDATE ON inbox_mailbox "
            "FOR EACH ROW EXECUTE FUNCTION relay_test_refuse()"
        )


def error_page(response) -> str:
    assert response.status_code == 500, response.content.decode()[:2000]
    page = response.content.decode()
    assert "test fault" in page  # Django's technical page, with the real exception
    return page


def test_connect_and_reconnect_error_pages_never_show_the_password(debug_pages, owner, imap_user):
    client = debug_pages
    imap_user.server.set_password(imap_user, CANARY)
    wizard = {
        "email_address": "olivia.second@relay.test",  # the reconnected one is imap_user.email
        "login": imap_user.login,
        "password": CANARY,
        "imap_host": imap_user.server.host,
        "imap_port": str(imap_user.server.port),
        "imap_security": "none",
        "smtp_host": "",
        "smtp_port": "465",
        "smtp_security": "ssl",
        "sync_from": "2026-01-01",
        "folders_shown": "1",
        "active_folders": ["INBOX"],
        "refresh_interval": "300",
        "signature": "",
        "privacy": "subject",
    }
    client.force_login(owner)
    mailbox = make_mailbox(imap_user, owner=owner, password="old-password")
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.NEEDS_RECONNECT)
    refuse_mailbox_writes()

    for accept in ("text/html", "text/plain"):
        page = error_page(client.post(reverse("inbox:mailbox_connect"), wizard, HTTP_ACCEPT=accept))
        assert CANARY not in page, accept
        page = error_page(
            client.post(
                reverse("inbox:mailbox_reconnect", args=[mailbox.pk]),
                {"password": CANARY, "folders_shown": "1", "active_folders": ["INBOX"]},
                HTTP_ACCEPT=accept,
            )
        )
        assert CANARY not in page, accept


def test_admin_mailbox_form_error_page_never_shows_the_password(
    debug_pages, admin_user, shared_mailbox
):
    client = debug_pages
    client.force_login(admin_user)
    refuse_mailbox_writes()
    page = error_page(
        client.post(
            reverse("admin:inbox_mailbox_change", args=[shared_mailbox.pk]),
            change_form(shared_mailbox, new_password=CANARY),
        )
    )
    assert CANARY not in page


def test_oauth_callback_error_page_never_shows_the_code_or_the_tokens(
    debug_pages, owner, oauth_server
):
    client = debug_pages
    client.force_login(owner)
    oauth_server.sign_in_as = "olivia@gmail.example"
    start = client.post(reverse("inbox:oauth_start", args=["google"]))
    consent = requests.get(start["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(consent.headers["Location"])
    code = parse_qs(back.query)["code"][0]
    refuse_mailbox_writes()

    page = error_page(client.get(f"{back.path}?{back.query}"))
    tokens = list(oauth_server.access_tokens) + list(oauth_server.grants)
    assert tokens, "the provider issued tokens before the database refused them"
    for secret in (code, *tokens):
        assert secret not in page, secret
