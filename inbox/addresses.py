"""Addresses and header values people type, parsed strictly before anything is queued: line
breaks and control characters are refused whatever the Python version (docs/reliability.md
M-01, CVE-2024-6923), recipients must be plain addr-specs (M-03, CVE-2023-27043). The outbox
(connector/outbound/) checks the stored values again with the same functions.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from django.core.exceptions import ValidationError

MAX_RECIPIENTS = 200

# C0 controls (CR, LF, NUL...), DEL, and the characters str.splitlines() and some mail
# libraries also take for line ends (NEL, LS, PS): none belongs in a header value.
HEADER_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")

# RFC 5322 3.2.3 dot-atom: no quoted local parts, no comments, no spaces (docs/reliability.md M-03).
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_NAME_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,."]')


class Recipient(NamedTuple):
    name: str
    address: str  # the normalised addr-spec: exactly what is sent to and what matching uses

    def __str__(self) -> str:
        if not self.name:
            return self.address
        name = self.name
        if _NAME_NEEDS_QUOTES.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.address}>"


def check_header_value(label: str, value: str) -> str:
    """`value` unchanged, or ValidationError if it holds a line break or control character."""
    if HEADER_FORBIDDEN.search(value or ""):
        raise ValidationError(f"{label} may not contain line breaks or control characters.")
    return value or ""


def _split_recipients(value: str) -> list[str]:
    """Split at commas and semicolons that are outside quotes and angle brackets."""
    items, current, quoted, angle, escaped = [], [], False, False, False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\" and quoted:
            current.append(ch)
            escaped = True
            continue
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch in ",;" and not quoted and not angle:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quoted:
        raise ValidationError(f"“{value}”: a quotation mark is not closed.")
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _parse_addr_spec(spec: str, original: str) -> str:
    from crm.normalize import normalize_domain

    spec = spec.strip()
    if spec.count("@") != 1:
        raise ValidationError(f"“{original}” is not one email address.")
    local, domain = spec.split("@")
    if not local.isascii():
        raise ValidationError(
            f"“{original}”: addresses with non-ASCII characters before the @ cannot be sent to."
        )
    if not _DOT_ATOM.match(local):
        # Quoted local parts and comments are legal in RFC 5322 and the root of parser
        # differentials (CVE-2023-27043): "a@b"@evil.example is refused, not guessed at.
        raise ValidationError(f"“{original}” is not a plain email address.")
    if len(local) > 64:
        raise ValidationError(f"“{original}”: the part before the @ is too long.")
    return f"{local.lower()}@{normalize_domain(domain)}"


def parse_recipient(value: str) -> Recipient:
    """`ana@example.com`, `Ana <ana@example.com>` or `"Doe, Ana" <ana@example.com>`; nothing
    else. Raises ValidationError with the offending text."""
    item = check_header_value("Recipients", value).strip()
    if "(" in item.replace('\\"', "").split('"')[-1] or ")" in item.split('"')[-1]:
        raise ValidationError(f"“{value}”: comments in addresses are not allowed.")
    if not item.endswith(">"):
        if "<" in item or ">" in item or '"' in item:
            raise ValidationError(f"“{value}” is not a valid recipient.")
        return Recipient("", _parse_addr_spec(item, value))
    open_at = item.rfind("<")
    if open_at < 0:
        raise ValidationError(f"“{value}” is not a valid recipient.")
    name, spec = item[:open_at].strip(), item[open_at + 1 : -1]
    if "<" in spec or ">" in spec:
        raise ValidationError(f"“{value}” is not a valid recipient.")
    if name.startswith('"'):
        if not name.endswith('"') or len(name) < 2:
            raise ValidationError(f"“{value}”: the name's quotation marks do not match.")
        body = name[1:-1]
        if re.search(r'(?<!\\)"', body.replace("\\\\", "")):
            raise ValidationError(f"“{value}”: the name's quotation marks do not match.")
        name = re.sub(r"\\(.)", r"\1", body)
    elif any(ch in name for ch in '"<>()'):
        raise ValidationError(f"“{value}”: put a name with special characters in quotes.")
    return Recipient(" ".join(name.split()), _parse_addr_spec(spec, value))


def parse_recipients(value) -> list[Recipient]:
    """A recipient field (one string with commas or semicolons, or a list of strings) as
    unique recipients, in order. Raises ValidationError naming the first bad one."""
    if value is None:
        return []
    raw_items = [value] if isinstance(value, str) else list(value)
    recipients: dict[str, Recipient] = {}
    for raw in raw_items:
        if isinstance(raw, Recipient):
            items = [str(raw)]
        else:
            check_header_value("Recipients", raw)
            items = _split_recipients(raw)
        for item in items:
            recipient = parse_recipient(item)
            recipients.setdefault(recipient.address, recipient)
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationError(f"At most {MAX_RECIPIENTS} recipients per message.")
    return list(recipients.values())
