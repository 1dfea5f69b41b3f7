"""A self-signed certificate made once per test session, for the TLS listeners of Dovecot and
the SMTP fixture. Being self-signed, a client with default verification must refuse it
(docs/reliability.md C-04); a client given ``cafile`` (the same file) must accept it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path

    @property
    def ca_path(self) -> Path:
        # Self-signed: the certificate is its own authority.
        return self.cert_path


def make_self_signed(directory: Path, common_name: str = "localhost") -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(common_name),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Certificate(cert_path=cert_path, key_path=key_path)


def free_port() -> int:
    """A port free on loopback right now, for a server that cannot be given a bound socket
    (Dovecot). Another process (a parallel pytest-xdist worker) may take it before the server
    binds it; the caller checks it reached its own server and retries otherwise."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_refusing: list[socket.socket] = []


def refused_port() -> int:
    """A loopback port where nothing listens, and nothing will while the tests run: bound but
    never listening (a connection is refused at once) and held until the process ends, so no
    server of a parallel pytest-xdist worker can take it in the meantime."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _refusing.append(sock)
    return sock.getsockname()[1]
