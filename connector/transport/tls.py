"""TLS and clear-text rules shared by IMAP and SMTP: certificates are verified against the host
name the user typed unless the mailbox explicitly allows an untrusted one
(docs/reliability.md C-04), and clear text goes only to allow-listed hosts (C-06)."""

from __future__ import annotations

import ssl

from . import net
from .errors import PermanentFailure


def tls_context(allow_insecure_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if allow_insecure_cert:
        # The mailbox's explicit opt-in (docs/reliability.md C-04): encrypted, but not
        # authenticated.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def check_security(host: str, security: str) -> None:
    if security not in ("ssl", "starttls", "none"):
        raise PermanentFailure(f"unknown security setting {security!r}")
    if security == "none" and not net.is_allow_listed(host):
        # docs/reliability.md C-06: a password in clear text over the internet is never acceptable;
        # plain text is for a loopback or LAN server the admin allow-listed.
        raise PermanentFailure(
            f"plain-text IMAP to {host!r} refused: not on the allow list", category="plaintext"
        )
