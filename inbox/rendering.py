"""Turning hostile mail into something a browser may show (docs/reliability.md X-01..X-15).

Mail is written by strangers. Its HTML body goes through two independent layers, and each
must stop scripts on its own (docs/product.md §7.3, docs/reliability.md §8.3):

1. this module: an allow-list sanitiser (nh3/ammonia) run on the server, and
2. the reading views: the result is served into ``<iframe sandbox>`` (no ``allow-scripts``,
   no ``allow-same-origin``) with its own strict Content-Security-Policy.

Everything here is pure (no database, no network, no URL reversing): the views pass in how
``cid:`` parts and remote images are to be addressed.

The order matters (X-04, Roundcube CVE-2024-42009): ``clean_html`` first reduces the mail to
the allow-list; ``render_html_body`` then rewrites image and link URLs *inside* an nh3 pass
(the ``attribute_filter`` hook, which sees the parsed tree), and the result is sanitised once
more by the same allow-list, so no transformation ever produces markup that did not go
through the sanitiser afterwards.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import nh3

# --- The allow-list -------------------------------------------------------------------------

# Text structure and tables, as newsletters and mail clients write them. Not allowed, so
# stripped (content kept): form, input, button, label, picture, source, video, audio. Not
# allowed with their content dropped (CLEAN_CONTENT_TAGS): see below.
ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "big", "blockquote", "br", "caption", "center",
        "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol",
        "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var", "wbr",
    }
)  # fmt: skip

# Removed WITH their content. script/style: code and CSS (``<style>`` can carry url(),
# @import, @font-face and attribute-selector exfiltration: docs/reliability.md ).
# svg/math: namespace confusion and animate/set/use/feImage (X-02, Roundcube
# CVE-2023-5631/2024-37383, ammonia RUSTSEC-2025-0071).
# noscript/noembed/noframes/xmp/template/textarea/select/iframe/object/embed: elements whose
# content the browser parses differently from the sanitiser (mutation XSS, X-03: SquirrelMail
# CVE-2019-12970, Roundcube CVE-2020-12625) or page-level elements.
# head/title/meta/link/base: meta refresh, stylesheets and base href (X-05, piler #761).
CLEAN_CONTENT_TAGS = frozenset(
    {
        "script", "style", "svg", "math", "noscript", "noembed", "noframes", "xmp", "template",
        "textarea", "select", "iframe", "frame", "frameset", "object", "embed", "applet",
        "head", "title", "meta", "link", "base", "plaintext", "audio", "video", "canvas",
        "portal", "param", "dialog",
    }
)  # fmt: skip

_TABLE_CELL = {"align", "valign", "bgcolor", "width", "height", "colspan", "rowspan", "nowrap"}
# No event handlers, no id/class (they could target the app's CSS or JS if the frame ever
# lost its isolation), no URL-valued attributes other than a@href and img@src: srcset,
# background, poster, longdesc, cite, action, formaction and xlink:href are dropped
# (docs/reliability.md X-11).
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "bgcolor", "width", "height", "summary"},
    "td": _TABLE_CELL,
    "th": _TABLE_CELL | {"scope"},
    "tr": {"valign", "bgcolor", "height"},
    "tbody": {"valign"},
    "thead": {"valign"},
    "tfoot": {"valign"},
    "col": {"span", "width", "valign"},
    "colgroup": {"span", "width", "valign"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "hr": {"width", "size", "noshade", "color"},
    "div": set(),
    "p": set(),
    "span": set(),
    "blockquote": set(),
    "pre": {"width"},
}

# CSS properties that lay out and colour text and tables, and nothing that loads a resource
# (background, background-image, list-style, list-style-image, cursor, content, border-image,
# mask, filter) or escapes the box (position, z-index, transform, inset): docs/reliability.md X-06,
# X-11, Roundcube CVE-2024-42010.
ALLOWED_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-variant", "font-weight", "letter-spacing", "line-height", "text-align",
        "text-decoration", "text-indent", "text-transform", "vertical-align", "white-space",
        "word-spacing", "word-break", "overflow-wrap", "direction", "unicode-bidi",
        "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
        "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
        "border", "border-top", "border-right", "border-bottom", "border-left",
        "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
        "border-radius", "width", "height", "max-width", "min-width", "max-height",
        "min-height", "display", "float", "clear", "list-style-type", "table-layout",
        "text-align-last", "caption-side", "empty-cells",
    }
)  # fmt: skip

# Anything in a style value that could load or compute something: url() and its image-set/
# cross-fade cousins, IE expression()/behavior, -moz-binding, @import, comments and escapes
# (a backslash escape is how "u\72l(" becomes "url(" after nh3 normalises the CSS: seen
# here, so any backslash drops the style). docs/reliability.md X-06.
_STYLE_FORBIDDEN = (
    "url(", "image", "expression", "behavior", "binding", "@", "/*", "*/", "\\",
    "javascript", "vbscript", "src(", "attr(", "var(", "env(", "element(", "fade(",
)  # fmt: skip

URL_SCHEMES = frozenset({"http", "https", "mailto", "cid"})
LINK_REL = "noopener noreferrer"


def _style_is_safe(value: str) -> bool:
    lowered = value.lower()
    return not any(token in lowered for token in _STYLE_FORBIDDEN)


def _base_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "style" and not _style_is_safe(value):
        return None
    # cid: is a scheme for images only; a link may go to http, https or mailto
    # (docs/reliability.md X-13). Tabs and newlines inside a scheme are dropped by URL parsers
    # ("c\tid:"): ignore them too.
    if attr == "href" and re.sub(r"[\x00-\x20]", "", value).lower().startswith("cid:"):
        return None
    return value


def _cleaner_kwargs() -> dict:
    return dict(
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
        link_rel=LINK_REL,
        # Every link opens a new browsing context: no navigation of the frame, and with
        # rel=noopener noreferrer the opened page gets neither a handle nor our URL
        # (docs/reliability.md X-13).
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=set(ALLOWED_STYLE_PROPERTIES),
    )


def _clean_once(value: str) -> str:
    return nh3.clean(value, url_relative="deny", attribute_filter=_base_filter, **_cleaner_kwargs())


def clean_html(value: str) -> str:
    """The allow-list pass: idempotent (``clean_html(clean_html(x)) == clean_html(x)``,
    docs/reliability.md X-03).

    Relative URLs are dropped, so nothing in a mail can resolve against the CRM's origin
    (X-05); remote ``img src`` survives this pass (ammonia keeps it)
    and is dealt with by ``render_html_body``.

    Run to a fixed point: Hypothesis found that ammonia orders the rel/target attributes it
    adds differently when our filter dropped an attribute of the same <a> (x<a style=bad>),
    so one pass alone is not always idempotent; the second pass settles it.
    """
    out = _clean_once(_strip_nul(value))
    for _ in range(3):
        again = _clean_once(out)
        if again == out:
            break
        out = again
    return out


def _strip_nul(value: str) -> str:
    # html5ever turns NUL into U+FFFD anyway; doing it first keeps both passes identical.
    return (value or "").replace("\x00", "\ufffd")


# --- Rendering for the reader ---------------------------------------------------------------


@dataclass(frozen=True)
class RenderedBody:
    html: str
    remote_images: int  # remote image references found (blocked or proxied)
    images_blocked: bool  # True when some were removed for want of the reader's consent


def normalise_content_id(value: str) -> str:
    """``<Part1.ABC@x>`` (header) and ``cid:part1.abc%40x`` (URL, RFC 2392) -> one key."""
    return unquote(value or "").strip().strip("<>").strip().lower()


def _is_remote(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _punycode_host(url: str) -> str:
    """A link to an internationalised host points at its punycode form, so the browser's
    status bar and the new tab show xn--... rather than a look-alike (docs/reliability.md X-13,
    X-14)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host.isascii():
            return url
        ascii_host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return ""  # an unencodable host: no link at all
    netloc = parts.netloc.rsplit("@", 1)[-1].lower().replace(host, ascii_host)
    return parts._replace(netloc=netloc).geturl()


