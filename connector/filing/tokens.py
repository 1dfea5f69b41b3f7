"""The signed record token in the Message-IDs of mail the CRM sends (docs/product.md §4.1 rule 2,
docs/reliability.md C-14).

A reply carries our Message-ID in In-Reply-To/References, so the id itself says which record
the conversation belongs to. The id is `<nonce>.<kind><pk>.<mac>@<domain>`: the MAC is an
HMAC-SHA256 (key settings.RELAY_TOKEN_KEY) over nonce, kind and pk, so nobody without the key
can point a reply at a record of their choosing. Ids are kept without angle brackets, as
`Message.message_id` stores them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from django.conf import settings

from crm.selectors import default_from_email

KIND_CODES = {"ticket": "t", "opportunity": "o", "contact": "c", "account": "a", "lead": "l"}
CODE_KINDS = {code: kind for kind, code in KIND_CODES.items()}
MAC_LENGTH = 20  # base32 characters: 100 bits, far beyond guessing over mail
_TOKEN = re.compile(r"^relay-([a-z0-9]{8,40})\.([tocal])(\d{1,19})\.([a-z2-7]{20})@", re.I)
# Anything that dresses like our token (so a forgery is recognised and reported, not ignored).
_LOOKS_OURS = re.compile(r"^relay-[^.@]*\.[a-z]\d+\.[^.@]*@", re.I)


@dataclass(frozen=True)
class TokenCheck:
    status: str  # "none" (not our format), "valid", "forged"
    record_type: str = ""
    record_id: int = 0


def _mac(nonce: str, code: str, pk: int) -> str:
    key = settings.RELAY_TOKEN_KEY.encode()
    digest = hmac.new(key, f"relay:{nonce}:{code}:{pk}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_LENGTH]


def message_id_domain() -> str:
    configured = settings.RELAY_MESSAGE_ID_DOMAIN
    if configured:
        return configured
    return default_from_email().rpartition("@")[2] or "relay.invalid"


def make_message_id(record, *, nonce: str | None = None, domain: str | None = None) -> str:
    """A new Message-ID (no angle brackets) carrying `record`'s signed token. `nonce` makes it
    deterministic (e.g. one acknowledgement per message); by default it is random."""
    code = KIND_CODES[record.record_type]
    nonce = (nonce or secrets.token_hex(8)).lower()
    if not re.fullmatch(r"[a-z0-9]{8,40}", nonce):
        raise ValueError("nonce must be 8 to 40 letters or digits")
    mac = _mac(nonce, code, record.pk)
    return f"relay-{nonce}.{code}{record.pk}.{mac}@{domain or message_id_domain()}"


def make_internal_message_id(purpose: str, pk: int, *, domain: str | None = None) -> str:
    """A deterministic Message-ID for mail about our own message `pk` (e.g. the forward of an
    unplaceable message): the same on every re-run, so it can never be queued twice, yet
    unguessable (keyed MAC), so nobody can aim a forged reply at it (docs/reliability.md M-07). It
    carries no record token."""
    if not re.fullmatch(r"[a-z]{1,20}", purpose):
        raise ValueError("purpose must be 1 to 20 lower-case letters")
    mac = _mac(purpose, "-", pk)
    return f"relay-{purpose}-{pk}-{mac}@{domain or message_id_domain()}"


def check_message_id(message_id: str) -> TokenCheck:
    """Is this one of our signed ids? No database access: cheap for every reference of a batch."""
    match = _TOKEN.match(message_id or "")
    if match is None:
        if _LOOKS_OURS.match(message_id or ""):
            return TokenCheck("forged")
        return TokenCheck("none")
    nonce, code, pk, mac = match.groups()
    nonce, code, pk = nonce.lower(), code.lower(), int(pk)
    if not hmac.compare_digest(_mac(nonce, code, pk), mac.lower()):
        return TokenCheck("forged", CODE_KINDS[code], pk)
    return TokenCheck("valid", CODE_KINDS[code], pk)
