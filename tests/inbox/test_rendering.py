"""The sanitiser and renderers of inbox/rendering.py, without a browser: the hostile corpus,
idempotence (docs/reliability.md X-03), Hypothesis-generated fragments, plain-text linkifying
(X-07), names and file names (X-14, A-01)."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.rendering import (
    ascii_filename,
    clean_display,
    clean_filename,
    clean_html,
    render_html_body,
    render_text_body,
    sniff_raster_image,
)

CORPUS = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "xss" / "corpus.json").read_text(encoding="utf-8")
)["entries"]
BEACON = "http://127.0.0.1:9"
OWN = ("/inbox/messages/7/inline/", "/inbox/messages/7/image/")


def filled(entry: dict) -> str:
    return (
        entry["payload"]
        .replace("{DATAHTML}", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==")
        .replace("{JSNS}", f"fetch(`{BEACON}/x/1`)")
        .replace("{JS}", f"fetch('{BEACON}/x/1')")
        .replace("{R}", f"{BEACON}/r/1")
        .replace("{B}", BEACON)
        .replace("{ID}", entry["id"])
    )


FORBIDDEN_TAGS = {
    "script", "style", "svg", "math", "iframe", "frame", "frameset", "object", "embed", "base",
    "meta", "link", "form", "input", "button", "textarea", "select", "template", "noscript",
    "xmp", "noembed", "video", "audio", "source", "picture", "title", "plaintext",
}  # fmt: skip
FORBIDDEN_ATTRS = {"srcset", "background", "poster", "formaction", "action", "data", "id", "class"}


class _Markup(HTMLParser):
    """The tags and attributes of an output, as a parser (not a regex over text) sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or name in FORBIDDEN_ATTRS:
                self.problems.append(f"{tag}@{name}")
            if name == "href" and not value.startswith(("http://", "https://", "mailto:")):
                self.problems.append(f"{tag}@href={value!r}")
            if name == "src" and not value.startswith(OWN):
                self.problems.append(f"{tag}@src={value!r}")
            if name == "style" and re.search(r"url|\\|expression|position|@", value, re.I):
                self.problems.append(f"{tag}@style={value!r}")


def problems(output: str) -> list[str]:
    parser = _Markup()
    parser.feed(output)
    parser.close()
    return parser.problems


def rendered(html: str, *, consent: bool = False) -> str:
    return render_html_body(
        html,
        cid_urls={"logo@x": "/inbox/messages/7/inline/3/?t=abc"},
        proxy_url=(lambda url: "/inbox/messages/7/image/?t=signed") if consent else None,
        own_prefixes=OWN,
    ).html


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_corpus_is_inert_and_stable(entry):
    payload = filled(entry)
    once = clean_html(payload)
    assert clean_html(once) == once  # docs/reliability.md X-03
    for output in (rendered(payload), rendered(payload, consent=True), render_text_body(payload)):
        # Nothing runs, nothing loads from anywhere but our own paths
        # (docs/reliability.md X-01..X-11).
        assert problems(output) == [], output
        # Whatever the browser re-parses, the same sanitiser finds nothing more to remove.
        assert clean_html(output) == clean_html(clean_html(output))


def test_remote_images_are_removed_until_consent_then_proxied():
    html = '<p>Hi <img src="https://tracker.example/p.gif" width=1 height=1 alt="pixel"></p>'
    blocked = render_html_body(html, cid_urls={}, proxy_url=None, own_prefixes=OWN)
    assert blocked.images_blocked and blocked.remote_images == 1
    assert "tracker.example" not in blocked.html and "src=" not in blocked.html
    assert 'alt="pixel"' in blocked.html
    allowed = render_html_body(
        html, cid_urls={}, proxy_url=lambda u: "/inbox/messages/7/image/?t=x&y", own_prefixes=OWN
    )
    assert not allowed.images_blocked
    assert 'src="/inbox/messages/7/image/?t=x&amp;y"' in allowed.html


def test_cid_is_rewritten_to_this_messages_part_only():
    html = '<img src="cid:Logo%40X"><img src="cid:other@x"><img src="/inbox/messages/7/inline/9/">'
    out = rendered(html)
    assert out.count('src="/inbox/messages/7/inline/3/?t=abc"') == 1
    assert out.count("src=") == 1  # an unknown cid, and a relative URL in the mail: dropped


def test_our_prefix_cannot_be_smuggled_through_the_mail():
    """Relative URLs in the mail are dropped by the first pass, even ones that look like ours;
    an absolute one to our host is just a remote image (proxied, SSRF-checked)."""
    out = rendered('<a href="/inbox/messages/7/raw/">x</a><img src="/inbox/messages/7/image/?t=a">')
    assert "/inbox/" not in out


def test_links_open_in_a_new_tab_without_opener_or_referrer():
    out = rendered('<a href="https://example.com/" target="_self" rel="opener">x</a>')
    assert out == (
        '<a href="https://example.com/" target="_blank" rel="noopener noreferrer">x</a>'
    )  # docs/reliability.md X-13


