"""connector/transport/imap.py against the real Dovecot of the test suite.

The server side is always checked with doveadm or a separate connection, never through the
code under test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import pytest

from connector.transport.errors import (
    USER_MESSAGES,
    AuthenticationFailed,
    PermanentFailure,
    TemporaryFailure,
)
from connector.transport.imap import ImapSession, ImapSettings, open_session, special_use_for
from connector.transport.probe import test_connection
from inbox.models import Mailbox
from tests.servers.certs import refused_port


def raw_message(n: int, *, body: str = "", date: str = "Mon, 02 Mar 2026 10:00:00 +0000") -> bytes:
    return (
        f"From: Ana <ana@customer.example>\r\nTo: support@relay.test\r\n"
        f"Subject: Message {n}\r\nMessage-ID: <m{n}-{time.time_ns()}@customer.example>\r\n"
        f"Date: {date}\r\n\r\n{body or f'Body of message {n}.'}\r\n"
    ).encode()


def settings_for(user, *, port=None, security="none", **kw) -> ImapSettings:
    server = user.server
    return ImapSettings(
        host=server.host,
        port=port or server.port,
        security=security,
        login=user.login,
        password=kw.pop("password", user.password),
        timeout=kw.pop("timeout", 5),
        **kw,
    )


def mailbox_for(user, **fields) -> Mailbox:
    server = user.server
    password = fields.pop("password", None) or user.password
    values = dict(
        email_address=user.email,
        login=user.login,
        imap_host=server.host,
        imap_port=server.port,
        imap_security="none",
        smtp_host="",
    )
    values.update(fields)
    mailbox = Mailbox(**values)
    mailbox.set_password(password)
    return mailbox


# --- connecting -------------------------------------------------------------------------------


def test_login_and_capabilities(imap_user):
    with open_session(settings_for(imap_user)) as session:
        assert session.condstore
        assert {"UIDPLUS", "MOVE", "CONDSTORE"} <= session.capabilities
        status = session.select("INBOX")
        assert status.highestmodseq is not None


def test_wrong_password_is_authentication_failed(imap_user):
    with pytest.raises(AuthenticationFailed) as excinfo:
        open_session(settings_for(imap_user, password="not-it"))
    assert excinfo.value.user_message == USER_MESSAGES["auth"]
    assert "not-it" not in str(excinfo.value)


def test_password_changed_on_the_server_is_authentication_failed(imap_user):
    open_session(settings_for(imap_user)).close()
    imap_user.server.set_password(imap_user, "changed-elsewhere")
    with pytest.raises(AuthenticationFailed):
        open_session(settings_for(imap_user))


def test_xoauth2_login(imap_user):
    # The test Dovecot accepts the user's password as its bearer token (see dovecot.py).
    token = imap_user.password
    with open_session(settings_for(imap_user, password="", access_token=token)) as session:
        assert session.select("INBOX").messages == 0
    assert "method=XOAUTH2" in imap_user.server.log()
    with pytest.raises(AuthenticationFailed):
        open_session(settings_for(imap_user, password="", access_token="expired-token"))


def test_non_ascii_password_logs_in(dovecot):
    user = dovecot.create_user(password="pässwörd-ü")
    with ImapSession(
        ImapSettings(dovecot.host, dovecot.port, "none", user, "pässwörd-ü", timeout=5)
    ) as session:
        assert session.select("INBOX").messages == 0


def test_closed_port_is_a_temporary_failure(imap_user):
    with pytest.raises(TemporaryFailure) as excinfo:
        open_session(settings_for(imap_user, port=refused_port()))
    assert excinfo.value.user_message == USER_MESSAGES["unreachable"]


def test_self_signed_certificate_refused_by_default_accepted_when_allowed(imap_user):
    server = imap_user.server
    with pytest.raises(PermanentFailure) as excinfo:
        open_session(settings_for(imap_user, port=server.tls_port, security="ssl"))
    assert excinfo.value.category == "tls"
    assert "certificate" in str(excinfo.value)
    with open_session(
        settings_for(imap_user, port=server.tls_port, security="ssl", allow_insecure_cert=True)
    ) as session:
        assert session.client.sock.version().startswith("TLS")


def test_starttls_on_the_plain_port(imap_user):
    with pytest.raises(PermanentFailure) as excinfo:
        open_session(settings_for(imap_user, security="starttls"))
    assert excinfo.value.category == "tls"
    with open_session(
        settings_for(imap_user, security="starttls", allow_insecure_cert=True)
    ) as session:
        assert session.client.sock.version().startswith("TLS")
        assert session.select("INBOX").messages == 0


def test_starttls_stripped_by_a_middlebox_fails_and_sends_no_password(imap_user, fault_proxy):
    fault_proxy.strip_starttls()
    with pytest.raises(PermanentFailure) as excinfo:
        open_session(
            settings_for(
                imap_user, port=fault_proxy.port, security="starttls", allow_insecure_cert=True
            )
        )
    assert excinfo.value.category == "tls"
    assert f"user=<{imap_user.login}>" not in imap_user.server.log()


def test_responses_injected_before_the_tls_handshake_are_discarded(imap_user, fault_proxy):
    # A man in the middle appends a response to the server's "OK, begin TLS": it arrives in
    # clear text and must not be believed once TLS is up (docs/reliability.md C-05).
    fault_proxy.inject_after(b"Begin TLS negotiation now.\r\n", b"* CAPABILITY INJECTED\r\n")
    with open_session(
        settings_for(
            imap_user, port=fault_proxy.port, security="starttls", allow_insecure_cert=True
        )
    ) as session:
        assert "INJECTED" not in session.capabilities
        assert "INJECTED" not in session.client.capabilities
        assert session.select("INBOX").messages == 0
    assert fault_proxy.injections == 1


def test_ssl_to_a_plain_port_is_a_tls_failure(imap_user):
    with pytest.raises(PermanentFailure) as excinfo:
        open_session(settings_for(imap_user, security="ssl", allow_insecure_cert=True))
    assert excinfo.value.category == "tls"


def test_plain_text_refused_to_hosts_off_the_allow_list(imap_user, settings):
    settings.RELAY_ALLOWED_MAIL_HOSTS = []
    with pytest.raises(PermanentFailure) as excinfo:
        open_session(settings_for(imap_user))
    assert excinfo.value.category == "plaintext"


def test_stalled_server_times_out(imap_user, fault_proxy):
    fault_proxy.stall()
    started = time.monotonic()
    with pytest.raises(TemporaryFailure):
        open_session(settings_for(imap_user, port=fault_proxy.port, timeout=0.5))
    assert time.monotonic() - started < 3


def test_connection_cut_mid_fetch_is_temporary(imap_user, fault_proxy):
    server = imap_user.server
    uids = [server.deliver(imap_user, raw_message(n, body="x" * 30_000)) for n in range(3)]
    with open_session(settings_for(imap_user, port=fault_proxy.port)) as session:
        session.select("INBOX")
        fault_proxy.cut_all()
        with pytest.raises(TemporaryFailure):
            session.fetch(uids)


def test_bye_from_the_server_is_temporary(imap_user):
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        imap_user.server.kick(imap_user)
        # The kick reaches the IMAP process asynchronously: commands may still be answered
        # for a moment, then the BYE must surface as a TemporaryFailure, nothing else.
        with pytest.raises(TemporaryFailure):
            for _ in range(100):
                session.search_uids("ALL")
                time.sleep(0.05)


# --- folders ----------------------------------------------------------------------------------

AWKWARD = [
    "Entwürfe",
    'Say "hello"',
    "Projects/2026/Q1/Clients/Acme/Invoices",
    "Gesendet",
    "Sent Items",
    "Envoyés",
    "Papierkorb",
    "Corbeille",
    "Deleted Items",
    "Junk E-mail",
    "Spam",
    "Brouillons",
    "日本語",
    "with.dot",
]


def test_folders_with_special_use_and_awkward_names(imap_user):
    server = imap_user.server
    for name in AWKWARD:
        server.create_folder(imap_user, name)
    server.deliver(imap_user, raw_message(1), folder="Entwürfe")
    with open_session(settings_for(imap_user)) as session:
        folders = {f.name: f for f in session.list_folders()}
        # Every folder can be opened by the name we decoded (round trip through UTF-7 and
        # quoting), and the \Noselect parents are listed as such, not as errors.
        for name, info in folders.items():
            if info.selectable:
                session.select(name)
        assert session.select("Entwürfe").messages == 1
    assert set(AWKWARD) <= set(folders)
    assert {n for n, f in folders.items() if not f.selectable} == {
        "Projects",
        "Projects/2026",
        "Projects/2026/Q1",
        "Projects/2026/Q1/Clients",
        "Projects/2026/Q1/Clients/Acme",
    }
    assert folders["INBOX"].delimiter == "/"
    uses = {name: f.special_use for name, f in folders.items()}
    assert uses["INBOX"] == "inbox"
    # RFC 6154 attributes from the server ...
    assert (uses["Sent"], uses["Drafts"], uses["Trash"], uses["Junk"], uses["Archive"]) == (
        "sent",
        "drafts",
        "trash",
        "junk",
        "archive",
    )
    assert "\\Sent" in folders["Sent"].flags
    # ... and localised names where the server gives none.
    assert uses["Gesendet"] == uses["Sent Items"] == uses["Envoyés"] == "sent"
    assert uses["Papierkorb"] == uses["Corbeille"] == uses["Deleted Items"] == "trash"
    assert uses["Junk E-mail"] == uses["Spam"] == "junk"
    assert uses["Entwürfe"] == uses["Brouillons"] == "drafts"
    assert uses['Say "hello"'] == uses["日本語"] == uses["with.dot"] == ""


def test_special_use_from_names_on_servers_with_other_delimiters():
    assert special_use_for("INBOX.Sent", (), ".") == "sent"
    assert special_use_for("INBOX.Gelöschte Elemente", (), ".") == "trash"
    assert special_use_for("inbox", (), "/") == "inbox"
    assert special_use_for("[Gmail]/All Mail", ("\\All", "\\HasNoChildren"), "/") == "all"
    assert special_use_for("Private Sent Things", (), "/") == ""


def test_status_and_select(imap_user, imap_user_no_condstore):
    server = imap_user.server
    for n in range(3):
        server.deliver(imap_user, raw_message(n))
    truth = server.status(imap_user, "INBOX")
    with open_session(settings_for(imap_user)) as session:
        status = session.status("INBOX")
        selected = session.select("INBOX")
    assert status == selected
    assert (status.messages, status.uidnext, status.uidvalidity) == (
        3,
        truth["uidnext"],
        truth["uidvalidity"],
    )
    assert status.highestmodseq == truth["highestmodseq"]

    other = imap_user_no_condstore
    other.server.deliver(other, raw_message(9))
    with open_session(settings_for(other)) as session:
        assert not session.condstore
        assert session.select("INBOX").highestmodseq is None
        assert session.status("INBOX").highestmodseq is None
        (message,) = session.fetch(session.search_uids("ALL"))
        assert message.modseq is None


def test_uidvalidity_change_is_visible(imap_user):
    server = imap_user.server
    with open_session(settings_for(imap_user)) as session:
        before = session.select("INBOX").uidvalidity
    new = server.reset_uidvalidity(imap_user, "INBOX")
    with open_session(settings_for(imap_user)) as session:
        assert session.select("INBOX").uidvalidity == new != before


# --- reading never changes anything -----------------------------------------------------------


def test_fetch_returns_exact_bytes_and_never_sets_seen(imap_user):
    server = imap_user.server
    received = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
    uids = [server.deliver(imap_user, raw_message(n)) for n in range(3)]
    flagged = server.deliver(imap_user, raw_message(3), flags=["\\Flagged", "$Important"])
    dated = server.deliver(imap_user, raw_message(4), received=received)
    all_uids = [*uids, flagged, dated]
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        fetched = session.fetch(all_uids)
        # And once more with SELECT (read-write) as the write-back path does.
        session.select("INBOX", readonly=False)
        again = session.fetch(all_uids)
    assert [m.uid for m in fetched] == all_uids == [m.uid for m in again]
    truth = {m.uid: m for m in server.server_truth(imap_user) if m.folder == "INBOX"}
    for message in fetched:
        assert hashlib.sha256(message.raw).hexdigest() == truth[message.uid].sha256
        assert message.size == len(message.raw) and not message.truncated
        assert message.modseq is not None
        assert message.error == ""
    by_uid = {m.uid: m for m in fetched}
    assert set(by_uid[flagged].flags) == {"\\Flagged", "$Important"}
    assert by_uid[dated].internal_date == received
    for uid in all_uids:
        assert "\\Seen" not in server.flags(imap_user, "INBOX", uid)


def test_uid_fetch_past_the_end_returns_nothing(imap_user):
    server = imap_user.server
    last = max(server.deliver(imap_user, raw_message(n)) for n in range(2))
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        # The trap itself: the server answers `UID n:*` with the last message (RFC 3501 6.4.8).
        assert session.search_uids(f"UID {last + 1}:*") == [last]
        assert session.fetch([last + 1, last + 2]) == []
        assert session.fetch_flags(f"{last + 1}:*") == {}
        assert set(session.fetch_flags(f"{last}:*")) == {last}


def test_fetch_flags_changed_since(imap_user):
    server = imap_user.server
    uids = [server.deliver(imap_user, raw_message(n)) for n in range(3)]
    with open_session(settings_for(imap_user)) as session:
        modseq = session.select("INBOX").highestmodseq
        everything = session.fetch_flags(f"1:{uids[-1]}")
    assert set(everything) == set(uids)
    server.add_flags(imap_user, "INBOX", uids[1], ["\\Seen", "$Label1"])
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        changed = session.fetch_flags(f"1:{uids[-1]}", changed_since=modseq)
    assert list(changed) == [uids[1]]
    flags, new_modseq = changed[uids[1]]
    assert flags == ["$Label1", "\\Seen"]
    assert new_modseq > modseq


def test_search_since(imap_user):
    server = imap_user.server
    old = server.deliver(imap_user, raw_message(1), received=dt.datetime(2025, 1, 5, tzinfo=dt.UTC))
    new = server.deliver(imap_user, raw_message(2))
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        assert session.search_uids("SINCE 01-Jan-2026") == [new]
        assert session.search_uids("ALL") == [old, new]


def test_a_dropped_fetch_line_leaves_that_uid_out(imap_user, fault_proxy):
    server = imap_user.server
    uids = [server.deliver(imap_user, raw_message(n)) for n in range(3)]
    fault_proxy.drop_fetch(uid=uids[1])
    with open_session(settings_for(imap_user, port=fault_proxy.port)) as session:
        session.select("INBOX")
        assert [m.uid for m in session.fetch(uids)] == [uids[0], uids[2]]


def test_sliced_stream_still_parses(imap_user, fault_proxy):
    server = imap_user.server
    uids = [server.deliver(imap_user, raw_message(n, body="y" * 2000)) for n in range(2)]
    fault_proxy.slice(chunk=3)
    with open_session(settings_for(imap_user, port=fault_proxy.port)) as session:
        session.select("INBOX")
        fetched = session.fetch(uids)
    assert [len(m.raw) for m in fetched] == [m.size for m in fetched]
    assert len(fetched) == 2


# --- writing ----------------------------------------------------------------------------------


def test_store_flags_are_deltas(imap_user):
    server = imap_user.server
    uid = server.deliver(imap_user, raw_message(1), flags=["$Label1"])
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        session.store_flags([uid], "+", ["\\Seen", "\\Flagged"])
        assert server.flags(imap_user, "INBOX", uid) == {"\\Seen", "\\Flagged", "$Label1"}
        session.store_flags([uid], "-", ["\\Seen"])
    assert server.flags(imap_user, "INBOX", uid) == {"\\Flagged", "$Label1"}


@pytest.mark.parametrize("with_move", [True, False])
def test_move(imap_user, with_move):
    server = imap_user.server
    keep = server.deliver(imap_user, raw_message(1))
    uid = server.deliver(imap_user, raw_message(2))
    # Another client marked `keep` \Deleted without expunging: our move must not expunge it.
    server.add_flags(imap_user, "INBOX", keep, ["\\Deleted"])
    with open_session(settings_for(imap_user)) as session:
        if not with_move:
            session.capabilities = session.capabilities - {"MOVE"}
        session.select("INBOX")
        mapping = session.move([uid], "Archive")
    assert server.uids(imap_user, "INBOX") == [keep]
    assert server.uids(imap_user, "Archive") == [mapping[uid]]


def test_expunge_only_the_uids_asked(imap_user):
    server = imap_user.server
    keep = server.deliver(imap_user, raw_message(1), flags=["\\Deleted"])
    gone = server.deliver(imap_user, raw_message(2))
    with open_session(settings_for(imap_user)) as session:
        session.select("INBOX")
        session.store_flags([gone], "+", ["\\Deleted"])
        session.expunge_uids([gone])
    assert server.uids(imap_user, "INBOX") == [keep]


def test_append_returns_the_new_uid(imap_user):
    server = imap_user.server
    raw = raw_message(7)
    when = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    with open_session(settings_for(imap_user)) as session:
        uid = session.append("Sent", raw, flags=["\\Seen"], date=when)
        session.select("Sent")
        (message,) = session.fetch([uid])
    assert message.raw == raw
    assert message.internal_date == when
    assert server.flags(imap_user, "Sent", uid) == {"\\Seen"}


# --- test connection --------------------------------------------------------------------------


def test_test_connection_previews_folders(imap_user):
    server = imap_user.server
    server.create_folder(imap_user, "Gesendet")
    server.create_folder(imap_user, "Projects/Acme")
    server.deliver(imap_user, raw_message(1), received=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    server.deliver(imap_user, raw_message(2))
    server.deliver(imap_user, raw_message(3), folder="Gesendet")
    report = test_connection(mailbox_for(imap_user), sync_from=dt.date(2026, 1, 1))
    assert report.ok and report.error == ""
    folders = {f.name: f for f in report.folders}
    assert (folders["INBOX"].messages, folders["INBOX"].since_count) == (2, 1)
    assert folders["INBOX"].special_use == "inbox"
    assert (folders["Gesendet"].special_use, folders["Gesendet"].messages) == ("sent", 1)
    assert folders["Trash"].special_use == "trash" and folders["Trash"].since_count == 0
    assert not folders["Projects"].selectable and folders["Projects"].messages is None
    assert report.smtp_ok is None
    # The preview read nothing as seen.
    assert not any("\\Seen" in m.flags for m in server.server_truth(imap_user))


def test_test_connection_errors_have_one_wording_per_category(imap_user, fault_proxy):
    wrong = test_connection(mailbox_for(imap_user, password="nope"))
    assert (wrong.ok, wrong.error) == (False, USER_MESSAGES["auth"])

    refused = test_connection(mailbox_for(imap_user, imap_port=refused_port()))
    fault_proxy.stall()
    stalled = test_connection(mailbox_for(imap_user, imap_port=fault_proxy.port), timeout=0.5)
    # docs/reliability.md C-08: refused and timed out read the same, so the form is no port scanner.
    assert refused.error == stalled.error == USER_MESSAGES["unreachable"]

    tls = test_connection(
        mailbox_for(imap_user, imap_port=imap_user.server.tls_port, imap_security="ssl")
    )
    assert (tls.ok, tls.error_category, tls.error) == (False, "tls", USER_MESSAGES["tls"])
