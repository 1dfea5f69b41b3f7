"""A folder with nothing new costs a constant number of IMAP commands, however large it is
(docs/reliability.md S-10). Counted at imaplib's command layer on real Dovecot connections."""

from __future__ import annotations

import imaplib

import pytest

from connector.sync import mailbox as sync
from inbox.models import Message
from tests.connector.synckit import make_mailbox, make_raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def commands(monkeypatch):
    sent: list[str] = []
    original = imaplib.IMAP4._command

    def counting(self, name, *args):
        sent.append(name)
        return original(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", counting)
    return sent


def commands_for_idle_sync(user, count: int, commands: list[str]) -> list[str]:
    for i in range(count):
        user.server.deliver(user, make_raw(f"n{i}"))
    mailbox = make_mailbox(user)
    assert sync.sync_mailbox(mailbox.pk).completed
    assert Message.objects.filter(mailbox=mailbox).count() == count
    commands.clear()
    report = sync.sync_mailbox(mailbox.pk)
    assert report.completed and report.total("stored") == 0
    return list(commands)


def test_nothing_new_costs_the_same_commands_for_3_or_60_messages(dovecot, commands):
    from tests.servers.fixtures import ImapUser

    small = commands_for_idle_sync(ImapUser(dovecot, dovecot.create_user()), 3, commands)
    large = commands_for_idle_sync(ImapUser(dovecot, dovecot.create_user()), 60, commands)
    assert small == large
    # With CONDSTORE an unchanged folder is one EXAMINE: no SEARCH, no FETCH at all.
    assert "FETCH" not in large and "SEARCH" not in large, large
    assert len(large) <= 10, large


def test_without_condstore_still_a_constant_number_of_commands(dovecot_no_condstore, commands):
    from tests.servers.fixtures import ImapUser

    server = dovecot_no_condstore
    small = commands_for_idle_sync(ImapUser(server, server.create_user()), 3, commands)
    large = commands_for_idle_sync(ImapUser(server, server.create_user()), 60, commands)
    assert small == large
    assert len(large) <= 12, large