def test_styles_keep_layout_but_lose_everything_that_loads_or_escapes():
    out = rendered(
        '<p style="color:red;position:fixed;top:0;font-weight:bold">a</p>'
        '<p style="color:blue;background:url(http://x/)">b</p>'
        '<p style="color:green;font-family:a\\72 ial">c</p>'
    )
    assert '<p style="color:red;font-weight:bold">a</p>' in out
    assert "<p>b</p>" in out and "<p>c</p>" in out  # style dropped whole (docs/reliability.md X-06)


def test_plain_text_is_escaped_before_linkifying():
    out = render_text_body(
        'See https://example.com/a?b=1&c=2"><img src=x onerror=alert(1)> and javascript:alert(1) '
        "or <mailto:ana@example.com>."
    )
    assert "<img" not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    assert '<a href="https://example.com/a?b=1&amp;c=2"' in out
    assert 'href="javascript' not in out
    assert '<a href="mailto:ana@example.com"' in out


def test_display_strings_lose_bidi_and_controls():
    assert clean_display("Invoice\u202efdp.exe\r\n") == "Invoicefdp.exe"
    assert clean_display("a\u2066b\u2069c\u200fd\x00e") == "abcde"
    assert clean_display("<b>x</b>") == "<b>x</b>"  # escaping is the template's job


@pytest.mark.parametrize(
    "name,shown,fallback",
    [
        ("../../etc/passwd", "passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini", "boot.ini"),
        ("C:\\x", "x", "x"),
        ("invoice\u202efdp.exe", "invoicefdp.exe", "invoicefdp.exe"),
        ("CON", "_CON", "_CON"),
        ("com1.txt", "_com1.txt", "_com1.txt"),
        ("", "attachment", "attachment"),
        ("...", "attachment", "attachment"),
        ('a"b;c\r\nd.pdf', "a_b_cd.pdf", "a_b_cd.pdf"),
        ("résumé.pdf", "résumé.pdf", "resume.pdf"),
        ("日本.pdf", "日本.pdf", "attachment.pdf"),
    ],
)
def test_file_names(name, shown, fallback):
    assert clean_filename(name) == shown
    assert ascii_filename(name) == fallback
    assert re.fullmatch(r"[A-Za-z0-9._() +-]+", ascii_filename(name))


def test_sniffing_only_trusts_raster_magic():
    assert sniff_raster_image(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_raster_image(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_raster_image(b"GIF89a") == "image/gif"
    assert sniff_raster_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    for other in (b"<svg", b"<html>", b"%PDF-1.7", b"", b"RIFF\x00\x00\x00\x00WAVE"):
        assert sniff_raster_image(other) is None


# --- Hypothesis: random fragments built from the dangerous parts of HTML -----------------------

TAGS = [
    "a", "b", "p", "div", "span", "img", "table", "tr", "td", "svg", "math", "mtext", "mglyph",
    "style", "script", "noscript", "xmp", "textarea", "template", "select", "option", "iframe",
    "form", "input", "title", "a", "li", "ul", "pre", "font", "br", "object", "embed", "base",
]  # fmt: skip
ATTRS = ["href", "src", "style", "onerror", "onload", "title", "srcset", "background", "id"]
VALUES = [
    "javascript:alert(1)", "http://x.example/p.gif", "cid:a@b", "/rel", "x", "color:red",
    "background:url(http://x)", '"><img src=x onerror=alert(1)>', "</style><script>",
    "position:fixed", "data:text/html,<script>", " java\tscript:1", "&#106;avascript:1",
]  # fmt: skip
TEXT = st.sampled_from(["x", "<", ">", "&", "&amp;", '"', "'", "</", "<!--", "-->", "]]>", " "])


@st.composite
def fragments(draw, depth=0):
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 3 if depth < 3 else 1))
        if kind <= 1:
            parts.append(draw(TEXT))
        else:
            tag = draw(st.sampled_from(TAGS))
            attrs = "".join(
                f' {draw(st.sampled_from(ATTRS))}="{draw(st.sampled_from(VALUES))}"'
                for _ in range(draw(st.integers(0, 2)))
            )
            inner = draw(fragments(depth=depth + 1))
            close = draw(st.booleans())
            parts.append(f"<{tag}{attrs}>{inner}" + (f"</{tag}>" if close else ""))
    return "".join(parts)


# 500 in the everyday run; RELAY_HYPOTHESIS_EXAMPLES=10000 for docs/reliability.md §8.3.
@settings(
    max_examples=int(os.environ.get("RELAY_HYPOTHESIS_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(fragments())
def test_generated_fragments_are_idempotent_and_inert(fragment):
    once = clean_html(fragment)
    assert clean_html(once) == once
    out = rendered(fragment)
    assert problems(out) == [], out
    assert rendered(out) == clean_html(rendered(out))


def test_idn_links_point_at_their_punycode_host():
    """docs/reliability.md X-13: a Cyrillic 'а' in paypal.com cannot pass for the real one in the
    status bar."""
    out = rendered('<a href="https://p\u0430ypal.com/login">paypal</a>')
    assert 'href="https://xn--pypal-4ve.com/login"' in out
    out = rendered('<a href="https://user:pw@ex\u00e4mple.com:8080/x">b</a>')
    assert 'href="https://xn--exmple-cua.com:8080/x"' in out  # userinfo tricks dropped too
