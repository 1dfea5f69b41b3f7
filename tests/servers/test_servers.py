"""The test servers themselves work: every later sync and send test trusts them.

These talk to the servers with imap-tools, imaplib and smtplib directly, never through the
connector, so a bug in the connector cannot hide a bug in the harness (or the reverse).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import smtplib
import socket
import ssl
import time

import pytest
from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@relay.test>\r\n"
    b"Subject: Harness check\r\n"
    b"Message-ID: <harness-1@example.org>\r\n"
    b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
    b"\r\n"
    b"Hello from the harness.\r\n"
)


def _message(n: int, size: int = 0) -> bytes:
    body = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(size // 20 + 1))
    return MESSAGE.replace(b"harness-1", b"harness-%d" % n) + body


def test_login_with_imap_tools_and_see_a_delivered_message(dovecot, imap_user):
    uid = dovecot.deliver(imap_user, MESSAGE)
    with MailBoxUnencrypted(dovecot.host, dovecot.port, timeout=10).login(
        imap_user, imap_user.password
    ) as mailbox:
        messages = list(mailbox.fetch(mark_seen=False))
    assert [m.uid for m in messages] == [str(uid)]
    assert messages[0].subject == "Harness check"
    assert messages[0].from_ == "alice@example.org"
    # Reading with mark_seen=False left the message unread on the server.
    assert "\\Seen" not in dovecot.flags(imap_user, "INBOX", uid)


def test_each_imap_user_is_fresh(dovecot, imap_user):
    other = dovecot.create_user()
    dovecot.deliver(imap_user, MESSAGE)
    assert dovecot.server_truth(other) == set()
    assert len(dovecot.server_truth(imap_user)) == 1


def test_wrong_password_is_refused(dovecot, imap_user):
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED|Authentication failed"):
        client.login(imap_user, "not-the-password")
    client.shutdown()


def test_set_password_changes_what_the_server_accepts(dovecot, imap_user):
    old = imap_user.password
    dovecot.set_password(imap_user, "a-new-password")
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.login(imap_user, old)
    client.shutdown()
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    assert client.login(imap_user, "a-new-password")[0] == "OK"
    client.logout()


def test_flags_set_by_doveadm_are_seen_over_imap(dovecot, imap_user):
    uid = dovecot.deliver(imap_user, MESSAGE, flags=["\\Flagged", "$Label1"])
    dovecot.add_flags(imap_user, "INBOX", uid, ["\\Seen"])
    dovecot.remove_flags(imap_user, "INBOX", uid, ["$Label1"])
    with MailBoxUnencrypted(dovecot.host, dovecot.port).login(
        imap_user, imap_user.password
    ) as mailbox:
        (message,) = mailbox.fetch(mark_seen=False, headers_only=True)
    assert set(message.flags) - {"\\Recent"} == {"\\Flagged", "\\Seen"}
    dovecot.set_flags(imap_user, "INBOX", uid, [])
    assert dovecot.flags(imap_user, "INBOX", uid) == frozenset()


def test_deliver_with_a_received_date_sets_internaldate(dovecot, imap_user):
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    uid = dovecot.deliver(imap_user, MESSAGE, folder="Sent", flags=["\\Seen"], received=when)
    client = dovecot.imap(imap_user)
    client.select("Sent", readonly=True)
    typ, data = client.uid("FETCH", str(uid), "(INTERNALDATE FLAGS)")
    client.logout()
    assert b'INTERNALDATE "06-May-2024 07:08:09 +0000"' in data[0]
    assert b"\\Seen" in data[0]


def test_deliver_many(dovecot, imap_user):
    raws = [_message(n) for n in range(20)]
    started = time.monotonic()
    uids = dovecot.deliver_many(imap_user, raws, folder="Archive", flags=["\\Seen"])
    assert time.monotonic() - started < 5  # one connection, not 20 doveadm runs
    assert uids == dovecot.uids(imap_user, "Archive") and len(uids) == 20
    truth = dovecot.server_truth(imap_user)
    assert {m.sha256 for m in truth} == {hashlib.sha256(r).hexdigest() for r in raws}
    assert all(m.flags == {"\\Seen"} for m in truth)


def test_uidvalidity_reset_is_visible_over_imap(dovecot, imap_user):
    dovecot.deliver(imap_user, MESSAGE)
    before = {m.uidvalidity for m in dovecot.server_truth(imap_user) if m.folder == "INBOX"}
    new = dovecot.reset_uidvalidity(imap_user, "INBOX")
    with MailBoxUnencrypted(dovecot.host, dovecot.port).login(
        imap_user, imap_user.password
    ) as mailbox:
        status = mailbox.folder.status("INBOX", ["UIDVALIDITY"])
    assert before != {new}
    assert status["UIDVALIDITY"] == new


def test_move_copy_expunge_and_folders(dovecot, imap_user):
    uid = dovecot.deliver(imap_user, MESSAGE)
    dovecot.create_folder(imap_user, "Projects/2026")
    dovecot.copy(imap_user, uid, "INBOX", "Projects/2026")
    dovecot.move(imap_user, uid, "INBOX", "Archive")
    truth = dovecot.server_truth(imap_user)
    assert {m.folder for m in truth} == {"Projects/2026", "Archive"}
    assert len({m.sha256 for m in truth}) == 1
    assert next(iter(truth)).sha256 == hashlib.sha256(MESSAGE).hexdigest()
    (archived,) = [m for m in truth if m.folder == "Archive"]
    dovecot.expunge(imap_user, "Archive", archived.uid)
    dovecot.rename_folder(imap_user, "Projects/2026", "Done")
    assert {m.folder for m in dovecot.server_truth(imap_user)} == {"Done"}
    dovecot.delete_folder(imap_user, "Done")
    assert dovecot.server_truth(imap_user) == set()


def test_capabilities_with_and_without_condstore(dovecot, dovecot_no_condstore):
    for server, expected in ((dovecot, True), (dovecot_no_condstore, False)):
        user = server.create_user()
        client = server.imap(user)
        # After login: Dovecot announces a shorter list before authentication.
        caps = client.capability()[1][0].decode().split()
        client.logout()
        assert ("CONDSTORE" in caps) is expected
        assert ("QRESYNC" in caps) is expected
        assert "UIDPLUS" in caps and "MOVE" in caps


def test_tls_listener_presents_the_self_signed_certificate(dovecot, imap_user):
    # Refused by default verification ...
    with pytest.raises(ssl.SSLCertVerificationError):
        MailBox(dovecot.host, dovecot.tls_port, ssl_context=ssl.create_default_context())
    # ... accepted when the test's CA is trusted, over implicit TLS and STARTTLS.
    with MailBox(dovecot.host, dovecot.tls_port, ssl_context=dovecot.trusting_context()).login(
        imap_user, imap_user.password
    ) as mailbox:
        assert mailbox.client.sock.version().startswith("TLS")
    with MailBoxStartTls(dovecot.host, dovecot.port, ssl_context=dovecot.trusting_context()).login(
        imap_user, imap_user.password
    ) as mailbox:
        assert mailbox.client.sock.version().startswith("TLS")


def test_smtp_server_records_what_it_receives(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.login(smtp_server.user, smtp_server.password)
        client.sendmail("bob@relay.test", ["alice@example.org", "carol@example.org"], MESSAGE)
    (mail,) = smtp_server.received
    assert mail.mail_from == "bob@relay.test"
    assert mail.rcpt_tos == ("alice@example.org", "carol@example.org")
    assert mail.raw == MESSAGE
    assert mail.auth_user == smtp_server.user


def test_smtp_server_refuses_a_wrong_password(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(smtp_server.user, "wrong")


@pytest.mark.parametrize(
    ("mode", "error", "code"),
    [
        ("tempfail", smtplib.SMTPDataError, 451),
        ("permfail", smtplib.SMTPDataError, 554),
        ("drop", smtplib.SMTPServerDisconnected, None),
    ],
)
def test_smtp_server_faults(smtp_server, mode, error, code):
    smtp_server.mode = mode
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10)
    with pytest.raises(error) as excinfo:
        client.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE)
    if code:
        assert excinfo.value.smtp_code == code
    assert smtp_server.received == []
    assert smtp_server.attempts == 1


def test_smtp_server_drop_at_data_and_accept_then_drop(smtp_server):
    smtp_server.mode = "drop_at_data"
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE)
    assert (smtp_server.received, smtp_server.attempts) == ([], 0)

    smtp_server.mode = "accept_then_drop"
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10)
    assert client.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE) == {}
    time.sleep(0.2)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.quit()
    assert [m.raw for m in smtp_server.received] == [MESSAGE]


def test_smtp_server_stopped_and_started_again_on_its_port_keeps_its_record():
    from tests.servers.smtp import start_smtp

    controller, server = start_smtp()
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE)
        controller.stop()
        with pytest.raises(ConnectionRefusedError):
            smtplib.SMTP(server.host, server.port, timeout=10)
        controller, again = start_smtp(server=server)
        assert again is server
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("bob@relay.test", ["carol@example.org"], MESSAGE)
        assert [m.rcpt_tos for m in server.received] == [
            ("alice@example.org",),
            ("carol@example.org",),
        ]
    finally:
        controller.stop()


def test_smtp_server_delay_holds_the_verdict_back(smtp_server):
    smtp_server.delay = 3.0
    client = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10)
    client.ehlo()
    client.sock.settimeout(0.5)  # gives up long before the verdict
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        client.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE)
    client.close()


def test_smtp_starttls_and_implicit_tls(smtp_server_starttls, smtp_server_tls):
    with smtplib.SMTP(smtp_server_starttls.host, smtp_server_starttls.port, timeout=10) as c:
        with pytest.raises(ssl.SSLCertVerificationError):
            c.starttls(context=ssl.create_default_context())
    with smtplib.SMTP(smtp_server_starttls.host, smtp_server_starttls.port, timeout=10) as c:
        c.starttls(context=smtp_server_starttls.trusting_context())
        c.login(smtp_server_starttls.user, smtp_server_starttls.password)
        c.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE)
    with smtplib.SMTP_SSL(
        smtp_server_tls.host,
        smtp_server_tls.port,
        context=smtp_server_tls.trusting_context(),
        timeout=10,
    ) as c:
        c.login(smtp_server_tls.user, smtp_server_tls.password)
        c.sendmail("bob@relay.test", ["alice@example.org"], MESSAGE)
    assert len(smtp_server_starttls.received) == 1
    assert len(smtp_server_tls.received) == 1


# --- fault proxy --------------------------------------------------------------------------


def _fetch_all_through(proxy, user):
    client = imaplib.IMAP4(proxy.host, proxy.port, timeout=5)
    client.login(user, user.password)
    client.select("INBOX", readonly=True)
    typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    client.logout()
    return [item for item in data if isinstance(item, tuple)]


def test_proxy_passes_traffic_unchanged(dovecot, imap_user, fault_proxy):
    dovecot.deliver(imap_user, _message(1, 3000))
    fault_proxy.slice(chunk=7)
    (item,) = _fetch_all_through(fault_proxy, imap_user)
    assert item[1] == _message(1, 3000)
    assert fault_proxy.connections == 1


def test_proxy_cuts_the_connection_mid_fetch(dovecot, imap_user, fault_proxy):
    for n in range(3):
        dovecot.deliver(imap_user, _message(n, 20_000))
    # Enough for the greeting, login and select, not for 60 kB of bodies.
    fault_proxy.cut_after(30_000)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        _fetch_all_through(fault_proxy, imap_user)
    assert fault_proxy.cuts == 1
    fault_proxy.cut_after(30_000, reset=True)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        _fetch_all_through(fault_proxy, imap_user)
    fault_proxy.normal()
    assert len(_fetch_all_through(fault_proxy, imap_user)) == 3


def test_proxy_stalls(fault_proxy):
    fault_proxy.stall()
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout, imaplib.IMAP4.abort)):
        imaplib.IMAP4(fault_proxy.host, fault_proxy.port, timeout=0.5)
    assert time.monotonic() - started < 3
    assert fault_proxy.connections == 1


def test_proxy_drops_one_fetch_response(dovecot, imap_user, fault_proxy):
    uids = [dovecot.deliver(imap_user, _message(n, 500)) for n in range(3)]
    fault_proxy.drop_fetch(uid=uids[1])
    items = _fetch_all_through(fault_proxy, imap_user)
    assert [_uid(head) for head, _ in items] == [uids[0], uids[2]]
    assert fault_proxy.dropped_fetches == 1


def test_proxy_strips_starttls(dovecot, fault_proxy):
    fault_proxy.strip_starttls()
    client = imaplib.IMAP4(fault_proxy.host, fault_proxy.port, timeout=5)
    assert "STARTTLS" not in client.capabilities
    # imaplib refuses rather than carrying on in clear text: the behaviour we build on.
    with pytest.raises(imaplib.IMAP4.error, match="TLS not supported"):
        client.starttls(ssl.create_default_context())
    client.shutdown()
    direct = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5)
    assert "STARTTLS" in direct.capabilities
    direct.shutdown()


def _uid(head: bytes) -> int:
    return int(head.split(b"UID ")[1].split()[0].rstrip(b")"))