def render_html_body(
    value: str,
    *,
    cid_urls: Mapping[str, str],
    proxy_url: Callable[[str], str] | None,
    own_prefixes: tuple[str, ...],
) -> RenderedBody:
    """Sanitise an HTML body and rewrite its images for the sandboxed frame.

    cid_urls: normalised Content-ID -> our authorised URL for that part of THIS message
        (docs/reliability.md X-12: a cid naming another message's part simply is not in the map).
    proxy_url: None until the reader consents to remote images for this message; then a
        function giving our signed image-proxy URL for a remote URL (X-11).
    own_prefixes: the URL path prefixes our rewritten URLs start with; the only relative
        URLs the final pass lets through.
    """
    remote = 0
    blocked = False

    def rewrite(tag: str, attr: str, val: str) -> str | None:
        nonlocal remote, blocked
        if _base_filter(tag, attr, val) is None:
            return None
        if tag == "img" and attr == "src":
            url = val.strip()
            if url.lower().startswith("cid:"):
                return cid_urls.get(normalise_content_id(url[4:]))
            if _is_remote(url):
                remote += 1
                if proxy_url is None:
                    # Tracking pixels fire on load: no src at all until consent
                    # (docs/reliability.md X-11).
                    blocked = True
                    return None
                return proxy_url(url)
            return None
        if tag == "a" and attr == "href":
            return _punycode_host(val)
        return val

    def keep_own(url: str) -> str | None:
        return url if url.startswith(own_prefixes) and "//" not in url else None

    first = clean_html(value)
    # The rewrite happens inside an nh3 pass over the parsed tree; its output (our own URLs
    # in attribute values, escaped by the serialiser) is then sanitised again
    # (docs/reliability.md X-04).
    rewritten = nh3.clean(
        first, url_relative=keep_own, attribute_filter=rewrite, **_cleaner_kwargs()
    )
    final = nh3.clean(
        rewritten, url_relative=keep_own, attribute_filter=_base_filter, **_cleaner_kwargs()
    )
    return RenderedBody(html=final, remote_images=remote, images_blocked=blocked)


