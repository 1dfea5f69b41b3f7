"""Opening sockets to mail servers, safely (docs/reliability.md C-07).

A mailbox's host is typed by a user, so it could point the worker at anything it can reach:
the cloud metadata service, the database, an admin port on the LAN. Every connection
therefore goes through ``resolve_allowed``:

- the name is resolved once (``socket.getaddrinfo``), and EVERY address it resolves to is
  checked: one internal address among public ones refuses the host;
- loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT) addresses
  are refused, including IPv4-mapped IPv6 (``::ffff:127.0.0.1``) and NAT64 forms, and the odd
  IPv4 spellings that getaddrinfo accepts (``2130706433``, ``0177.0.0.1``, ``0x7f000001``)
  because the check is made on what they resolve to, not on the text;
- unless the host name, the address or a range holding it is listed in
  ``settings.RELAY_ALLOWED_MAIL_HOSTS`` (an admin setting for a LAN or loopback server);
- the connection then goes to the vetted address, never to the name again: a second lookup
  could answer differently (DNS rebinding). TLS still verifies the certificate against the
  host name the user gave (``server_hostname=host``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence

from django.conf import settings

from connector.transport.errors import HostNotAllowed, TemporaryFailure

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 well-known NAT64 prefix: 64:ff9b::7f00:1 reaches 127.0.0.1 through a NAT64 gateway.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

log = logging.getLogger(__name__)


def _no_connection(host: str) -> str:
    """The one detail for a name that does not resolve and a name that resolves to an internal
    address: it ends up where people read it (a mailbox's last error), and two wordings would
    tell which internal names exist (docs/reliability.md C-25). The log keeps the reason."""
    return f"cannot connect to {host!r}: unknown host, or not allowed"


def _allow_list() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for entry in settings.RELAY_ALLOWED_MAIL_HOSTS:
        entry = str(entry).strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(_normalise_name(entry))
    return names, networks


def _normalise_name(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return None


def is_internal(ip: IPAddress) -> bool:
    """True for any address a mail server on the internet cannot have."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None and is_internal(embedded):
        return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        log.info("cannot resolve %r: %s", host, exc)
        raise TemporaryFailure(_no_connection(host)) from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"): the address itself is what gets checked.
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        log.info("%r resolves to no address", host)
        raise TemporaryFailure(_no_connection(host))
    return addresses


def resolve_allowed(host: str, port: int, *, mail_allow_list: bool = True) -> list[str]:
    """Resolve ``host`` once and return its addresses, all vetted; raise ``HostNotAllowed``
    if any of them is internal and not allowed, ``TemporaryFailure`` if it does not resolve.
    ``mail_allow_list=False`` (the image proxy, docs/reliability.md C-27) ignores
    RELAY_ALLOWED_MAIL_HOSTS: every internal address is refused.
    """
    if not host or not host.strip():
        raise HostNotAllowed("no host given")
    if not 0 < int(port) < 65536:
        raise HostNotAllowed(f"port {port} is out of range")
    names, networks = _allow_list() if mail_allow_list else (set(), [])
    name_allowed = _normalise_name(host) in names
    addresses = _resolve(host.strip(), port)
    for ip in addresses:
        if not is_internal(ip) or name_allowed:
            continue
        candidates = [ip]
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            candidates.append(embedded)
        if any(c.version == n.version and c in n for c in candidates for n in networks):
            continue
        log.info("%r resolves to %s, an internal address not allowed", host, ip)
        raise HostNotAllowed(_no_connection(host))
    return [str(ip) for ip in addresses]


def is_allow_listed(host: str) -> bool:
    """Whether the admin put this host (by name, address or range) on the allow list. Used to
    permit plain-text connections to a development or LAN server only (docs/reliability.md C-06)."""
    names, networks = _allow_list()
    if _normalise_name(host) in names:
        return True
    try:
        ip = ipaddress.ip_address(host.strip())
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def connect(addresses: Sequence[str], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first vetted address that answers (in resolver order)."""
    last: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
            continue
        sock.settimeout(timeout)
        return sock
    raise TemporaryFailure(f"cannot connect to port {port}: {last}") from last
