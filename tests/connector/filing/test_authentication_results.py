"""Reading Authentication-Results (RFC 8601) and the alignment rule (docs/reliability.md C-17):
the headers real receiving servers write, what the sender may add, and which one counts.
tests/connector/emailapi/test_api_sender_authentication.py and
tests/connector/filing/test_staff_authentication.py take the same headers through the real
path; this is the rule itself, case by case."""

from __future__ import annotations

import pytest

from connector.filing.authentication import (
    aligned,
    check_sender,
    parse_authentication_results,
)
from connector.ingest.mime import parse_message

OURS = "mx.relay.test"


def headers(*values: str) -> dict:
    return {"authentication-results": list(values)}


def test_a_gmail_style_header_with_comments_and_versions_is_read():
    value = (
        "mx.google.com;\r\n       dkim=pass header.i=@acme.example header.s=s1 header.b=Ab12;"
        "\r\n       spf=pass (google.com: domain of ana@acme.example designates 192.0.2.1 as "
        "permitted sender; see https://x.example/a;b) smtp.mailfrom=ana@acme.example;\r\n"
        "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=acme.example; arc/1=none; "
        'x-note=pass reason="a; b" policy.x=y'
    )
    parsed = parse_authentication_results(value)
    assert parsed.authserv_id == "mx.google.com"
    found = {(r.method, r.result): r.properties for r in parsed.results}
    assert found[("dkim", "pass")]["header.i"] == "@acme.example"
    assert found[("spf", "pass")]["smtp.mailfrom"] == "ana@acme.example"
    assert found[("dmarc", "pass")]["header.from"] == "acme.example"
    assert ("arc", "none") in found and ("x-note", "pass") in found


def test_no_result_and_no_authserv_id():
    assert parse_authentication_results(f"{OURS} 1; none").results == ()
    # Exchange Online writes its header without an authserv-id: it names no server of ours.
    exchange = parse_authentication_results(
        "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=acme.example; dkim=pass "
        "(signature was verified) header.d=acme.example;dmarc=pass action=none "
        "header.from=acme.example;compauth=pass reason=100"
    )
    assert exchange.authserv_id == ""
    assert [r.method for r in exchange.results] == ["spf", "dkim", "dmarc", "compauth"]


@pytest.mark.parametrize(
    "domain, from_domain, expected",
    [
        ("acme.example", "acme.example", True),
        ("mail.acme.example", "acme.example", True),
        ("acme.example", "eu.acme.example", True),
        ("a.acme.example", "b.acme.example", False),  # siblings: stricter than DMARC
        ("evil.example", "acme.example", False),
        ("notacme.example", "acme.example", False),
        ("example", "acme.example", False),  # never a bare top-level domain
        ("", "acme.example", False),
    ],
)
def test_alignment(domain, from_domain, expected):
    assert aligned(domain, from_domain) is expected


@pytest.mark.parametrize(
    "values, status",
    [
        ((f"{OURS}; dkim=pass header.d=acme.example",), "pass"),
        ((f"{OURS}; spf=pass smtp.mailfrom=bounce@mail.acme.example",), "pass"),
        ((f"{OURS}; dmarc=pass header.from=acme.example",), "pass"),
        ((f"{OURS}; dmarc=pass",), "none"),  # which From passed? unknown: not believed
        ((f"{OURS}; dmarc=pass header.from=evil.example",), "none"),
        (
            (f"{OURS}; spf=pass smtp.mailfrom=evil.example; dkim=pass header.d=evil.example",),
            "none",
        ),
        ((f"{OURS}; spf=none; dkim=none",), "none"),
        ((f"{OURS}; spf=softfail smtp.mailfrom=acme.example",), "fail"),
        (
            (f"{OURS}; spf=fail smtp.mailfrom=acme.example; dkim=pass header.d=acme.example",),
            "pass",
        ),
        (
            (f"{OURS}; dkim=pass header.d=acme.example; dmarc=fail header.from=acme.example",),
            "fail",
        ),
        ((), "none"),  # nothing from our server
        (("x; dmarc=pass header.from=acme.example",), "none"),  # someone else's header
        (("x; dmarc=pass header.from=acme.example", f"{OURS}; spf=fail"), "fail"),
        ((f"{OURS}; spf=none", f"{OURS}; dkim=pass header.d=acme.example"), "none"),  # topmost
        (("other.example; dkim=pass header.d=acme.example", f"{OURS}; spf=none"), "none"),
    ],
)
def test_only_the_topmost_header_of_our_server_counts(settings, values, status):
    settings.RELAY_AUTHSERV_IDS = [OURS]
    assert check_sender(headers(*values), "ana@acme.example").status == status


def test_without_relay_authserv_ids_nothing_passes_but_failures_still_count(settings):
    settings.RELAY_AUTHSERV_IDS = []
    good = headers(f"{OURS}; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example")
    assert check_sender(good, "ana@acme.example").status == "unknown"
    assert check_sender({}, "ana@acme.example").status == "unknown"
    assert check_sender(headers(f"{OURS}; dmarc=fail"), "ana@acme.example").status == "fail"
    assert check_sender(headers(f"{OURS}; spf=none"), "ana@acme.example").status == "none"


def test_messages_stored_before_every_header_was_kept_still_read(settings):
    settings.RELAY_AUTHSERV_IDS = [OURS]
    old = {"authentication-results": f"{OURS}; dkim=pass header.d=acme.example"}
    assert check_sender(old, "ana@acme.example").verified


def test_the_parser_keeps_every_authentication_results_header_topmost_first():
    raw = (
        f"Authentication-Results: {OURS}; spf=pass smtp.mailfrom=evil.example\r\n"
        "Received: from a by b\r\n"
        "From: Ana <ana@acme.example>\r\n"
        "Authentication-Results: x; dmarc=pass\r\n"
        "  header.from=acme.example\r\n"
        "Subject: hi\r\n\r\nbody\r\n"
    ).encode()
    parsed = parse_message(raw)
    assert parsed.headers["authentication-results"] == [
        f"{OURS}; spf=pass smtp.mailfrom=evil.example",
        "x; dmarc=pass header.from=acme.example",
    ]