# Plain text: a URL runs to whitespace or to a character that cannot be in one unescaped.
_TEXT_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\"'`\x00-\x1f\x7f]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}»’”"


def render_text_body(value: str) -> str:
    """A plain-text body as HTML: escape everything first, then turn only http, https and
    mailto URLs into links, their attributes escaped too; then the same sanitiser
    (docs/reliability.md X-07, Roundcube CVE-2023-43770)."""
    value = _strip_nul(value)
    out: list[str] = []
    position = 0
    for match in _TEXT_URL.finditer(value):
        url = match.group(0)
        trimmed = url.rstrip(_TRAILING)
        # Keep a closing bracket that belongs to the URL (Wikipedia style "(x)").
        while (
            url != trimmed and trimmed.count("(") > trimmed.count(")") and url[len(trimmed)] == ")"
        ):
            trimmed += ")"
        end = match.start() + len(trimmed)
        out.append(html.escape(value[position : match.start()]))
        if _is_remote(trimmed) or trimmed.lower().startswith("mailto:") and len(trimmed) > 7:
            out.append(f'<a href="{html.escape(trimmed, quote=True)}">{html.escape(trimmed)}</a>')
        else:
            out.append(html.escape(trimmed))
        position = end
    out.append(html.escape(value[position:]))
    return clean_html("<pre>" + "".join(out) + "</pre>")


# --- Names, subjects, file names (docs/reliability.md) ---------------------------

# Bidi embeddings/overrides/isolates and marks (T1036.002: "invoice\u202Efdp.exe"), zero-width
# spaces and the BOM; with every C0/C1 control, they are dropped from anything we show.
_INVISIBLE = dict.fromkeys(
    [0x061C, 0x200B, 0x200C, 0x200E, 0x200F, 0x2028, 0x2029, 0x2060, 0xFEFF]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
    + list(range(0x00, 0x20))
    + list(range(0x7F, 0xA0))
)


def clean_display(value: str, *, limit: int = 500) -> str:
    """A subject, display name or folder name for display: bidi controls and control
    characters removed (docs/reliability.md X-14), whitespace collapsed. HTML escaping is the
    template's job (autoescape, X-08); this never returns markup."""
    value = (value or "").translate(_INVISIBLE)
    value = " ".join(value.split())
    return value[:limit]


def clean_filename(value: str) -> str:
    """An attachment name as shown and offered for download (docs/reliability.md A-01, X-14): no
    bidi or control characters, no path (``../``, ``C:\\``), no leading dots, a Windows-safe stem;
    never empty."""
    value = unicodedata.normalize("NFC", clean_display(value, limit=1000))
    value = re.split(r"[\\/]", value)[-1]
    value = value.replace(":", "_").strip().lstrip(".").strip()
    value = re.sub(r'[<>"|?*;]', "_", value)
    if not value:
        return "attachment"
    stem, dot, ext = value.rpartition(".")
    if not dot:
        stem, ext = value, ""
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    ext = ext[:20]
    stem = stem[: 150 - len(ext)]
    return f"{stem}.{ext}" if dot and stem else (stem or ext or "attachment")


_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in "123456789"
}  # noqa: E501


def ascii_filename(value: str) -> str:
    """The ``filename=`` fallback of RFC 6266 §4.3: printable ASCII without quote or
    backslash, so no header splitting or reflected file download is possible
    (docs/reliability.md A-02)."""

    def to_ascii(part: str) -> str:
        decomposed = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
        return re.sub(r"[^A-Za-z0-9._() +-]", "_", decomposed).strip(" .")

    name = clean_filename(value)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ascii_stem, ascii_ext = to_ascii(stem), to_ascii(ext)[:20]
    if not ascii_stem.strip("_. "):
        ascii_stem = "attachment"
    return f"{ascii_stem}.{ascii_ext}" if ascii_ext.strip("_") else ascii_stem


# --- Inline raster images, by their bytes (docs/reliability.md A-03) --------------------------


def sniff_raster_image(head: bytes) -> str | None:
    """The content type of a PNG, JPEG, GIF or WebP judged by its first bytes, else None.
    Never trusted from the sender's header: a "PNG" that is HTML stays a download
    (docs/reliability.md A-03)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None


# --- The frame document -----------------------------------------------------------------------

FRAME_STYLE = (
    "html{color-scheme:light}"
    "body{margin:0;padding:12px;font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,"
    "sans-serif;color:#212529;background:#fff;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto}"
    "pre{white-space:pre-wrap;font:inherit;margin:0}"
    "table{max-width:100%}"
    "blockquote{margin:0 0 0 .8em;padding-left:.8em;border-left:3px solid #dee2e6;color:#555}"
)


def frame_document(body_html: str) -> str:
    """The whole document served into the sandboxed iframe. ``body_html`` must come from
    ``render_html_body`` or ``render_text_body``; the rest is ours."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{FRAME_STYLE}</style></head><body>{body_html}</body></html>"
    )
