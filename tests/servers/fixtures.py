"""pytest fixtures for the real servers (registered from tests/conftest.py via pytest_plugins).

Session scope: ``test_certificate``, ``dovecot``, ``dovecot_no_condstore``,
``dovecot_no_uidplus`` (each Dovecot starts in well under a second and is stopped by PID at the
end; every worker of pytest-xdist gets its own). Function scope: ``imap_user`` (a fresh user, so
tests never share mail; ``imap_user_no_condstore`` and ``imap_user_no_uidplus`` on the other
servers), ``asgi_server`` (Relay under uvicorn, for the live-update stream),
``smtp_server``, ``smtp_server_starttls``, ``smtp_server_tls``, ``fault_proxy`` (in
front of the plain Dovecot port), ``fault_proxy_factory`` (in front of any port) and
``internet`` (public names for loopback web servers, tests/servers/internet.py).
"""

from __future__ import annotations

import os
import shutil

import pytest

from .asgi import AsgiServer
from .certs import Certificate
from .dovecot import (
    NO_UIDPLUS_CAPABILITY,
    Dovecot,
    make_certificate,
    start_dovecot,
    stop_dovecot,
)
from .faultproxy import FaultProxy
from .internet import Internet
from .smtp import SmtpServer, start_smtp


class ImapUser(str):
    """A Dovecot login name (usable wherever a user name is), carrying its password and server."""

    password: str
    server: Dovecot

    def __new__(cls, server: Dovecot, login: str):
        obj = super().__new__(cls, login)
        obj.server = server
        obj.password = server.password(login)
        return obj

    @property
    def login(self) -> str:
        return str(self)

    @property
    def email(self) -> str:
        return self if "@" in self else f"{self}@relay.test"


@pytest.fixture(scope="session", autouse=True)
def _allow_the_test_servers():
    """The test servers live on loopback, which the SSRF guard refuses unless allow-listed.
    tests/conftest.py puts 127.0.0.1 in RELAY_ALLOWED_MAIL_HOSTS in the environment, but
    pytest-django may have loaded the settings before that line ran: apply it here. Tests of
    the guard override it with pytest-django's ``settings`` fixture."""
    from django.conf import settings

    value = os.environ.get("RELAY_ALLOWED_MAIL_HOSTS", "127.0.0.1,localhost")
    previous = getattr(settings, "RELAY_ALLOWED_MAIL_HOSTS", [])
    settings.RELAY_ALLOWED_MAIL_HOSTS = [h.strip() for h in value.split(",") if h.strip()]
    yield
    settings.RELAY_ALLOWED_MAIL_HOSTS = previous


@pytest.fixture(scope="session")
def test_certificate() -> Certificate:
    cert = make_certificate()
    yield cert
    shutil.rmtree(cert.cert_path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot(test_certificate) -> Dovecot:
    server = start_dovecot(test_certificate)
    yield server
    stop_dovecot(server)


@pytest.fixture(scope="session")
def dovecot_no_condstore(test_certificate) -> Dovecot:
    """The same server without CONDSTORE/QRESYNC in its capabilities (docs/reliability.md S-19)."""
    server = start_dovecot(test_certificate, condstore=False)
    yield server
    stop_dovecot(server)


@pytest.fixture(scope="session")
def dovecot_no_uidplus(test_certificate) -> Dovecot:
    """The same server announcing neither UIDPLUS nor MOVE (docs/reliability.md S-30)."""
    server = start_dovecot(test_certificate, capability=NO_UIDPLUS_CAPABILITY)
    yield server
    stop_dovecot(server)


@pytest.fixture
def imap_user(dovecot) -> ImapUser:
    return ImapUser(dovecot, dovecot.create_user())


@pytest.fixture
def imap_user_no_condstore(dovecot_no_condstore) -> ImapUser:
    return ImapUser(dovecot_no_condstore, dovecot_no_condstore.create_user())


@pytest.fixture
def imap_user_no_uidplus(dovecot_no_uidplus) -> ImapUser:
    return ImapUser(dovecot_no_uidplus, dovecot_no_uidplus.create_user())


@pytest.fixture
def smtp_server() -> SmtpServer:
    controller, server = start_smtp()
    yield server
    controller.stop()


@pytest.fixture
def smtp_server_starttls(test_certificate) -> SmtpServer:
    controller, server = start_smtp(test_certificate, starttls=True)
    yield server
    controller.stop()


@pytest.fixture
def smtp_server_tls(test_certificate) -> SmtpServer:
    controller, server = start_smtp(test_certificate, implicit_tls=True)
    yield server
    controller.stop()


@pytest.fixture
def asgi_server(transactional_db):
    """Relay under uvicorn in this process (tests/servers/asgi.py); needs a transactional
    database, as live_server does, since its threads use their own connections."""
    server = AsgiServer().start()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy_factory():
    proxies: list[FaultProxy] = []

    def make(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def fault_proxy(dovecot, fault_proxy_factory) -> FaultProxy:
    return fault_proxy_factory(dovecot.host, dovecot.port)


@pytest.fixture
def internet(monkeypatch) -> Internet:
    return Internet(monkeypatch)
