"""The parse's shortcuts for big bodies (issue #17, bench/sync.py) give exactly the answers of
the long way: the snippet of an HTML-only message read from a prefix of its markup, and the
byte-level check for control characters and lone surrogates in a body."""

from __future__ import annotations

import random

import pytest

from connector.ingest import mime
from inbox.htmltext import html_to_text

_PIECES = (
    "<p>",
    "</p>",
    "<br>",
    "<div class='x'>",
    "</div>",
    '<td style="padding:4px">',
    "<span>",
    "</span>",
    "<script>var a = '<p>not text</p>';</script>",
    "<style>p { color: red }</style>",
    "<!-- a comment with <p> inside -->",
    "<script>",  # left open: hides everything after it
    "<!--",
    "&amp;",
    "&lt;",
    "&nbsp;",
    "&#8212;",
    "\n",
    "\n\n\n",
    "   ",
    "> quoted line\n",
    "<blockquote>",
    '<a href="https://example.com/?a=1&amp;b=2">link</a>',
    "<img src=x alt='a > b'>",
    "<p\nclass='multi\nline'>",
)


def _markup(rng: random.Random) -> str:
    words = ("Hello", "Olivia,", "ship", "on", "Friday.", "Здравствуйте", "日本語", "x" * 40)
    out = []
    size = rng.choice((3_000, 9_000, 15_000, 30_000))
    while sum(map(len, out)) < size:
        if rng.random() < 0.35:
            out.append(rng.choice(_PIECES))
        else:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 30))))
    return "".join(out)


@pytest.mark.parametrize("seed", range(40))
def test_the_html_snippet_read_from_a_prefix_is_the_snippet_of_the_whole_markup(seed):
    rng = random.Random(seed)
    for _ in range(25):
        markup = _markup(rng)
        whole = mime._snippet(html_to_text(markup), 200)
        assert mime._html_snippet(markup, 200) == whole, markup[:300]


def test_a_snippet_past_the_prefix_is_still_found():
    # A newsletter whose first 8 KB are all style and head: the text comes from the whole.
    markup = "<html><head><style>" + "p{}" * 4000 + "</style></head><body><p>The offer"
    markup += " is on its way.</p></body></html>"
    assert mime._html_snippet(markup, 200) == "The offer is on its way."


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii\r\nbody",
        "caf\xe9 \u2013 \u65e5\u672c",
        "bell \x07 and escape \x1b[31m",
        "vertical \x0b tab",
        "delete \x7f char",
        "form feed \x0c stays",
        "lone \ud800 surrogate",
        "\udcff escaped byte and \x00 NUL",
        "emoji \U0001f600 fine",
    ],
)
def test_the_byte_level_body_check_agrees_with_the_regexes(text):
    expected = bool(mime._BODY_CONTROLS.search(text) or mime._SURROGATES.search(text))
    assert mime._needs_cleaning(text) == expected
    cleaned, _cut = mime._body_text(text, mime.DEFAULT_LIMITS, "text", [])
    assert not mime._BODY_CONTROLS.search(cleaned)
    assert not mime._SURROGATES.search(cleaned)
