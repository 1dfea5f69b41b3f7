"""Normalised forms of email addresses and domains, so that lookups are exact and indexed.

Addresses are stored as `local@domain`, lower-cased, with the domain in IDNA (punycode) form;
domains the same way. Lower-casing the local part is what every CRM matching rule needs in
practice (RFC 5321 lets servers treat it case-sensitively; no real one does for matching).
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain(value: str) -> str:
    """`Exämple.COM.` -> `xn--exmple-cua.com`; raises ValidationError when it is no domain."""
    domain = (value or "").strip().rstrip(".").lower()
    if domain.startswith("@"):
        domain = domain[1:]
    if not domain:
        raise ValidationError("Enter a domain such as example.com.")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValidationError(f"“{value}” is not a valid domain name.") from exc
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError(f"“{value}” is not a valid domain name.")
    return domain


def normalize_email(value: str) -> str:
    """`Ana <Ana@Exämple.com>`-free input only: a bare address. Raises ValidationError."""
    address = (value or "").strip()
    if "@" not in address:
        raise ValidationError(f"“{value}” is not an email address.")
    local, _, domain = address.rpartition("@")
    local = local.lower()
    if not local or any(ch.isspace() for ch in local):
        raise ValidationError(f"“{value}” is not an email address.")
    normalized = f"{local}@{normalize_domain(domain)}"
    try:
        validate_email(normalized)
    except ValidationError as exc:
        raise ValidationError(f"“{value}” is not an email address.") from exc
    return normalized


def try_normalize_email(value: str) -> str | None:
    """The normalised address, or None for anything that is not one (for parsing mail)."""
    try:
        return normalize_email(value)
    except ValidationError:
        return None
