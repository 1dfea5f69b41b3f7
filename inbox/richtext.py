"""What the rich-text editor sends, made safe on the server (docs/product.md §5.5,
docs/reliability.md X-20): the browser's HTML is never trusted. An allow-list of a handful of
tags (bold, italic, underline, lists, links, line breaks, quotes, inline images) on nh3's
parsed tree; links only to http, https and mailto; images only as `data:` raster images pasted
into the editor (turned into `cid:` parts when the mail is sent) or `cid:` parts already there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
import secrets
from html.parser import HTMLParser

import nh3

from .htmltext import html_to_text
from .rendering import sniff_raster_image

COMPOSE_TAGS = frozenset(
    {"p", "div", "br", "b", "strong", "i", "em", "u", "s", "strike", "ul", "ol", "li", "a",
     "blockquote", "img", "span", "h1", "h2", "h3", "pre", "code"}
)  # fmt: skip
COMPOSE_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt", "width", "height"}}
# A pasted image as the editor holds it; anything else in a data: URL is dropped.
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/=\s]+)", re.I | re.S)
MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024


def _no_control(value: str) -> str:
    return re.sub(r"[\x00-\x20]", "", value).lower()


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    compact = _no_control(value)
    if tag == "a" and attr == "href":
        return value if compact.startswith(("http:", "https:", "mailto:")) else None
    if tag == "img" and attr == "src":
        if compact.startswith("cid:") or _DATA_IMAGE.fullmatch(value.strip()):
            return value.strip()
        return None
    if attr in ("width", "height"):
        return value if value.isdigit() and len(value) <= 5 else None
    return value


def clean_composed_html(value: str) -> str:
    """The editor's HTML through the allow-list, to a fixed point (an nh3 pass is not always
    idempotent on its own, see inbox/rendering.py clean_html)."""
    out = (value or "").replace("\x00", "")
    for _ in range(4):
        again = nh3.clean(
            out,
            tags=set(COMPOSE_TAGS),
            clean_content_tags={"script", "style"},
            attributes={tag: set(attrs) for tag, attrs in COMPOSE_ATTRIBUTES.items()},
            url_schemes={"http", "https", "mailto", "cid", "data"},
            attribute_filter=_attribute_filter,
            link_rel="noopener noreferrer",
            url_relative="deny",
            strip_comments=True,
        )
        if again == out:
            break
        out = again
    return out.strip()


def is_blank_html(value: str) -> bool:
    """An editor that only holds empty paragraphs and line breaks is empty."""
    return not html_to_text(value or "", limit=2000).strip() and "<img" not in (value or "")


_BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "pre", "ul", "ol", "li", "blockquote"})


class _TextWriter(HTMLParser):
    """The composed HTML (already through the allow-list) as plain text a mail client shows
    well: paragraphs and line breaks kept, "- " and "1. " for list items, a link's address
    after its text, "> " before quoted lines."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.lists: list[list] = []  # [kind, counter]
        self.quote = 0
        self.links: list[str | None] = []

    def _break(self):
        if self.lines[-1].strip():
            self.lines.append("")

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "br":
            self.lines.append("")
        elif tag in ("ul", "ol"):
            self._break()
            self.lists.append([tag, 0])
        elif tag == "li":
            self._break()
            prefix = "- "
            if self.lists and self.lists[-1][0] == "ol":
                self.lists[-1][1] += 1
                prefix = f"{self.lists[-1][1]}. "
            self.lines[-1] = "  " * max(len(self.lists) - 1, 0) + prefix
        elif tag == "blockquote":
            self._break()
            self.quote += 1
        elif tag in _BLOCKS:
            self._break()
        elif tag == "a":
            self.links.append(attrs.get("href"))
            self._link_start = len(self.lines), len(self.lines[-1])
        elif tag == "img":
            self.lines[-1] += "[image]"

    def handle_endtag(self, tag):
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self._break()
        elif tag == "blockquote":
            self.quote = max(self.quote - 1, 0)
            self._break()
        elif tag in _BLOCKS:
            self._break()
        elif tag == "a" and self.links:
            href = self.links.pop()
            shown = self.lines[-1][self._link_start[1] :] if hasattr(self, "_link_start") else ""
            if href and href.removeprefix("mailto:") != shown.strip():
                self.lines[-1] += f" <{href.removeprefix('mailto:')}>"

    def handle_data(self, data):
        text = " ".join(data.split()) if "\n" in data else data
        if not text:
            return
        if self.quote and not self.lines[-1].startswith(">"):
            self.lines[-1] = "> " * self.quote + self.lines[-1]
        self.lines[-1] += text

    def text(self) -> str:
        out = []
        for line in self.lines:
            # "-- " is the signature separator (RFC 3676 4.3): its trailing space stays.
            out.append("-- " if line.strip() == "--" else line.rstrip())
        text = "\n".join(out)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def text_from_html(value: str) -> str:
    """The plain-text alternative of a composed HTML body."""
    writer = _TextWriter()
    writer.feed(value or "")
    writer.close()
    text = writer.text()
    return text + "\n" if text.strip() else ""


def html_from_text(text: str) -> str:
    return "<div>" + html.escape(text).replace("\n", "<br>\n") + "</div>"


def inline_images(value: str, *, domain: str) -> tuple[str, list[tuple[str, str, bytes, str]]]:
    """Pasted `data:` images out of the HTML: each becomes a `cid:` reference and an inline
    part (filename, content type, bytes, content id). The content type is sniffed from the
    bytes; what is not a PNG, JPEG, GIF or WebP is dropped, never attached."""
    parts: list[tuple[str, str, bytes, str]] = []
    seen: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        try:
            data = base64.b64decode(re.sub(r"\s", "", match.group(2)), validate=True)
        except (binascii.Error, ValueError):
            return ""
        content_type = sniff_raster_image(data[:16])
        if content_type is None or len(data) > MAX_INLINE_IMAGE_BYTES:
            return ""
        digest = hashlib.sha256(data).hexdigest()
        if digest not in seen:
            cid = f"img-{secrets.token_hex(8)}@{domain or 'relay.invalid'}"
            seen[digest] = cid
            extension = content_type.partition("/")[2].replace("jpeg", "jpg")
            parts.append((f"image{len(parts) + 1}.{extension}", content_type, data, cid))
        return f"cid:{seen[digest]}"

    return _DATA_IMAGE.sub(replace, value or ""), parts
