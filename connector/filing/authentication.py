"""Is the sender who the From line says? Mail from outside is untrusted until our receiving
server says it authenticated, for the From line's own domain (docs/reliability.md C-15, C-17;
RFC 8601 Authentication-Results; the alignment rule is DMARC's, RFC 7489 3.1).

Which header counts: only an Authentication-Results header whose authserv-id is one of ours
(RELAY_AUTHSERV_IDS, crm/settings.py), and of those the topmost: our receiving server prepends
its own, so anything below it came with the message, and a header naming another server (or
none: Exchange Online writes its header without an authserv-id) may have been written by the
sender. Our receiving server must remove headers that carry its own authserv-id from incoming
mail (RFC 8601 5); Postfix with OpenDMARC/OpenDKIM and the big providers do.

What counts as verified: a pass *aligned* with the From domain in that header:
- dmarc=pass with header.from equal to the From domain, or
- spf=pass whose smtp.mailfrom domain aligns with the From domain, or
- dkim=pass whose header.d (else the domain of header.i) aligns with the From domain.
Aligned means equal, or one a subdomain of the other (`mail.acme.example` and `acme.example`):
DMARC's relaxed alignment without the public-suffix list. Two sibling subdomains do not align
here although DMARC would, which only errs on the strict side; the case it lets through, a
sender on a subdomain of a shared domain that others can register under, needs that shared
domain to be the From domain, which no staff member or Email API sender should have.
An explicit dmarc=fail is a failure whatever else passed (the domain's own policy decided).

Outcomes (`Verdict.status`):
- "pass": verified. Required for staff identity (connector/filing/matching.py) and the Email
  API (connector/emailapi/handler.py).
- "fail": our server reports a failure (fail, softfail, permerror) and nothing aligned passed.
  The sender may use no reference and gets no acknowledgement; its filings are flagged.
- "none": nothing verifies this From (no SPF or DKIM, a pass only for another domain, no
  header from our server at all): flagged, no acknowledgement, references as before.
- "unknown": RELAY_AUTHSERV_IDS is not set, so no header can be believed. Nothing is flagged
  (every message would be); only what needs a verified sender is refused.
With RELAY_AUTHSERV_IDS unset the topmost header is still read for failures: a header can
only make its own message less trusted, so believing its bad news is safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.conf import settings

FAILURES = ("fail", "softfail", "permerror")
_METHOD = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?:/\s*\d+\s*)?=\s*([A-Za-z0-9_-]+)")
_PROPERTY = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9_-]*)\s*\.\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*=\s*"
    r'("(?:[^"\\]|\\.)*"|[^\s;"]+)'
)


@dataclass(frozen=True)
class MethodResult:
    method: str  # spf, dkim, dmarc, ... (lower case)
    result: str  # pass, fail, none, ... (lower case)
    properties: dict[str, str] = field(default_factory=dict)  # "header.d" -> "acme.example"


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str  # lower case; "" when the header has none
    results: tuple[MethodResult, ...]


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass", "fail", "none" or "unknown" (see the module's docstring)
    detail: str  # what the header said, or why nothing could be read, in words

    @property
    def verified(self) -> bool:
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    @property
    def flagged(self) -> bool:
        """Filings are shown as "unverified sender" and no acknowledgement is sent."""
        return self.status in ("fail", "none")


def _without_comments(value: str) -> str:
    """The header with its (nested) comments replaced by a space; quoted strings kept."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if depth == 0 and ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            continue
        elif not quoted and ch == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def _split(value: str) -> list[str]:
    """Split on the semicolons that are not inside a quoted string."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """One Authentication-Results header (RFC 8601 2.2): the authserv-id, then each method's
    result with its properties. None when it is empty."""
    parts = _split(_without_comments(value or ""))
    head = parts[0].strip()
    if not head and len(parts) == 1:
        return None
    first = head.split()[0] if head else ""
    # A header that starts with a result ("spf=pass ...") names no server at all.
    authserv_id = "" if (not first or "=" in first) else _unquote(first).lower()
    candidates = parts[1:] if authserv_id or not first else parts
    results = []
    for part in candidates:
        match = _METHOD.match(part)
        if match is None:
            continue  # "none" (no result), or something unreadable
        properties: dict[str, str] = {}
        for ptype, prop, pvalue in _PROPERTY.findall(part[match.end() :]):
            properties.setdefault(f"{ptype.lower()}.{prop.lower()}", _unquote(pvalue))
        results.append(MethodResult(match[1].lower(), match[2].lower(), properties))
    return AuthenticationResults(authserv_id, tuple(results))


def header_values(headers: dict | None) -> list[str]:
    """Every Authentication-Results header of a stored message, topmost first. Messages
    stored before all of them were kept have the topmost one as a string."""
    value = (headers or {}).get("authentication-results") or []
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)]


def _domain(value: str) -> str:
    """The domain of `user@domain`, `@domain` or `domain`, lower case, IDNA-encoded."""
    domain = (value or "").strip().strip("<>").rpartition("@")[2].strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return ""


def aligned(domain: str, from_domain: str) -> bool:
    """Equal, or one a subdomain of the other (the module's docstring says why this is safe
    enough without the public-suffix list). Never a bare top-level domain."""
    if not domain or not from_domain:
        return False
    if domain == from_domain:
        return True
    shorter, longer = sorted((domain, from_domain), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def _judge(header: AuthenticationResults, from_domain: str) -> Verdict:
    where = f"Authentication-Results {header.authserv_id or '(no authserv-id)'}"
    dmarc_failed = [r for r in header.results if r.method == "dmarc" and r.result in FAILURES]
    if dmarc_failed:
        return Verdict("fail", f"{where}: dmarc={dmarc_failed[0].result}")
    passes = []
    for r in header.results:
        if r.result != "pass":
            continue
        if r.method == "dmarc":
            if _domain(r.properties.get("header.from", "")) == from_domain:
                passes.append(f"dmarc=pass header.from={from_domain}")
        elif r.method == "spf":
            domain = _domain(r.properties.get("smtp.mailfrom", ""))
            if aligned(domain, from_domain):
                passes.append(f"spf=pass smtp.mailfrom={domain}")
        elif r.method == "dkim":
            domain = _domain(r.properties.get("header.d", "")) or _domain(
                r.properties.get("header.i", "")
            )
            if aligned(domain, from_domain):
                passes.append(f"dkim=pass header.d={domain}")
    if passes:
        return Verdict("pass", f"{where}: {passes[0]}")
    checked = [r for r in header.results if r.method in ("spf", "dkim", "dmarc")]
    failed = [f"{r.method}={r.result}" for r in checked if r.result in FAILURES]
    if failed:
        return Verdict("fail", f"{where}: " + ", ".join(failed))
    said = [_describe(r) for r in checked]
    return Verdict(
        "none",
        f"{where}: nothing passed for {from_domain}" + (f" ({', '.join(said)})" if said else ""),
    )


def _describe(r: MethodResult) -> str:
    key = {"spf": "smtp.mailfrom", "dkim": "header.d", "dmarc": "header.from"}[r.method]
    domain = _domain(r.properties.get(key, ""))
    return f"{r.method}={r.result}" + (f" {key}={domain}" if domain and r.result == "pass" else "")


def check_sender(headers: dict | None, from_address: str) -> Verdict:
    """How far the From line of a stored message can be believed (the module's docstring)."""
    from_domain = _domain(from_address) if from_address and "@" in from_address else ""
    ours = [s.lower() for s in settings.RELAY_AUTHSERV_IDS]
    parsed = [p for p in map(parse_authentication_results, header_values(headers)) if p]
    if not from_domain:
        return Verdict("none", "the message has no From address")
    if ours:
        header = next((p for p in parsed if p.authserv_id in ours), None)
        if header is None:
            return Verdict(
                "none",
                "no Authentication-Results header from our receiving server "
                f"({', '.join(ours)}, RELAY_AUTHSERV_IDS)",
            )
        return _judge(header, from_domain)
    unset = "RELAY_AUTHSERV_IDS is not set: no Authentication-Results header can be believed"
    if not parsed:
        return Verdict("unknown", unset)
    verdict = _judge(parsed[0], from_domain)
    if verdict.verified:
        return Verdict("unknown", unset)
    return verdict
