"""Our own errors for everything that talks to mail servers.

Callers decide by class, never by parsing library messages:
- AuthenticationFailed: the server refused the credentials. The mailbox goes to "needs
  reconnect" and stops retrying (docs/product.md §2.5, docs/reliability.md S-28: no retry storm).
- TemporaryFailure: network down, timeout, server busy, BYE. Retry with back-off.
- PermanentFailure: retrying will not help until someone changes a setting: the certificate
  does not verify, STARTTLS is missing, the server speaks something else, the host is refused.

``str(exc)`` is the detail for logs and operators. ``user_message`` is one fixed wording per
``category`` for people (docs/reliability.md C-08: a test-connection form must not become an oracle
that tells "refused" from "timeout" from "banner" on an internal network).
"""

from __future__ import annotations

USER_MESSAGES = {
    "auth": "The server refused the login. Check the login name and password (or reconnect "
    "the account).",
    # Also the answer for a host refused by the SSRF guard (HostNotAllowed): a name that does
    # not resolve and one that resolves to an internal address read the same, so Test
    # connection cannot map an internal network (docs/reliability.md C-25).
    "unreachable": "Could not connect to the mail server. Check the host name and port, or "
    "try again later. A server on your own network or on this machine must first be allowed "
    "by an administrator, in the RELAY_ALLOWED_MAIL_HOSTS setting.",
    "tls": "The secure connection to the mail server failed: its certificate could not be "
    "verified or it does not offer the encryption chosen. Check the security setting, or "
    "allow an untrusted certificate if you trust this server.",
    "plaintext": "An unencrypted connection is only allowed to servers an administrator "
    "allowed in the RELAY_ALLOWED_MAIL_HOSTS setting. Choose SSL/TLS or STARTTLS.",
    "protocol": "The mail server gave an answer we could not use.",
    "no_secret": "No password or sign-in is stored for this mailbox: reconnect it.",
}


class MailError(Exception):
    """Base of every error the connector raises about a mail server."""

    category = "protocol"

    def __init__(self, detail: str = "", *, category: str | None = None):
        super().__init__(detail or USER_MESSAGES.get(category or self.category, ""))
        if category is not None:
            self.category = category

    @property
    def user_message(self) -> str:
        return USER_MESSAGES.get(self.category, USER_MESSAGES["protocol"])


class AuthenticationFailed(MailError):
    """The login (password or OAuth token) was refused."""

    category = "auth"


class TemporaryFailure(MailError):
    """Network, timeout, busy server, BYE: try again later."""

    category = "unreachable"


class PermanentFailure(MailError):
    """TLS verification failure, protocol error, refused host: needs a change of settings."""

    category = "protocol"


class HostNotAllowed(PermanentFailure):
    """The host resolves to an internal address not on RELAY_ALLOWED_MAIL_HOSTS (SSRF guard).
    People see it as "unreachable", like a name that does not resolve (docs/reliability.md
    C-25); the reason is logged for operators."""

    category = "unreachable"
