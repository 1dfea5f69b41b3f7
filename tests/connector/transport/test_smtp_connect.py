"""connector/transport/smtp.py: connecting and logging in to the aiosmtpd of the test suite."""

from __future__ import annotations

import pytest

from connector.transport.errors import (
    USER_MESSAGES,
    AuthenticationFailed,
    HostNotAllowed,
    PermanentFailure,
    TemporaryFailure,
)
from connector.transport.probe import test_connection
from connector.transport.smtp import SmtpSettings, open_smtp, test_smtp_connection
from inbox.models import Mailbox
from tests.servers.certs import refused_port

MESSAGE = b"From: a@relay.test\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def smtp_settings(server, **kw) -> SmtpSettings:
    values = dict(
        host=server.host,
        port=server.port,
        security="none",
        login=server.user,
        password=server.password,
        timeout=5,
    )
    values.update(kw)
    return SmtpSettings(**values)


def test_plain_login_and_send(smtp_server):
    client = open_smtp(smtp_settings(smtp_server))
    client.sendmail("a@relay.test", ["b@example.org"], MESSAGE)
    client.quit()
    assert smtp_server.logins == [smtp_server.user]
    assert smtp_server.received[0].raw == MESSAGE


def test_wrong_password_is_authentication_failed(smtp_server):
    with pytest.raises(AuthenticationFailed) as excinfo:
        open_smtp(smtp_settings(smtp_server, password="wrong"))
    assert "wrong" not in str(excinfo.value)
    assert excinfo.value.user_message == USER_MESSAGES["auth"]


def test_closed_port_is_temporary():
    with pytest.raises(TemporaryFailure):
        open_smtp(SmtpSettings("127.0.0.1", refused_port(), "none", "u", "p", timeout=2))


def test_starttls_verified_by_default_accepted_when_allowed(smtp_server_starttls):
    with pytest.raises(PermanentFailure) as excinfo:
        open_smtp(smtp_settings(smtp_server_starttls, security="starttls"))
    assert excinfo.value.category == "tls"
    assert smtp_server_starttls.logins == []
    client = open_smtp(
        smtp_settings(smtp_server_starttls, security="starttls", allow_insecure_cert=True)
    )
    assert client.sock.version().startswith("TLS")
    client.quit()
    assert smtp_server_starttls.logins == [smtp_server_starttls.user]


def test_starttls_required_but_not_offered_fails_before_login(smtp_server):
    with pytest.raises(PermanentFailure) as excinfo:
        open_smtp(smtp_settings(smtp_server, security="starttls", allow_insecure_cert=True))
    assert excinfo.value.category == "tls"
    assert smtp_server.logins == []  # the password never went out in clear text


def test_implicit_tls(smtp_server_tls):
    with pytest.raises(PermanentFailure) as excinfo:
        open_smtp(smtp_settings(smtp_server_tls, security="ssl"))
    assert excinfo.value.category == "tls"
    client = open_smtp(smtp_settings(smtp_server_tls, security="ssl", allow_insecure_cert=True))
    client.sendmail("a@relay.test", ["b@example.org"], MESSAGE)
    client.quit()
    assert len(smtp_server_tls.received) == 1


def test_host_off_the_allow_list_is_refused(smtp_server_tls, settings):
    settings.RELAY_ALLOWED_MAIL_HOSTS = []
    with pytest.raises(HostNotAllowed):
        open_smtp(smtp_settings(smtp_server_tls, security="ssl", allow_insecure_cert=True))
    with pytest.raises(PermanentFailure) as excinfo:
        open_smtp(smtp_settings(smtp_server_tls, security="none"))
    assert excinfo.value.category == "plaintext"
    assert smtp_server_tls.logins == []


def test_xoauth2_login(smtp_server):
    client = open_smtp(
        smtp_settings(smtp_server, password="", access_token=smtp_server.oauth_token)
    )
    client.quit()
    assert smtp_server.logins == [smtp_server.user]
    with pytest.raises(AuthenticationFailed):
        open_smtp(smtp_settings(smtp_server, password="", access_token="revoked-token"))


def _mailbox(imap_user, smtp_server, **fields) -> Mailbox:
    values = dict(
        email_address=imap_user.email,
        login=imap_user.login,
        imap_host=imap_user.server.host,
        imap_port=imap_user.server.port,
        imap_security="none",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    values.update(fields)
    mailbox = Mailbox(**values)
    mailbox.set_password(imap_user.password)
    return mailbox


def test_test_connection_checks_smtp_too(imap_user, smtp_server):
    # The SMTP fixture has its own user: make the mailbox's credentials match it.
    smtp_server.user, smtp_server.password = imap_user.login, imap_user.password
    mailbox = _mailbox(imap_user, smtp_server)
    test_smtp_connection(mailbox)
    report = test_connection(mailbox)
    assert report.ok and report.smtp_ok is True and report.smtp_error == ""

    smtp_server.password = "something else"
    report = test_connection(mailbox)
    assert report.ok  # IMAP is fine ...
    assert (report.smtp_ok, report.smtp_error) == (False, USER_MESSAGES["auth"])  # ... SMTP not
