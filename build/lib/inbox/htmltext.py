"""The one HTML-to-text converter: the snippet of an HTML-only message
(connector/ingest/mime.py) and the plain-text alternative of mail composed in HTML
(inbox/services/composing.py). Never for display: HTML is shown only through the sanitiser
(inbox/rendering.py).

Linear on hostile input: hidden elements (script, style, head, title, comments) are skipped
with str.find rather than a lazy regex with a back-reference, which goes quadratic on
thousands of unclosed `<script` tags (docs/reliability.md P-05).
"""

from __future__ import annotations

import html
import re

_HIDDEN = re.compile(r"(?i)<(script|style|head|title)\b|<!--")
_BREAK = re.compile(r"(?i)<\s*/?\s*(br|p|div|tr|li|h[1-6]|blockquote)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(markup: str, limit: int = 20_000) -> str:
    """The text of the first `limit` characters of `markup`: tags dropped, block ends as line
    breaks, entities decoded, runs of spaces collapsed, at most one blank line in a row."""
    markup = markup[:limit]
    lowered = markup.lower()
    kept: list[str] = []
    pos = 0
    while True:
        match = _HIDDEN.search(markup, pos)
        if match is None:
            kept.append(markup[pos:])
            break
        kept.append(markup[pos : match.start()])
        closer = "-->" if match.group(1) is None else "</" + match.group(1).lower()
        end = lowered.find(closer, match.end())
        if end < 0:
            break
        pos = lowered.find(">", end) + 1 if closer != "-->" else end + 3
        if pos == 0:
            break
    text = _BREAK.sub("\n", " ".join(kept))
    text = html.unescape(_TAG.sub(" ", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
