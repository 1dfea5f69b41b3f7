"""SMTP: opening an authenticated connection to a mailbox's outgoing server. Sending (the
outbox, Sent-folder append) builds on ``open_smtp``.

The same rules as IMAP (connector/transport/imap.py): the socket goes to the address
connector.transport.net vetted, TLS verifies the certificate against the host name unless the
mailbox allows an untrusted one, STARTTLS is required when chosen (never a fall-back to clear text),
plain text only to allow-listed hosts, and every error becomes one of connector.transport.errors.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings as django_settings

from connector.transport import net, oauth
from connector.transport.errors import (
    AuthenticationFailed,
    MailError,
    PermanentFailure,
    TemporaryFailure,
)
from connector.transport.tls import check_security, tls_context
from inbox.models import Mailbox

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "ssl" | "starttls" | "none"
    login: str = ""
    password: str = ""
    access_token: str = ""  # XOAUTH2 when set
    allow_insecure_cert: bool = False
    timeout: float = DEFAULT_TIMEOUT
    local_hostname: str = "localhost"

    def __repr__(self) -> str:  # never show the secrets
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"login={self.login!r})"
        )

    @classmethod
    def from_mailbox(cls, mailbox, *, timeout: float = DEFAULT_TIMEOUT) -> SmtpSettings:
        oauth = getattr(mailbox, "connection_type", "imap") in ("google", "microsoft")
        # docs/product.md §2.8: the mailbox's own login, a separate SMTP login, or none at all.
        auth = "same" if oauth else getattr(mailbox, "smtp_auth", "same") or "same"
        token = ""
        password = ""
        login = mailbox.login_name
        if oauth:
            from inbox.crypto import Secret

            token = Secret(mailbox.oauth_access_token_encrypted)
            token = token.reveal() if token else ""
        elif auth != "none":
            secret = mailbox.password if auth == "same" else mailbox.smtp_password
            if auth == "separate":
                login = mailbox.smtp_login
            if secret:  # an empty Secret has nothing to decrypt
                password = secret.reveal() if hasattr(secret, "reveal") else str(secret)
        if auth == "none":
            # A relay that takes this server's mail without a login: nothing is sent to it.
            login = ""
        elif not (token or password):
            # Forgotten when the server settings changed (docs/reliability.md C-21): no
            # connection at all, not even an unauthenticated one that would hand the new server
            # the mail; a person reconnects.
            raise AuthenticationFailed("no secret is stored for this mailbox", category="no_secret")
        domain = (mailbox.email_address or "").rpartition("@")[2]
        return cls(
            host=mailbox.smtp_host,
            port=int(mailbox.smtp_port),
            security=mailbox.smtp_security,
            login=login,
            password=password,
            access_token=token,
            allow_insecure_cert=bool(mailbox.allow_insecure_cert),
            timeout=timeout,
            # Our EHLO name. smtplib's default, socket.getfqdn(), is a DNS lookup that can hang.
            local_hostname=domain or "localhost",
        )


class _VettedSMTP(smtplib.SMTP):
    def __init__(self, addresses: Sequence[str], **kwargs):
        self._addresses = list(addresses)
        super().__init__(**kwargs)

    def _get_socket(self, host, port, timeout):
        return net.connect(self._addresses, port, timeout)


class _VettedSMTP_SSL(smtplib.SMTP_SSL):
    def __init__(self, addresses: Sequence[str], **kwargs):
        self._addresses = list(addresses)
        super().__init__(**kwargs)

    def _get_socket(self, host, port, timeout):
        sock = net.connect(self._addresses, port, timeout)
        try:
            # Verify against the name the user gave, not the vetted address.
            return self.context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise


@contextmanager
def mapped_errors(action: str = "SMTP") -> Iterator[None]:
    try:
        yield
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        # 454 is "temporary authentication failure" (RFC 4954 6): not the password's fault.
        if exc.smtp_code == 454:
            raise TemporaryFailure(f"{action}: {exc.smtp_code} {exc.smtp_error!r}") from exc
        raise AuthenticationFailed(f"{action}: login refused ({exc.smtp_code})") from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentFailure(f"{action}: {exc}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise TemporaryFailure(f"{action}: connection lost: {exc}") from exc
    except smtplib.SMTPResponseException as exc:
        # RFC 5321 4.2.1: 4yz transient, 5yz permanent.
        kind = TemporaryFailure if 400 <= exc.smtp_code < 500 else PermanentFailure
        raise kind(f"{action}: {exc.smtp_code} {exc.smtp_error!r}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise PermanentFailure(
            f"{action}: certificate not trusted: {exc.verify_message}", category="tls"
        ) from exc
    except ssl.SSLError as exc:
        raise PermanentFailure(f"{action}: TLS failed: {exc}", category="tls") from exc
    except TimeoutError as exc:
        raise TemporaryFailure(f"{action}: timed out") from exc
    except smtplib.SMTPException as exc:
        raise PermanentFailure(f"{action}: {exc}") from exc
    except OSError as exc:
        raise TemporaryFailure(f"{action}: {exc.strerror or exc}") from exc


def _xoauth2(login: str, token: str):
    initial = f"user={login}\x01auth=Bearer {token}\x01\x01"

    def authobject(challenge: bytes | None = None) -> str:
        # On failure the server sends a base64 JSON error as a 334 challenge and waits for an
        # empty line before its final 535 (Google's and Microsoft's XOAUTH2 documentation).
        return initial if challenge is None else ""

    return authobject


def open_smtp(settings: SmtpSettings) -> smtplib.SMTP:
    """A connected, secured and (when credentials are set) logged-in SMTP client."""
    check_security(settings.host, settings.security)
    addresses = net.resolve_allowed(settings.host, settings.port)
    client: smtplib.SMTP | None = None
    try:
        with mapped_errors("SMTP connect"):
            common = dict(
                host=settings.host,
                port=settings.port,
                local_hostname=settings.local_hostname,
                timeout=settings.timeout,
            )
            if settings.security == "ssl":
                client = _VettedSMTP_SSL(
                    addresses, context=tls_context(settings.allow_insecure_cert), **common
                )
            else:
                client = _VettedSMTP(addresses, **common)
            client.ehlo()
            if settings.security == "starttls":
                if not client.has_extn("starttls"):
                    # Never carry on in clear text (RFC 3207 4; docs/reliability.md C-05).
                    raise PermanentFailure(
                        "SMTP: the server does not offer STARTTLS", category="tls"
                    )
                # smtplib forgets everything learnt before TLS and the caller's EHLO below
                # asks again (RFC 3207 4.2).
                client.starttls(context=tls_context(settings.allow_insecure_cert))
                client.ehlo()
        with mapped_errors("SMTP login"):
            if settings.access_token:
                client.auth("XOAUTH2", _xoauth2(settings.login, settings.access_token))
            elif settings.password:
                client.login(settings.login, settings.password)
        return client
    except BaseException:
        if client is not None:
            client.close()
        raise


def test_smtp_connection(mailbox_or_settings, *, timeout: float = 20.0) -> None:
    """Log in to the outgoing server and log out; raise a connector error on any problem."""
    settings = (
        mailbox_or_settings
        if isinstance(mailbox_or_settings, SmtpSettings)
        else SmtpSettings.from_mailbox(mailbox_or_settings, timeout=timeout)
    )
    client = open_smtp(settings)
    try:
        with mapped_errors("SMTP QUIT"):
            client.quit()
    except TemporaryFailure:
        client.close()  # the login worked; a lost QUIT does not make the test fail


test_smtp_connection.__test__ = False  # a product function, not a pytest test


# --- the SMTP transaction ---------------------------------------------------------------


class OutcomeUnknown(Exception):
    """The connection died after the final "." of DATA: the server may have taken the mail."""


def open_mailbox_smtp(mailbox: Mailbox) -> smtplib.SMTP:
    """A logged-in SMTP client for the mailbox: password, or XOAUTH2 with a token refreshed
    before it expires (and once more if the server refuses one we believed valid)."""
    # Silent this long after the final ".": the outcome is unknown (docs/reliability.md M-05).
    timeout = django_settings.RELAY_SMTP_TIMEOUT
    if mailbox.connection_type not in oauth.OAUTH_TYPES:
        return open_smtp(SmtpSettings.from_mailbox(mailbox, timeout=timeout))
    token = oauth.ensure_access_token(mailbox.pk)
    try:
        fresh = Mailbox.objects.get(pk=mailbox.pk)
        return open_smtp(SmtpSettings.from_mailbox(fresh, timeout=timeout))
    except AuthenticationFailed:
        oauth.ensure_access_token(mailbox.pk, rejected=token)
        fresh = Mailbox.objects.get(pk=mailbox.pk)
        return open_smtp(SmtpSettings.from_mailbox(fresh, timeout=timeout))


def _dot_stuffed(raw: bytes) -> bytes:
    # RFC 5321 4.5.2: a line starting with "." gets another; the data ends with CRLF.CRLF.
    return re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n"


def send_transaction(client: smtplib.SMTP, sender: str, recipients: list[str], raw: bytes):
    """MAIL, RCPT per recipient, DATA; returns {recipient: (code, answer)} of the refused.
    smtplib.sendmail() is not used because it cannot tell a connection lost before the final
    "." (nothing delivered: retry) from one lost after it (outcome unknown: verify)."""
    options = []
    if client.has_extn("size"):
        options.append(f"SIZE={len(raw)}")
    with mapped_errors("SMTP MAIL FROM"):
        code, answer = client.mail(sender, options)
        if code != 250:
            client.rset()
            raise smtplib.SMTPSenderRefused(code, answer, sender)
    refused = {}
    with mapped_errors("SMTP RCPT TO"):
        for recipient in recipients:
            code, answer = client.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, answer.decode(errors="replace"))
    if len(refused) == len(recipients):
        with mapped_errors("SMTP RSET"):
            client.rset()
        codes = [code for code, _ in refused.values()]
        detail = "; ".join(f"{r}: {c} {a}" for r, (c, a) in refused.items())
        if any(400 <= c < 500 for c in codes):
            raise TemporaryFailure(f"every recipient was refused: {detail}")
        raise PermanentFailure(f"every recipient was refused: {detail}")
    with mapped_errors("SMTP DATA"):
        code, answer = client.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, answer)
        client.send(_dot_stuffed(raw))
    # From here on the server may have the whole message: losing the answer is not a failure
    # but an unknown outcome (RFC 1047).
    try:
        code, answer = client.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise OutcomeUnknown(f"the connection was lost after the message was sent: {exc}") from exc
    if code != 250:
        with mapped_errors("SMTP DATA"):
            raise smtplib.SMTPDataError(code, answer)
    return refused


def quit_quietly(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
