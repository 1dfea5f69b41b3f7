"""A real SMTP server for the tests: aiosmtpd on a loopback port the kernel picks (bound to port
0 and read back, so parallel pytest-xdist workers never race for one), recording every message
it accepts. ``mode`` switches it to the faults the sending code must survive
(docs/reliability.md §5, S-24):

- "accept": record and answer 250 (the default);
- "tempfail" / "permfail": answer DATA with 451 / 554, record nothing;
- "drop_at_data": cut the connection when the client sends DATA: nothing was delivered;
- "drop": cut it after the client has sent the whole message, before the verdict: the client
  cannot know whether it was delivered (here it was not);
- "accept_then_drop": record and answer 250, then cut the connection: delivered, but the
  client's QUIT fails (a crash right after acceptance, S-24).

``refuse`` maps recipient addresses to the RCPT answer they get instead of 250, e.g.
``{"nobody@acme.example": "550 5.1.1 <nobody@acme.example>: Recipient address rejected:
User unknown"}``, as a receiving server does for an address it does not know.

``delay`` holds every verdict on DATA back that many seconds (a slow server, so a worker can
be stopped while it waits); ``start_smtp(server=...)`` starts a stopped server again on the
same port with the same record (bench/soakfaults.py restarts it that way)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .certs import Certificate

# aiosmtpd logs every session's steps at INFO from its own thread ("EOF received", "connection
# lost"), lines that tell a failing test nothing, and that can land just after a test's log
# capture has closed: pytest then prints "--- Logging error ---" with a traceback in the run's
# output. Its warnings and errors still show.
logging.getLogger("mail.log").setLevel(logging.WARNING)

SMTP_USER = "sender@relay.test"
SMTP_PASSWORD = "smtp-secret-pw"
SMTP_OAUTH_TOKEN = "ya29.test-access-token"


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    auth_user: str | None


@dataclass
class SmtpServer:
    """The fixture's handle. Set ``mode`` (see the module docstring); ``received`` lists what
    was accepted, ``attempts`` counts every message whose DATA was sent in full."""

    host: str
    port: int
    user: str = SMTP_USER
    password: str = SMTP_PASSWORD
    oauth_token: str = SMTP_OAUTH_TOKEN  # the access token XOAUTH2 accepts for ``user``
    starttls: bool = False
    implicit_tls: bool = False
    ca_path: Path | None = None
    mode: str = "accept"
    received: list[ReceivedMail] = field(default_factory=list)
    attempts: int = 0
    logins: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def trusting_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))


class _Handler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_RCPT(self, smtp, session, envelope, address: str, rcpt_options) -> str:
        with self.server._lock:
            answer = self.server.refuse.get(address.lower())
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        server = self.server
        if server.delay:
            await asyncio.sleep(server.delay)  # the whole message is in; the verdict comes late
        with server._lock:
            server.attempts += 1
            mode = server.mode
        if mode == "tempfail":
            return "451 4.3.0 Try again later (test fault)"
        if mode == "permfail":
            return "554 5.7.1 Message refused (test fault)"
        if mode == "drop":
            # The client has sent the final "." and waits for the verdict; it never comes.
            smtp.transport.abort()
            return "421 4.3.0 (never delivered: the connection is gone)"
        if mode == "accept_then_drop":
            # Let the 250 go out first, then vanish.
            asyncio.get_running_loop().call_later(0.05, smtp.transport.abort)
        login = session.authenticated and session.auth_data
        with server._lock:
            server.received.append(
                ReceivedMail(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=envelope.original_content or envelope.content,
                    auth_user=login.login.decode() if login else None,
                )
            )
        return "250 2.0.0 Accepted"

    async def auth_XOAUTH2(self, smtp: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2 as Google and Microsoft speak it: the initial response is
        base64("user=U^Aauth=Bearer T^A^A"); a refused token gets a base64 JSON challenge,
        the client answers with an empty line, then 535."""
        try:
            decoded = b64decode(args[1], validate=True).decode()
            fields = dict(p.split("=", 1) for p in decoded.split("\x01") if "=" in p)
        except (IndexError, ValueError):
            await smtp.push("501 5.5.2 Cannot decode the XOAUTH2 response")
            return AuthResult(success=False, handled=True)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        server = self.server
        if user == server.user and token == server.oauth_token:
            with server._lock:
                server.logins.append(user)
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        await smtp.challenge_auth('{"status":"401","schemes":"Bearer","scope":"mail"}')
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )


class _SMTP(SMTP):
    def __init__(self, handler: _Handler, **kwargs):
        super().__init__(handler, **kwargs)
        self.relay_server = handler.server

    async def smtp_DATA(self, arg: str) -> None:
        if self.relay_server.mode == "drop_at_data":
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    """Serves on a socket already bound (to port 0): no port is chosen, released and bound
    again, which another process could take in between."""

    def __init__(self, handler, *, listener: socket.socket, **kwargs):
        host, port = listener.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._listener = listener

    def _create_server(self):
        return self.loop.create_server(
            self._factory_invoker, sock=self._listener, ssl=self.ssl_context
        )

    def factory(self):
        return _SMTP(self.handler, **self.SMTP_kwargs)


class _Authenticator:
    def __init__(self, server: SmtpServer):
        self.server = server

    def __call__(self, smtp, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (
            auth_data.login.decode() == self.server.user
            and auth_data.password.decode() == self.server.password
        )
        if ok:
            with self.server._lock:
                self.server.logins.append(auth_data.login.decode())
        if not ok:
            # handled=False: aiosmtpd itself answers 535 (handled=True would send nothing).
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)


def _server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert_path, certificate.key_path)
    return context


def start_smtp(
    certificate: Certificate | None = None,
    *,
    starttls: bool = False,
    implicit_tls: bool = False,
    server: SmtpServer | None = None,
) -> tuple[Controller, SmtpServer]:
    """Start a server. ``starttls`` offers STARTTLS on the plain port; ``implicit_tls`` speaks
    TLS from the first byte (port 465 style). Both use the session's self-signed certificate.
    ``server``: the record of a stopped server, started again on its port (plain only)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Inherited by the accepted connections: one still open (or in TIME_WAIT) after a stop does
    # not keep a restart off the port.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if server is not None:
        listener.bind((server.host, server.port))
    else:
        listener.bind(("127.0.0.1", 0))
        server = SmtpServer(
            host="127.0.0.1",
            port=listener.getsockname()[1],
            starttls=starttls,
            implicit_tls=implicit_tls,
            ca_path=certificate.ca_path if certificate else None,
        )
    kwargs: dict = {
        "authenticator": _Authenticator(server),
        # Loopback tests log in over plain text on purpose (the client decides what is safe).
        "auth_require_tls": False,
        "server_hostname": "localhost",
    }
    if starttls:
        kwargs["tls_context"] = _server_context(certificate)
    if implicit_tls:
        kwargs["ssl_context"] = _server_context(certificate)
    controller = _Controller(_Handler(server), listener=listener, **kwargs)
    controller.start()
    return controller, server
