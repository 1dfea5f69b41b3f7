"""The SSRF guard (docs/reliability.md C-07, §8.5): a loopback canary listener must receive 0
connections while the blocked host encodings are tried, and exactly 1 when allow-listed."""

from __future__ import annotations

import ipaddress
import socket
import threading

import pytest

from connector.transport import net
from connector.transport.errors import HostNotAllowed, PermanentFailure
from connector.transport.imap import ImapSettings, open_session
from connector.transport.smtp import SmtpSettings, open_smtp

BLOCKED = [
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "::1",
    "0.0.0.0",
    "0",
    "::",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "2130706433",
    "0177.0.0.1",
    "0x7f000001",
    "0x7f.1",
    "127.1",
    "017700000001",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
]


class Canary:
    """Loopback listeners (IPv4 and, where available, IPv6) on one port, counting accepts."""

    def __init__(self):
        self.accepted = 0
        self._lock = threading.Lock()
        self.sockets = []
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self.sockets.append(v4)
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::1", self.port))
            self.sockets.append(v6)
        except OSError:
            pass  # no IPv6 loopback here: the IPv6 encodings are still refused before connect
        for sock in self.sockets:
            sock.listen(16)
            sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for sock in self.sockets:
                try:
                    conn, _ = sock.accept()
                except (TimeoutError, OSError):
                    continue
                with self._lock:
                    self.accepted += 1
                conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def canary():
    listener = Canary()
    yield listener
    listener.close()


@pytest.fixture
def no_allow_list(settings):
    settings.RELAY_ALLOWED_MAIL_HOSTS = []
    return settings


def test_blocked_encodings_never_reach_the_canary(canary, no_allow_list):
    assert len(BLOCKED) >= 20
    for host in BLOCKED:
        with pytest.raises(HostNotAllowed):
            net.resolve_allowed(host, canary.port)
        with pytest.raises(HostNotAllowed):
            open_session(ImapSettings(host, canary.port, "ssl", "u", "p", timeout=1))
        with pytest.raises(HostNotAllowed):
            open_smtp(SmtpSettings(host, canary.port, "ssl", "u", "p", timeout=1))
    assert canary.accepted == 0


def test_allow_listed_host_reaches_the_canary_exactly_once(canary, settings):
    settings.RELAY_ALLOWED_MAIL_HOSTS = ["127.0.0.1"]
    assert net.resolve_allowed("127.0.0.1", canary.port) == ["127.0.0.1"]
    # Allowed by address: other internal addresses stay out.
    for host in ("127.0.0.2", "10.0.0.1", "::1"):
        with pytest.raises(HostNotAllowed):
            net.resolve_allowed(host, canary.port)
    sock = net.connect(net.resolve_allowed("127.0.0.1", canary.port), canary.port, timeout=2)
    sock.close()
    canary._stop.wait(0.3)
    assert canary.accepted == 1


@pytest.mark.parametrize(
    ("allow", "host", "allowed"),
    [
        (["127.0.0.0/8"], "127.0.0.2", True),
        (["127.0.0.0/8"], "2130706433", True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", True),
        (["127.0.0.0/8"], "10.0.0.1", False),
        (["10.1.0.0/16"], "10.1.2.3", True),
        (["10.1.0.0/16"], "10.2.0.1", False),
        (["localhost"], "localhost", True),
        (["LocalHost."], "localhost", True),
        (["localhost"], "127.0.0.1", False),
        (["::1"], "::1", True),
        ([" ", ""], "127.0.0.1", False),
    ],
)
def test_allow_list_entries(settings, allow, host, allowed):
    settings.RELAY_ALLOWED_MAIL_HOSTS = allow
    if allowed:
        assert net.resolve_allowed(host, 993)
    else:
        with pytest.raises(HostNotAllowed):
            net.resolve_allowed(host, 993)


def test_public_addresses_pass(no_allow_list):
    assert net.resolve_allowed("93.184.215.14", 993) == ["93.184.215.14"]
    assert net.resolve_allowed("2606:2800:21f:cb07:6820:80da:af6b:8b2c", 993)
    assert not net.is_internal(ipaddress.ip_address("8.8.8.8"))
    assert net.is_internal(ipaddress.ip_address("::ffff:192.168.0.1"))


def test_every_address_of_a_name_is_checked(monkeypatch, no_allow_list, caplog):
    # DNS cannot be steered offline, so the resolver's answer is substituted here: a name
    # with one public and one private address is refused as a whole.
    def answers(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(net.socket, "getaddrinfo", answers)
    with caplog.at_level("INFO", logger="connector.transport.net"):
        with pytest.raises(HostNotAllowed) as refused:
            net.resolve_allowed("mail.example.com", 993)
    # The log names the address; the error people read does not (docs/reliability.md C-25).
    assert "10.0.0.5" in caplog.text and "10.0.0.5" not in str(refused.value)


def test_dns_rebinding_cannot_redirect_the_connection(monkeypatch, settings, imap_user):
    """The name is resolved once; the socket goes to that address even if a second lookup
    would now answer with a forbidden one (DNS rebinding)."""
    settings.RELAY_ALLOWED_MAIL_HOSTS = ["127.0.0.1"]
    server = imap_user.server
    calls = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        try:
            ipaddress.ip_address(host)
            # socket.create_connection "resolves" the numeric address it is given: no DNS.
            return real(host, port, *args, **kwargs)
        except ValueError:
            pass
        calls.append(host)
        if len(calls) == 1:
            return real("127.0.0.1", port, *args, **kwargs)
        return real("169.254.169.254", port, *args, **kwargs)

    monkeypatch.setattr(net.socket, "getaddrinfo", rebinding)
    with open_session(
        ImapSettings(
            "mail.rebind.test",
            server.port,
            "starttls",
            imap_user.login,
            imap_user.password,
            allow_insecure_cert=True,
            timeout=5,
        )
    ) as session:
        assert session.select("INBOX").messages == 0
    assert calls == ["mail.rebind.test"]


def test_certificate_is_verified_against_the_host_name_not_the_address(
    monkeypatch, settings, imap_user
):
    """Connecting by a vetted address must not weaken TLS: the certificate (issued to
    localhost and 127.0.0.1) is checked against the name the user typed."""
    settings.RELAY_ALLOWED_MAIL_HOSTS = ["127.0.0.1", "mail.other.test"]
    server = imap_user.server
    real = socket.getaddrinfo
    monkeypatch.setattr(
        net.socket, "getaddrinfo", lambda host, port, *a, **k: real("127.0.0.1", port, *a, **k)
    )
    trusting = server.trusting_context()
    monkeypatch.setattr("connector.transport.tls.ssl.create_default_context", lambda: trusting)
    settings_ok = ImapSettings(
        "localhost", server.tls_port, "ssl", imap_user.login, imap_user.password, timeout=5
    )
    settings.RELAY_ALLOWED_MAIL_HOSTS = ["127.0.0.1", "localhost", "mail.other.test"]
    with open_session(settings_ok) as session:
        assert session.select("INBOX").messages == 0
    wrong_name = ImapSettings(
        "mail.other.test", server.tls_port, "ssl", imap_user.login, imap_user.password, timeout=5
    )
    with pytest.raises(PermanentFailure) as excinfo:
        open_session(wrong_name)
    assert excinfo.value.category == "tls"
    assert "hostname" in str(excinfo.value).lower() or "match" in str(excinfo.value).lower()
