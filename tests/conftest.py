"""Fixtures shared by the whole suite: the personas every permission test uses.

owner     - a staff user with a personal mailbox of their own
teammate  - a staff user granted the shared mailbox
outsider  - a staff user with no grant to anything
admin     - a superuser (manages mailboxes, but reads no one's personal mail)
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.servers.fixtures"]

os.environ.setdefault("RELAY_ALLOWED_MAIL_HOSTS", "127.0.0.1,localhost")

from tests import factories as f  # noqa: E402


@pytest.fixture
def owner(db):
    return f.UserFactory(username="owner", first_name="Olivia", last_name="Owner")


@pytest.fixture
def teammate(db):
    return f.UserFactory(username="teammate", first_name="Tom", last_name="Teammate")


@pytest.fixture
def outsider(db):
    return f.UserFactory(username="outsider", first_name="Oscar", last_name="Outsider")


@pytest.fixture
def admin_user(db):
    return f.UserFactory(
        username="admin", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )


@pytest.fixture
def personal_mailbox(owner):
    return f.MailboxFactory(owner=owner, email_address="olivia@relay.test")


@pytest.fixture
def shared_mailbox(teammate):
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test")
    mailbox.granted_users.add(teammate)
    return mailbox


def login(client, user):
    client.force_login(user)
    return client
