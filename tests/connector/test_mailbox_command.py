"""`manage.py mailbox ...`: the command line scripts rely on (docs/product.md §3.9)."""

from __future__ import annotations

import io
import json
import mailbox as mbox_lib

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inbox.models import Mailbox, Message
from tests import factories as f
from tests.connector.synckit import make_raw

pytestmark = pytest.mark.django_db


def mailbox_cmd(*args) -> str:
    out = io.StringIO()
    call_command("mailbox", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def add_args(user, owner, *extra):
    return [
        "add",
        "--kind",
        "personal",
        "--owner",
        owner.username,
        "--email",
        user.login,
        "--login",
        user.login,
        "--password-env",
        "TEST_MAIL_PW",
        "--imap-host",
        user.server.host,
        "--imap-port",
        str(user.server.port),
        "--imap-security",
        "none",
        *extra,
    ]


def test_add_checks_the_connection_and_prints_the_id_last(imap_user, owner, monkeypatch):
    monkeypatch.setenv("TEST_MAIL_PW", imap_user.password)
    out = mailbox_cmd(
        *add_args(imap_user, owner, "--folders", "INBOX", "--sync-from", "2026-01-01")
    )
    mailbox = Mailbox.objects.get()
    assert out.strip().splitlines()[-1] == str(mailbox.pk)
    assert mailbox.owner == owner and mailbox.active_folders == ["INBOX"]
    assert str(mailbox.sync_from) == "2026-01-01"
    assert imap_user.password not in mailbox.password_encrypted
    assert mailbox.password.reveal() == imap_user.password


def test_add_goes_through_the_wizards_service(imap_user, owner, monkeypatch, caplog):
    """The command creates mailboxes the way the connect wizard does: the untrusted-certificate
    opt-in is audit-logged, the owner's first mailbox becomes their primary one, the first sync
    is asked for at once, and an address connected already is refused."""
    from inbox.models import PrimaryMailbox

    monkeypatch.setenv("TEST_MAIL_PW", imap_user.password)
    with caplog.at_level("WARNING", logger="relay.audit"):
        mailbox_cmd(*add_args(imap_user, owner, "--allow-insecure-cert", "--skip-check"))
    mailbox = Mailbox.objects.get()
    assert any(
        "allows an untrusted certificate" in r.getMessage() and r.name == "relay.audit"
        for r in caplog.records
    )
    assert PrimaryMailbox.objects.get(user=owner).mailbox == mailbox
    assert mailbox.sync_requested_at is not None
    with pytest.raises(CommandError, match="connected already"):
        mailbox_cmd(*add_args(imap_user, owner, "--skip-check"))
    assert Mailbox.objects.count() == 1


def test_add_guesses_the_imap_server_from_the_address(owner, monkeypatch):
    monkeypatch.setenv("TEST_MAIL_PW", "secret")
    out = mailbox_cmd(
        "add",
        "--kind",
        "personal",
        "--owner",
        owner.username,
        "--email",
        "olivia@gmail.com",
        "--password-env",
        "TEST_MAIL_PW",
        "--skip-check",
    )
    mailbox = Mailbox.objects.get()
    assert "IMAP server guessed from the address: imap.gmail.com:993 (ssl)" in out
    assert (mailbox.imap_host, mailbox.imap_port, mailbox.imap_security) == (
        "imap.gmail.com",
        993,
        "ssl",
    )


def test_add_refuses_a_wrong_password_and_saves_nothing(imap_user, owner, monkeypatch):
    monkeypatch.setenv("TEST_MAIL_PW", "wrong")
    with pytest.raises(CommandError, match="Connection check failed"):
        mailbox_cmd(*add_args(imap_user, owner))
    assert not Mailbox.objects.exists()


def test_add_refuses_a_folder_the_server_lacks(imap_user, owner, monkeypatch):
    monkeypatch.setenv("TEST_MAIL_PW", imap_user.password)
    with pytest.raises(CommandError, match="No such folders on the server: Nope"):
        mailbox_cmd(*add_args(imap_user, owner, "--folders", "INBOX,Nope"))
    assert not Mailbox.objects.exists()


def test_add_refuses_bad_input_clearly(imap_user, owner, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_MAIL_PW", imap_user.password)
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        mailbox_cmd(*add_args(imap_user, owner, "--sync-from", "yesterday"))
    with pytest.raises(CommandError, match="Cannot read the password file"):
        mailbox_cmd(
            "add",
            "--kind",
            "shared",
            "--email",
            "s@relay.test",
            "--password-file",
            str(tmp_path / "missing"),
            "--imap-host",
            "h",
            "--imap-port",
            "993",
            "--imap-security",
            "ssl",
        )
    with pytest.raises(CommandError, match="needs --owner"):
        mailbox_cmd(
            "add",
            "--kind",
            "personal",
            "--email",
            "s@relay.test",
            "--password-env",
            "TEST_MAIL_PW",
            "--imap-host",
            "h",
            "--imap-port",
            "993",
            "--imap-security",
            "ssl",
        )
    assert not Mailbox.objects.exists()


def test_sync_status_and_list(imap_user, owner):
    from tests.connector.synckit import make_mailbox

    imap_user.server.deliver(imap_user, make_raw("one"))
    imap_user.server.deliver(imap_user, make_raw("two"))
    mailbox = make_mailbox(imap_user, owner=owner)
    out = mailbox_cmd("sync", str(mailbox.pk))
    assert "INBOX: 2 stored" in out and out.strip().splitlines()[-1].startswith("completed")

    status = json.loads(mailbox_cmd("status", str(mailbox.pk), "--json"))
    assert status["state"] == "active" and status["last_error"] == ""
    inbox = next(f for f in status["folders"] if f["name"] == "INBOX")
    assert inbox["messages"] == 2 and inbox["last_uid"] == 2 and inbox["uidvalidity"]
    assert status["ledger"] == {"stored": 2, "duplicate": 0, "skipped": 0, "failed": 0, "held": 0}
    assert mailbox.email_address in mailbox_cmd("list")
    test_out = mailbox_cmd("test", str(mailbox.pk))
    assert "IMAP login OK" in test_out and "INBOX (inbox): 2 messages" in test_out


def test_sync_of_an_unreachable_mailbox_exits_non_zero(imap_user):
    from tests.connector.synckit import make_mailbox

    mailbox = make_mailbox(imap_user, password="wrong")
    with pytest.raises(CommandError, match="needs_reconnect"):
        mailbox_cmd("sync", str(mailbox.pk))


def test_import_mbox_and_eml_twice_adds_nothing_the_second_time(tmp_path, owner):
    mailbox = f.MailboxFactory(owner=owner)
    box = mbox_lib.mbox(str(tmp_path / "old.mbox"))
    for i in range(3):
        box.add(make_raw(f"archived {i}"))
    box.flush()
    box.close()
    (tmp_path / "one.eml").write_bytes(make_raw("single"))

    out = mailbox_cmd(
        "import",
        str(mailbox.pk),
        str(tmp_path / "old.mbox"),
        str(tmp_path / "one.eml"),
        "--folder",
        "Archive 2019",
    )
    assert "old.mbox: 3 stored" in out and "one.eml: 1 stored" in out
    again = mailbox_cmd("import", str(mailbox.pk), str(tmp_path / "old.mbox"))
    assert "3 already imported" in again
    assert Message.objects.filter(mailbox=mailbox).count() == 4
    assert mailbox.folders.get(name="Archive 2019").is_local


def test_import_of_a_missing_file_is_a_clear_error(owner, tmp_path):
    mailbox = f.MailboxFactory(owner=owner)
    with pytest.raises(CommandError, match="no such file"):
        mailbox_cmd("import", str(mailbox.pk), str(tmp_path / "nope.mbox"))


def test_unknown_mailbox_id(db):
    with pytest.raises(CommandError, match="No mailbox with id 999"):
        mailbox_cmd("status", "999", "--json")


def test_every_subcommand_has_help(capsys):
    from django.core.management import ManagementUtility

    # `manage.py mailbox <sub> --help` as the command line runs it (argv through Django's
    # ManagementUtility), in this process: six Python and Django start-ups (~1.5 s of CPU each,
    # minutes on a loaded machine) were most of this test. tests/test_commands.py and
    # tests/test_packaging.py run manage.py and relay-manage as processes.
    for sub in ("add", "test", "list", "sync", "import", "status"):
        with pytest.raises(SystemExit) as done:
            ManagementUtility(["manage.py", "mailbox", sub, "--help"]).execute()
        assert done.value.code == 0
        assert f"usage: manage.py mailbox {sub}" in capsys.readouterr().out
