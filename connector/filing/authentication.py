"""Is the sender who the From line says? Mail from outside is untrusted until our receiving
server says it authenticated (docs/reliability.md C-15, RFC 8601 Authentication-Results)."""

from __future__ import annotations

import re

from django.conf import settings


def sender_verdict(headers: dict) -> str:
    """Why the sender is unverified, or "" (docs/reliability.md C-15, RFC 8601).

    Only the topmost Authentication-Results counts: our receiving server prepends it, and
    anything below came with the message. When RELAY_AUTHSERV_IDS (crm/settings.py) is set, a header
    whose authserv-id is not ours is ignored as forged."""
    value = (headers or {}).get("authentication-results", "")
    if not value:
        return ""
    authserv_id = value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""
    trusted = [s.lower() for s in settings.RELAY_AUTHSERV_IDS]
    if trusted and authserv_id not in trusted:
        return ""
    results = dict(re.findall(r"\b(dmarc|spf|dkim)\s*=\s*([a-z]+)", value.lower()))
    failed = [f"{m}={r}" for m, r in results.items() if r in ("fail", "softfail", "permerror")]
    if results.get("dmarc") == "pass":
        return ""
    if failed:
        return "Authentication-Results: " + ", ".join(failed)
    if results and all(r == "none" for r in results.values()):
        return "Authentication-Results: " + ", ".join(f"{m}=none" for m in results)
    return ""
