"""Raw RFC 5322 / MIME bytes -> `ParsedMessage`. Pure: no database, no Django models.

Everything downstream (ingest, threading, matching, the reader) trusts what this returns, and the
input is whatever a stranger chose to send. So:

* Caps come *before* anything superlinear sees the input (docs/reliability.md
  P-01..P-03): we read the top-level header block ourselves, with hard limits on
  its size, field count, field length and addresses per field, and the MIME backend never sees
  those headers. The body's depth and part count are checked before the stdlib parser runs
  (a byte scan) and while walking the Rust parser's tree (it is linear and caps its own depth
  at 256). Beyond a cap only a safe prefix of the body is parsed: `truncated` and a defect say
  so. Over `max_size` the message keeps its headers and a cut body, with `too_large`.
* Two MIME tree backends, chosen by measurement (bench/parse.py): `fast-mail-parser` (Rust)
  builds the tree; the stdlib `email` parser with `policy.compat32` takes over for whatever it
  refuses (it raises on bad base64, for one) and when it is not installed. Both only give us
  the tree and each leaf's transfer-decoded bytes: header decoding (RFC 2047, raw 8-bit),
  addresses, dates and charsets are ours, so both backends give the same answers and broken
  charsets are repaired one way (charset-normalizer as the last resort,
  docs/reliability.md P-05/X-10).
* No exception escapes except `MessageUnparseable` for input that is not mail at all. A failure
  inside a backend degrades to "headers plus whatever body we can read", with defects.
* Display strings (subject, names, file names) lose CR/LF, control and bidi characters
  (docs/reliability.md P-06/X-14); NUL never survives anywhere, because PostgreSQL text refuses it.
  Bodies are decoded Unicode but *not* sanitised: that belongs to the view.
"""

from __future__ import annotations

import binascii
import codecs
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message
from email.policy import Compat32
from email.utils import getaddresses, parsedate_tz
from functools import lru_cache
from urllib.parse import unquote

from crm.normalize import try_normalize_email
from inbox.htmltext import html_to_text

try:  # Optional speed-up; the stdlib backend is complete on its own.
    import fast_mail_parser as _fmp
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    _fmp = None

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "MessageUnparseable",
    "ParsedAttachment",
    "ParsedMessage",
    "clean_filename",
    "clean_text",
    "decode_header_text",
    "parse_message",
]


class MessageUnparseable(ValueError):
    """The input is not an email message at all (empty, binary, no header fields)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Hard caps applied before and during the parse. Defaults suit a CRM inbox."""

    # What each cap stops: docs/reliability.md S-26 and P-01..P-03.
    max_size: int = 25 * 1024 * 1024  # bytes of raw message parsed; beyond: too_large
    max_header_bytes: int = 256 * 1024  # top-level header block (P-03: 1 MB of headers)
    max_header_fields: int = 1000  # top-level fields kept (P-03: 10,000 Received lines)
    max_field_bytes: int = 64 * 1024  # one unfolded field before decoding (10 KB subjects fit)
    max_depth: int = 50  # MIME nesting (P-01: 3,000 levels -> RecursionError in stdlib)
    max_parts: int = 1000  # MIME parts (P-02: 100,000 parts -> 17 s in stdlib)
    max_addresses: int = 200  # per address header (P-03: 16,000 addresses -> 4 s)
    max_references: int = 100  # References ids kept: the root and the most recent ones
    max_message_id: int = 255  # longer ids are garbage, not truncated (truncation collides)
    max_subject: int = 1000  # inbox.Message.subject max_length
    max_name: int = 500  # display names, MessageAddress.name max_length
    max_filename: int = 255
    max_stored_header: int = 2048  # each value in ParsedMessage.headers
    max_body_chars: int = 10_000_000  # each of text_body / html_body
    max_defects: int = 50
    snippet_length: int = 200


DEFAULT_LIMITS = Limits()

Address = tuple[str, str]  # (display name, normalised address)


@dataclass
class ParsedAttachment:
    """A part that is not body text: a file, an inline image, a calendar invite, a DSN report,
    a forwarded message (message/rfc822, the whole inner message as `payload`)."""

    filename: str  # safe to show and to offer as a download name
    original_filename: str  # as sent (decoded), for the record; never use it as a path
    content_type: str
    content_id: str  # without angle brackets; '' when none
    is_inline: bool
    payload: bytes
    size: int


@dataclass
class ParsedMessage:
    """Everything ingest stores about a message except its raw bytes (kept by ingest).

    Ids carry no angle brackets and are '' when missing or unusable. Addresses are normalised
    by crm.normalize (lower case, IDNA); names are display strings. `text_body`/`html_body`
    are the concatenated inline text/plain and text/html parts (those of a forwarded message
    only when the message has none of its own), decoded to Unicode, line ends `\n`, *not*
    sanitised. `headers` holds a small useful set (list-id, auto-submitted, precedence,
    authentication-results...), lower-case names, first value, capped; authentication-results
    is a list of every such header, topmost first. `defects` says in words
    what was repaired or dropped.
    """

    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_name: str = ""
    from_address: str = ""
    sender: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    date: datetime | None = None
    date_from_header: bool = False  # False: `date` is internal_date (or None)
    text_body: str = ""
    html_body: str = ""
    snippet: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    headers: dict[str, str | list[str]] = field(default_factory=dict)
    is_auto_reply: bool = False
    is_bounce: bool = False
    is_list: bool = False
    defects: list[str] = field(default_factory=list)
    truncated: bool = False  # some of the body was not parsed (a cap, or too_large)
    too_large: bool = False  # raw size over Limits.max_size
    backend: str = ""  # which MIME backend built the tree: "fast-mail-parser", "stdlib", "none"

    @property
    def has_attachments(self) -> bool:
        return any(not a.is_inline for a in self.attachments)

    @property
    def inline_images(self) -> dict[str, ParsedAttachment]:
        """cid -> part, for resolving `cid:` URLs within this message only
        (docs/reliability.md X-12)."""
        return {
            a.content_id: a
            for a in self.attachments
            if a.content_id and a.content_type.startswith("image/")
        }

    @property
    def addresses(self) -> list[tuple[str, str, str]]:
        """(role, name, address) for every address, the From first (MessageAddress rows)."""
        rows = [("from", self.from_name, self.from_address)] if self.from_address else []
        for role in ("sender", "reply_to", "to", "cc", "bcc"):
            rows.extend((role, name, address) for name, address in getattr(self, role))
        return rows


# --------------------------------------------------------------------------------------------
# Text cleaning

# C0/C1 controls (CR/LF/TAB handled first), DEL, bidi embeddings/overrides/isolates/marks, the
# Arabic letter mark, BOM/ZWNBSP: docs/reliability.md P-06 and X-14 (T1036.002 right-to-left
# override).
_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_WHITESPACE = re.compile(r"\s+")
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str, cap: int) -> str:
    """One display line: CR/LF/TAB -> space, controls and bidi removed, runs collapsed, capped."""
    if not value:
        return ""
    if _SURROGATES.search(value):
        value = _unsurrogate(value)
    value = _CONTROLS.sub("", value)
    value = _WHITESPACE.sub(" ", value).strip()
    return value[:cap].rstrip()


def _unsurrogate(value: str) -> str:
    """Undo surrogateescape (stdlib email keeps raw 8-bit header bytes that way)."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", value)
    return _decode_raw_header(raw)


_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_FILENAME_FORBIDDEN = re.compile(r'[<>:"/\\|?*]')


def clean_filename(value: str, *, content_type: str = "", cap: int = 255) -> str:
    """A name safe to show and to offer as a download: no path, no controls, no bidi tricks.

    `../../etc/passwd` -> `passwd`; `invoice\\u202Efdp.exe` -> `invoicefdp.exe`
    (docs/reliability.md X-14); `CON` -> `_CON`; quotes/CR/LF/NUL gone; 300 characters -> capped
    with the extension kept.
    """
    name = clean_text(value or "", 10_000)
    name = re.split(r"[/\\]", name)[-1]  # path parts from either OS
    name = _FILENAME_FORBIDDEN.sub("_", name).strip(" .")
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    if len(name) > cap:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: cap - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:cap].rstrip(" .")
    if not name:
        ext = mimetypes.guess_extension(content_type or "", strict=False) or ".bin"
        name = "attachment" + ext
    return name


# --------------------------------------------------------------------------------------------
# Charsets

# Labels seen in the wild that Python does not know, or knows under a worse name. Latin-1 and
# US-ASCII become windows-1252 as browsers do (WHATWG Encoding), because 0x80-0x9F in real mail
# means cp1252 punctuation, never C1 controls. GB2312/GBK -> GB18030 (a superset).
_CHARSET_ALIASES = {
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso8859-8",
}
# Codecs whose output is ASCII-looking bytes, so "is it ASCII?" cannot short-cut them.
# UTF-16/32 belong here too: their NUL bytes are ASCII.
_SEVEN_BIT_CODECS = {
    "utf-7",
    "iso2022_jp",
    "iso2022_jp_ext",
    "iso2022_jp_2",
    "iso2022_kr",
    "hz",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "utf-32-le",
    "utf-32-be",
}
_LEGACY_SINGLE_BYTE = {"cp1252", "ascii", "iso8859-15", "latin-1"}
_LABEL_JUNK = re.compile(r"[^a-z0-9_.:+-]")


@lru_cache(maxsize=512)
def _codec(label: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None when it is unknown or junk.

    Tolerates quoting damage (`utf-8"`, `'utf-8'`), RFC 2231 language suffixes (`utf-8*en`)
    and case. Refuses codecs that are not text encodings (base64, rot13...).
    """
    if not label:
        return None
    name = label.strip().strip("\"' ").lower().split("*", 1)[0]
    name = _LABEL_JUNK.sub("", name)
    if not name or len(name) > 40:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return _CHARSET_ALIASES.get(info.name, info.name)


def _detect(payload: bytes) -> str | None:
    """charset-normalizer's best guess on a bounded sample (it is the slow path)."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(payload[:65536], steps=5, chunk_size=512).best()
    except Exception:  # a detector bug must not lose the message
        return None
    return _codec(best.encoding) if best is not None else None


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,400}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""", re.I
)


def decode_payload(
    payload: bytes, declared: str | None, *, is_html: bool = False, defects: list[str] | None = None
) -> str:
    """Bytes of a text part -> str, once, whatever the label says (docs/reliability.md P-05, X-10).

    Order: a BOM (it cannot be accidental); the MIME label; for HTML the `<meta charset>`;
    valid UTF-8; charset-normalizer; windows-1252 with replacement characters. A legacy
    single-byte label on bytes that are valid non-ASCII UTF-8 is taken as mislabelled UTF-8:
    real Latin-1 prose is practically never valid UTF-8, while the reverse mistake is common.
    """
    if not payload:
        return ""
    codec = _codec(declared)
    if declared and codec is None and defects is not None:
        defects.append(f"unknown charset label {declared[:40]!r}")
    if payload.isascii() and codec not in _SEVEN_BIT_CODECS:
        if codec is None and is_html:
            meta = _meta_codec(payload)
            if meta in _SEVEN_BIT_CODECS:
                codec = meta
        if codec not in _SEVEN_BIT_CODECS:
            return payload.decode("ascii")
    candidates: list[str] = []
    for bom, name in _BOMS:
        if payload.startswith(bom):
            candidates.append(name)
            break
    if codec in _LEGACY_SINGLE_BYTE:
        candidates.append("utf-8")
    if codec:
        candidates.append(codec)
    if is_html:
        meta = _meta_codec(payload)
        if meta:
            candidates.append(meta)
    if codec not in _SEVEN_BIT_CODECS or not payload.isascii():
        candidates.append("utf-8")  # (ASCII-only ISO-2022/UTF-7 text is never UTF-8 instead)
    for name in dict.fromkeys(candidates):
        try:
            text = payload.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        if defects is not None and codec and name != codec:
            defects.append(f"charset {declared!r} did not fit; decoded as {name}")
        if name == "utf-7":  # Python's UTF-7 decoder lets lone surrogates through
            text = _SURROGATES.sub("\ufffd", text)
        return text
    if codec in _SEVEN_BIT_CODECS and payload.isascii():
        # A stateful 7-bit encoding with one bad escape (docs/reliability.md X-10: ISO-2022-JP
        # escapes that hide markup from byte-level filters): decode the rest the way it was
        # declared.
        if defects is not None:
            defects.append(f"charset {declared!r}: invalid sequences replaced")
        return _SURROGATES.sub("\ufffd", payload.decode(codec, "replace"))
    # Mostly valid UTF-8 with a few stray bytes: keep the UTF-8 and mark the strays.
    sample = payload[:65536].decode("utf-8", "replace")
    bad = sample.count("\ufffd")
    non_ascii = sum(1 for ch in sample if ch > "\x7f")
    if non_ascii - bad > bad * 4:
        if defects is not None:
            defects.append(f"charset {declared!r}: invalid UTF-8 bytes replaced")
        return payload.decode("utf-8", "replace")
    # Detectors guess wildly on a handful of bytes; windows-1252 is the likeliest sender then.
    guess = (_detect(payload) if bad >= 16 else None) or "cp1252"
    if defects is not None:
        defects.append(f"charset {declared!r} did not decode; detected {guess}")
    if guess == "cp1252":
        # UTF-8 and Windows-1252 pasted into one body (a UTF-8 signature under Latin text):
        # every valid UTF-8 sequence is UTF-8, every other byte windows-1252. Real 1252 prose
        # practically never forms valid multi-byte UTF-8, so this loses nothing either way.
        return payload.decode("utf-8", "relay-cp1252")
    try:
        return payload.decode(guess, "replace")
    except LookupError:
        return payload.decode("cp1252", "replace")


def _cp1252_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start : error.end].decode("cp1252", "replace"), error.end


codecs.register_error("relay-cp1252", _cp1252_bytes)


def _meta_codec(payload: bytes) -> str | None:
    match = _META_CHARSET.search(payload, 0, 4096)
    return _codec(match.group(1).decode("ascii")) if match else None


def _decode_raw_header(value: bytes, hint: str | None = None) -> str:
    """Raw 8-bit header bytes (RFC 6532 allows only UTF-8; older MUAs send their locale's).

    ASCII; else UTF-8; else `hint`, the charset the message declares for its text (the same
    MUA wrote both); else a detector guess for long values; else windows-1252. Detectors are
    wrong more often than right on a dozen bytes (Shift_JIS and GB18030 names came out as
    Korean in our trials), hence the hint first and the length floor.
    """
    if value.isascii():
        return value.decode("ascii")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if hint:
        try:
            return value.decode(hint)
        except (UnicodeDecodeError, LookupError):
            pass
    guess = _detect(value) if len(value) >= 64 else None
    return value.decode(guess or "cp1252", "replace")


_RAW_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)


def _charset_hint(raw: bytes) -> str | None:
    match = _RAW_CHARSET.search(raw, 0, 65536)
    codec = _codec(match.group(1).decode("ascii")) if match else None
    return None if codec in (None, "ascii", "utf-8") else codec


# RFC 2047 encoded-word. Lenient where senders are: spaces inside Q text, lower-case b/q, any
# label length; the charset may carry an RFC 2231 language (`utf-8*de`).
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _word_bytes(encoding: str, text: str, codec: str | None = None) -> bytes:
    if text.isascii():
        data = text.encode("ascii")
    else:  # raw 8-bit inside the word (old Outlook): back to the bytes its charset names
        try:
            data = text.encode(codec or "utf-8")
        except (UnicodeEncodeError, LookupError):
            data = text.encode("utf-8", "replace")
    if encoding in "bB":
        data = _B64_JUNK.sub(b"", data)
        data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    return binascii.a2b_qp(data, header=True)


def decode_header_text(value: str) -> str:
    """Decode RFC 2047 encoded-words in a header value; leaves everything else as it is.

    Adjacent encoded-words in the same charset are joined *before* decoding, because senders
    split multi-byte characters across words (common in Japanese and Chinese subjects), and
    whitespace between encoded-words is dropped (RFC 2047 section 6.2).
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(decode_payload(b"".join(pending), pending_charset or "utf-8"))
        pending, pending_charset = [], None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        if gap and (not pending or gap.strip()):
            flush()
            out.append(gap)
        charset, encoding, text = match.groups()
        try:
            data = _word_bytes(encoding, text, _codec(charset))
        except (binascii.Error, ValueError):
            flush()
            out.append(match.group(0))  # undecodable: show it as sent
            pos = match.end()
            continue
        charset_key = _codec(charset) or charset.lower()
        if pending and charset_key != pending_charset:
            flush()
        pending.append(data)
        pending_charset = charset_key
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Top-level header block (ours, not the backend's: hard caps first, docs/reliability.md P-03)

_FIELD_NAME = re.compile(rb"^([!-9;-~]{1,200})[ \t]*:")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_MAIL_FIELDS = frozenset(
    (
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"received",
        b"mime-version",
        b"content-type",
        b"sender",
        b"return-path",
        b"reply-to",
        b"delivered-to",
        b"in-reply-to",
        b"references",
        b"x-mailer",
        b"dkim-signature",
        b"bcc",
    )
)
_KEY_FIELDS = frozenset(
    (
        b"from",
        b"to",
        b"cc",
        b"bcc",
        b"subject",
        b"date",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"reply-to",
        b"sender",
        b"content-type",
        b"content-transfer-encoding",
        b"auto-submitted",
        b"precedence",
        b"list-id",
        b"list-unsubscribe",
    )
)
_KEY_FIELD_START = re.compile(
    rb"^(" + b"|".join(sorted(_KEY_FIELDS)) + rb")[ \t]*:", re.IGNORECASE | re.MULTILINE
)
# Fields the MIME backend needs to build the top of the tree; all others stay with us.
_MIME_FIELDS = frozenset(
    (b"content-type", b"content-transfer-encoding", b"content-disposition", b"content-id")
)
_KEPT_HEADERS: tuple[str, ...] = (
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-post",
    "list-help",
    "auto-submitted",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "x-failed-recipients",
    "authentication-results",
    "arc-authentication-results",
    "received-spf",
    "return-path",
    "delivered-to",
    "x-original-to",
    "x-mailer",
    "user-agent",
    "content-language",
    "importance",
    "x-priority",
    "x-spam-flag",
    "x-spam-status",
    "thread-index",
    "thread-topic",
    "x-ms-exchange-generated-message-source",
    "feedback-id",
)
# Authentication-Results headers kept (docs/reliability.md C-17): our servers' are on top.
_MAX_AUTHENTICATION_RESULTS = 16
# Fields parse_message reads; the others are only counted (the raw source keeps them all).
_USED_FIELDS = _KEY_FIELDS | _MIME_FIELDS | frozenset(name.encode() for name in _KEPT_HEADERS)


@dataclass
class _HeaderBlock:
    fields: dict[bytes, list[str]]  # lower-case name -> unfolded decoded values, in order
    mime_block: bytes  # the MIME fields as sent, to hand to the backend
    body_offset: int
    newline: bytes


# One header field, folded lines included (RFC 5322 2.2.3). Values may hold raw 8-bit bytes.
_FIELD = re.compile(rb"([!-9;-~]{1,200})[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)(?:\n|\Z)")


def _read_header_block(raw: bytes, limits: Limits, defects: list[str]) -> _HeaderBlock:
    start = 0
    if raw.startswith(b"From "):  # mbox separator line left on by an import
        nl = raw.find(b"\n")
        start = nl + 1 if nl >= 0 else len(raw)
    if raw[start : start + 1] in (b" ", b"\t"):
        raise MessageUnparseable("starts with a continuation line, not a header field")
    # The block ends at the first empty line; read at most max_header_bytes of it
    # (docs/reliability.md P-03).
    limit = start + limits.max_header_bytes
    blank = _BLANK_LINE.search(raw, start, limit + 2)
    block_end = blank.start() + 1 if blank else min(len(raw), limit)
    block = raw[start:block_end]
    with_nul = None  # the block as it came, when its NULs were blanked for the structure
    if b"\x00" in block:
        # Blanked, not deleted, to find the fields: offsets into `raw` must stay right for the
        # body start, and a NUL at a line's start keeps meaning what a blank does there. The
        # values are then taken from the block as it came without their NULs, as every other
        # control is dropped: "in<NUL>voice" is "invoice", not "in voice".
        defects.append("NUL bytes removed from the header block")
        with_nul = block
        block = block.replace(b"\x00", b" ")
    fields: dict[bytes, list[bytes]] = {}
    seen: set[bytes] = set()  # names of the fields we do not keep, for the is-it-mail check
    mime_fields: list[bytes] = []
    count = dropped = 0

    def add(match: re.Match[bytes], source: bytes | None = None) -> None:
        """One field; `source`: the string the match ran on before its NULs were blanked."""
        nonlocal count, dropped
        name = match.group(1).lower()
        if count >= limits.max_header_fields and (name not in _KEY_FIELDS or name in fields):
            dropped += 1
            return
        count += 1
        if name not in _USED_FIELDS:  # Received, DKIM-Signature...: counted, kept raw by ingest
            seen.add(name)
            return
        value, whole = match.group(2), match.group(0)
        if source is not None:
            value = source[match.start(2) : match.end(2)].replace(b"\x00", b"")
            whole = source[match.start(0) : match.end(0)].replace(b"\x00", b"")
        if name in _MIME_FIELDS:
            mime_fields.append(whole.rstrip(b"\r\n")[: limits.max_field_bytes])
        if len(value) > limits.max_field_bytes:
            defects.append(f"{name.decode()} field cut to {limits.max_field_bytes} bytes")
            value = value[: limits.max_field_bytes]
        if b"\n" in value:  # unfold (RFC 5322 2.2.3): drop the line breaks, keep the blanks
            value = value.replace(b"\r\n", b"").replace(b"\n", b"")
        fields.setdefault(name, []).append(value.strip())

    pos = 0
    match_field = _FIELD.match
    while pos < len(block):
        match = match_field(block, pos)
        if match is None:
            break
        pos = match.end()
        add(match, with_nul)
    flood = blank is None and block_end - start >= limits.max_header_bytes
    if flood:
        # Header flood (docs/reliability.md P-03): 10,000 Received lines or a 16,000-address To
        # ahead of the fields that matter. Skip the rest without parsing it, except the few key
        # fields, found by one C-speed regex scan.
        defects.append(f"header block over {limits.max_header_bytes} bytes; the rest skimmed")
        rest = _BLANK_LINE.search(raw, block_end)
        rest_end = rest.start() + 1 if rest else len(raw)
        for key in _KEY_FIELD_START.finditer(raw, block_end, rest_end):
            name = key.group(1).lower()
            if name not in fields:
                match = _FIELD.match(raw[key.start() : key.start() + limits.max_field_bytes])
                if match is not None:
                    add(match)
        body_offset = rest.end() if rest else len(raw)
    if not fields and not seen:
        raise MessageUnparseable("no header fields: this is not an email message")
    if not any(name in fields or name in seen for name in _MAIL_FIELDS):
        raise MessageUnparseable("no message header fields (From, To, Date, Subject...)")
    if dropped:
        defects.append(f"{dropped} header fields over the cap of {limits.max_header_fields}")
    if flood:
        pass  # body_offset found above, past the skimmed rest
    elif blank is not None and pos >= len(block) - 1:
        body_offset = blank.end()
    elif blank is None and pos >= len(block):
        body_offset = len(raw)  # headers only, no body
    else:
        # A line that is neither a field nor a continuation: RFC 5322 has no such thing, so
        # the body started without its blank line. Treat it as the body.
        defects.append("header block ended without a blank line")
        body_offset = start + pos
    newline = b"\r\n" if block.find(b"\r\n", 0, 4096) >= 0 else b"\n"
    mime_block = b"".join(line + newline for line in mime_fields)
    hint = None
    if not all(value.isascii() for values in fields.values() for value in values):
        hint = _charset_hint(raw)
    decoded = {
        name: [_decode_raw_header(value, hint) for value in values]
        for name, values in fields.items()
    }
    return _HeaderBlock(decoded, mime_block, body_offset, newline)


def _first(fields: dict[bytes, list[str]], name: bytes) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


# --------------------------------------------------------------------------------------------
# Addresses, ids, dates

_SIMPLE_ADDRESS = re.compile(
    r'\s*(?:"((?:[^"\\]|\\.)*)"|([^"<>()\\,;:@]*?))\s*<\s*([^<>\s"()]+@[^<>\s"()]+)\s*>\s*'
    r'|\s*([^<>\s"(),;:]+@[^<>\s"(),;:]+)\s*'
)
_ANY_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")


@lru_cache(maxsize=8192)
def _normalise(address: str) -> str | None:
    return try_normalize_email(address)


_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_ADDRESS_ITEMS = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^,"])+')


def _split_addresses(value: str, cap: int) -> list[tuple[str, str]]:
    """Fast path for the common shapes; stdlib getaddresses for comments, groups and oddities."""
    pairs: list[tuple[str, str]] = []
    # Parentheses and colons inside a quoted name (`"Maya (Support)" <m@x>`) are no comment
    # and no group: the fast path reads those too.
    bare = _QUOTED_STRING.sub('""', value) if '"' in value else value
    if "(" not in bare and ":" not in bare:
        for item in _ADDRESS_ITEMS.findall(value):
            if not item.strip():
                continue
            match = _SIMPLE_ADDRESS.fullmatch(item)
            if match is None:
                pairs = []
                break
            quoted, plain, angled, bare = match.groups()
            name = (quoted or plain or "").strip()
            if quoted and "\\" in quoted:
                name = re.sub(r"\\(.)", r"\1", name)
            pairs.append((name, angled or bare))
            if len(pairs) >= cap:
                return pairs
        else:
            return pairs
    try:
        pairs = [(n, a) for n, a in getaddresses([value]) if a]
        if "(" in bare and "<" in bare:  # a comment beside a name and an <address>
            pairs = _phrase_names(value, pairs)
    except Exception:  # RecursionError on thousands of ':' (a To of encoded words), and kin
        pairs = []
    if not pairs and "@" in value:  # getaddresses gives up on some garbage; salvage addresses
        pairs = [("", a) for a in _ANY_ADDRESS.findall(value)]
    return pairs


_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|\((?:[^()\\]|\\.)*\)')


def _strip_comments(value: str) -> str:
    """`value` without RFC 5322 comments (nested ones too); quoted strings are kept."""
    for _ in range(10):  # one nesting level a round; deeper than that is not a name
        stripped = _COMMENT.sub(lambda m: m.group(0) if m.group(0)[0] == '"' else " ", value)
        if stripped == value:
            break
        value = stripped
    return value


def _phrase_names(value: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Comments are no part of a display name (RFC 5322 3.4): `Pete(A wonderful chap) <p@x>`
    is Pete. Only an address with no name at all is named by its comment, the old
    `jdoe@example.com (John Doe)` form that every client shows as John Doe."""
    plain = [(n, a) for n, a in getaddresses([_strip_comments(value)]) if a]
    if len(plain) != len(pairs):
        return pairs
    return [(p_name or name, addr) for (name, addr), (p_name, _) in zip(pairs, plain, strict=True)]


def _addresses(
    fields: dict[bytes, list[str]], name: bytes, limits: Limits, defects: list[str]
) -> list[Address]:
    values = fields.get(name)
    if not values:
        return []
    value = ", ".join(values)
    cap = limits.max_addresses
    # Cut the string itself before any structured parse: getaddresses is superlinear on huge
    # lists (gh-136063, docs/reliability.md P-03). Commas inside quoted names make us keep 2x.
    if value.count(",") > cap * 2:
        cut = -1
        for _ in range(cap * 2):
            cut = value.index(",", cut + 1)
        value = value[:cut]
        defects.append(f"{name.decode()}: more than {cap} addresses; kept the first {cap}")
    result: list[Address] = []
    seen: set[str] = set()
    invalid = 0
    for display, address in _split_addresses(value, cap * 2):
        normalised = _normalise(address.strip())
        if normalised is None:
            invalid += 1
            continue
        if normalised in seen:
            continue
        seen.add(normalised)
        display = clean_text(decode_header_text(display), limits.max_name)
        result.append((display, normalised))
        if len(result) >= cap:
            break
    if invalid and not result:
        # `Big Bug bb@bug.com`, `tim@x.com concierge@x.com`: no address parses, yet there are
        # addresses in plain sight; a reader sees them, so do we (their names are lost).
        for address in _ANY_ADDRESS.findall(value):
            normalised = _normalise(address)
            if normalised and normalised not in seen and len(result) < cap:
                seen.add(normalised)
                result.append(("", normalised))
    if invalid:
        defects.append(f"{name.decode()}: {invalid} invalid address(es) ignored")
    return result


_ID_TOKEN = re.compile(r"<([^<>]*)>")
_ID_STRIP = re.compile("[\\s\x00-\x1f\x7f-\x9f]")
_ID_BAD = re.compile('[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufffd<>"\ud800-\udfff]')


def _clean_id(token: str, limits: Limits) -> str:
    """An id without brackets, whitespace or controls (folding leaves spaces inside some);
    '' for one that is empty, too long, or carries bidi controls or undecodable bytes: such an
    id is garbage or forged, and truncating a long one would make it collide with another."""
    token = _ID_STRIP.sub("", token)
    if not token or len(token) > limits.max_message_id or _ID_BAD.search(token):
        return ""
    return token


def _message_id(value: str | None, limits: Limits) -> str:
    if value is None:
        return ""
    value = value.strip()
    match = _ID_TOKEN.search(value)
    if match is None:  # no brackets: some MTAs do that; take it only if it is one token
        return "" if _ID_STRIP.search(value) else _clean_id(value, limits)
    return _clean_id(match.group(1), limits)


def _references(value: str | None, limits: Limits) -> list[str]:
    if not value:
        return []
    tokens = _ID_TOKEN.findall(value) if "<" in value else value.split()
    ids = [token for token in (_clean_id(t, limits) for t in tokens) if token]
    ids = list(dict.fromkeys(ids))
    if len(ids) > limits.max_references:
        # Threading needs the root and the most recent ancestors (RFC 5322 3.6.4).
        ids = ids[:1] + ids[-(limits.max_references - 1) :]
    return ids


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# RFC 5322 3.3: a year is 1900 or later. Older real dates exist (archives, RFC 5322's own 1969
# examples, docs/fidelity.md); the Unix epoch is no limit of mail.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)


def _parse_date(value: str | None, internal_date: datetime | None) -> datetime | None:
    """The Date header if it is a sane instant; None otherwise (docs/reliability.md I-06)."""
    if not value:
        return None
    try:
        parts = parsedate_tz(value[:200])
    except Exception:  # parsedate_tz raises on some garbage (bpo-45239 and friends)
        return None
    if not parts:
        return None
    offset = parts[9] or 0
    if abs(offset) > 14 * 3600 or offset % 60:  # +2500 and other impossible zones
        return None
    try:
        stamp = datetime(*parts[:6], tzinfo=timezone(timedelta(seconds=offset)))
    except (ValueError, OverflowError):
        return None
    stamp = stamp.astimezone(UTC)
    latest = max(datetime.now(UTC), internal_date or _EPOCH) + timedelta(days=2)
    if stamp < _EARLIEST or stamp > latest:  # year 9999, year 0: absurd, not merely skewed
        return None
    return stamp


# --------------------------------------------------------------------------------------------
# Pre-scan of the body: nesting depth and part count before any parser sees it
# (docs/reliability.md P-01, P-02)

_STRUCTURE = re.compile(
    rb'(?i)boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))'
    rb"|^--([^\r\n]{1,200}?)[ \t]*\r?$"
    rb"|^content-type:[ \t]*message/(?:rfc822|global)",
    re.MULTILINE,
)


def _boundary_of(content_type: str) -> str | None:
    match = re.search(r'(?i)boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;"]{1,200}))', content_type)
    if match:
        return match.group(1).rstrip() if match.group(1) else match.group(2).strip()
    extended = _BOUNDARY_2231.search(content_type)
    if extended:  # RFC 2231 `boundary*="us-ascii''abc"`: charset and language, %-escapes
        return unquote(extended.group(1) or extended.group(2)).strip() or None
    return None


_BOUNDARY_2231 = re.compile(
    r"""(?i)boundary\*0?\*?\s*=\s*"""
    r"""(?:"(?:[^"']*'[^"']*')?([^"]{1,200})"|(?:[^"'\s;]*'[^'\s;]*')?([^\s;"]{1,200}))"""
)
_PLAIN_BOUNDARY = re.compile(r"(?i);\s*boundary\s*=")
_CONTENT_TYPE_FIELD = re.compile(rb"(?im)^content-type:[^\n]*\n?(?:[ \t][^\n]*\n?)*")


def _plain_content_type(mime_block: bytes, content_type: str, boundary: str, nl: bytes) -> bytes:
    """`mime_block` with its Content-Type as `type/subtype; boundary="..."`, nothing else."""
    media = _MEDIA_TYPE_IN.search(content_type)
    field = f'Content-Type: {media.group(0) if media else "multipart/mixed"}; boundary="{boundary}"'
    return _CONTENT_TYPE_FIELD.sub(lambda _: field.encode("utf-8", "replace") + nl, mime_block, 1)


_MEDIA_TYPE_IN = re.compile(r"[!#$%&'*+.^_`{|}~\w-]+/[!#$%&'*+.^_`{|}~\w-]+")


def _has_delimiter(body: bytes, boundary: str) -> bool:
    """Whether a `--boundary` line opens a part anywhere (RFC 2046 5.1.1: alone on its line,
    blanks after it allowed). Without one there are no parts; the text is all there is."""
    mark = b"--" + boundary.encode("utf-8", "replace")
    at = body.find(mark)
    while at >= 0:  # a find loop: a regex per boundary would be compiled per message
        end = at + len(mark)
        if at == 0 or body[at - 1] == 0x0A:
            rest = body[end : end + 200].lstrip(b" \t")
            if not rest or rest[:1] == b"\n" or rest[:2] == b"\r\n":
                return True
        at = body.find(mark, end)
    return False


def _safe_prefix(body: bytes, top_boundary: str | None, limits: Limits) -> tuple[int, str]:
    """Length of the body the MIME parser may see, and why it is shorter ('' when whole)."""
    # Cheap upper bounds first: almost all mail stops here in a few microseconds.
    declared = body.count(b"oundary") + (1 if top_boundary else 0)
    delimiters = body.count(b"\n--")
    nested_messages = body.count(b"rfc822") + body.count(b"message/global")
    if (
        declared <= limits.max_depth
        and delimiters <= limits.max_parts
        and nested_messages <= limits.max_depth
    ):
        return len(body), ""
    # The stack holds the open boundaries and, as None, the message/rfc822 parts opened since:
    # a delimiter of an outer boundary closes everything above it, so siblings (60 forwarded
    # messages side by side) do not add up, while a chain of messages inside messages does.
    stack: list[bytes | None] = [top_boundary.encode("utf-8", "replace")] if top_boundary else []
    parts = 0
    last_delimiter = 0
    for match in _STRUCTURE.finditer(body):
        declared_quoted, declared_plain, delimiter = match.group(1, 2, 3)
        if delimiter is not None:
            closing = delimiter.endswith(b"--")
            name = delimiter[:-2] if closing else delimiter
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth] == name:
                    del stack[depth + 1 :]
                    if closing:
                        stack.pop()
                    else:
                        parts += 1
                        if parts > limits.max_parts:
                            return match.start(), f"more than {limits.max_parts} MIME parts"
                        last_delimiter = match.start()
                    break
            continue
        if declared_quoted is not None or declared_plain is not None:
            stack.append((declared_quoted or declared_plain).strip())
        else:
            stack.append(None)
        if len(stack) > limits.max_depth:
            cut = last_delimiter if stack[-1] is not None else match.start()
            return cut, f"MIME nesting deeper than {limits.max_depth}"
    return len(body), ""


# --------------------------------------------------------------------------------------------
# MIME tree backends -> flat list of leaves


@dataclass
class _Leaf:
    content_type: str
    charset: str | None
    disposition: str  # '' | 'inline' | 'attachment' | other token
    filename: str
    content_id: str
    payload: bytes
    nested: bool  # inside a message/rfc822 (a forwarded message), not this message's own body
    is_message: bool = False


_PARAM_CHARSET = re.compile(r'(?i)charset\s*=\s*"?\s*([^";\s]*)')


def _charset_param(content_type: str) -> str | None:
    match = _PARAM_CHARSET.search(content_type)
    return match.group(1) if match else None


def _content_id(value: str | None) -> str:
    if not value:
        return ""
    return clean_text(value, 500).strip("<> ")


def _lower_get(headers: dict[str, list[str]], name: str) -> str:
    for key, values in headers.items():
        if key.lower() == name and values:
            return values[0]
    return ""


# RFC 2045 5.1 type/subtype tokens. Anything else (`text`, `<html>`) is a syntax error, and
# RFC 2045 5.2 says to read such a part as text/plain.
_MIME_TYPE = re.compile(r"[!#$%&'*+.^_`{|}~a-z0-9-]+/[!#$%&'*+.^_`{|}~a-z0-9-]+")
_UUENCODE = frozenset(("x-uuencode", "uuencode", "x-uue", "uue"))


def _media_type(value: str) -> str:
    """`application/pdf name="x.pdf"` (a lost `;`) is still a PDF; `text`, `<html>` and
    `text/plain>` are no type at all."""
    value = value.strip().lower()
    match = _MIME_TYPE.match(value)
    if match and (match.end() == len(value) or value[match.end()] in " \t;"):
        return match.group(0)
    return "text/plain"


def _uudecode(data: bytes) -> bytes:
    """x-uuencode transfer encoding (old Netscape and Mac mailers): the lines between `begin`
    and `end`; a damaged line keeps what it can, as the stdlib's decoder does."""
    out: list[bytes] = []
    started = False
    for line in data.splitlines():
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() == b"end":
            break
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            size = (((line[0] - 32) & 63) * 4 + 5) // 3 if line else 0
            try:
                out.append(binascii.a2b_uu(line[:size]))
            except binascii.Error:
                continue
    return b"".join(out) if started else data


def _header_ends_early(headers: dict[str, list[str]], data: bytes) -> bool:
    """fast-mail-parser reads a part's first body line as a header name when the blank line
    after the part's header is missing (`Content-Type: text/plain` then `bar`); the stdlib
    takes that line as the start of the body, as readers do, so it decides such a message."""
    for key, values in headers.items():
        # Only when that line ends the header block: `name="x.zip"` that merely lost its
        # indent, with fields after it, is read right by fast-mail-parser.
        if values == [""] and re.search(
            rb"(?m)^" + re.escape(key.encode("utf-8", "replace")) + rb"\r?\n\r?\n", data
        ):
            return True
    return False


def _leaves_fast(data: bytes, limits: Limits) -> list[_Leaf] | None:
    """Leaves in document order (a DSN marks itself), or None when the tree is over the caps.

    The walk stops at the first node past a cap, so a 100,000-part tree costs its parse in
    Rust plus a thousand Python steps, not a hundred thousand."""
    root = _fmp.parse_email_tree(data)
    leaves: list[_Leaf] = []
    nodes = 0
    stack = [(root, False, 1)]
    while stack:
        node, nested, depth = stack.pop()
        nodes += 1
        if depth > limits.max_depth or nodes > limits.max_parts:
            return None
        ctype = _media_type(node.content_type or "text/plain")
        if ctype.startswith("multipart/"):
            stack.extend((child, nested, depth + 1) for child in reversed(node.children))
            continue
        header = encoding = ""
        suspect = False
        for key, values in node.headers.items():  # a new dict at every access: one pass
            lower = key.lower()
            if lower == "content-type":
                header = header or (values[0] if values else "")
            elif lower == "content-transfer-encoding":
                encoding = encoding or (values[0] if values else "")
            elif values == [""]:
                suspect = True
        if suspect and _header_ends_early(node.headers, data):
            raise ValueError("a part's header block ends without a blank line")
        payload = node.content or b""
        if encoding and encoding.strip().lower() in _UUENCODE:
            payload = _uudecode(payload)
        filename = node.filename or ""
        leaf = _Leaf(
            content_type=ctype,
            charset=_charset_param(header),
            disposition=(node.disposition or "").strip().lower(),
            filename=decode_header_text(filename) if "=?" in filename else filename,
            content_id=_content_id(node.content_id),
            payload=payload,
            nested=nested,
            is_message=bool(node.is_message) or ctype in _MESSAGE_TYPES,
        )
        leaves.append(leaf)
        if node.is_message:
            stack.extend((child, True, depth + 1) for child in reversed(node.children))
    return leaves


_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=\s]")


def _stdlib_payload(part: Message, defects: list[str]) -> bytes:
    """Transfer-decoded bytes; a part that only claims to be base64 is kept as sent
    (docs/reliability.md P-04)."""
    if str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        encoded = part.get_payload(decode=False)
        if isinstance(encoded, str):
            sample = encoded[:4096]
            junk = len(_NOT_BASE64.findall(sample))
            if junk > 2 and junk * 50 > len(sample):  # 1 or 2 strays: damaged base64
                defects.append(f"{part.get_content_type()} part declared base64 but is not")
                return encoded.encode("ascii", "surrogateescape")
    return part.get_payload(decode=True) or b""


# The MIME fields whose parameters the stdlib parses. Its parameter splitter
# (email.message._parseparam) is quadratic: 5,000 crafted parameters cost 0.5 s, a megabyte of
# them minutes (docs/reliability.md P-07, bpo-37461's family). No honest field needs 4 KB.
_PARAM_FIELD = re.compile(
    rb"^(content-(?:type|disposition)[ \t]*:)([^\n]*(?:\n[ \t][^\n]*)*)", re.I | re.M
)
_MAX_PARAM_FIELD = 4096


def _tame_param_fields(data: bytes, defects: list[str]) -> bytes:
    """`data` with every over-long Content-Type/-Disposition cut at a parameter boundary."""
    if len(data) < _MAX_PARAM_FIELD:
        return data
    cut = 0

    def shorten(match: re.Match[bytes]) -> bytes:
        nonlocal cut
        value = match.group(2)
        if len(value) <= _MAX_PARAM_FIELD:
            return match.group(0)
        cut += 1
        head = value[:_MAX_PARAM_FIELD]
        end = head.rfind(b";")
        head = head[:end] if end > 0 else head
        return match.group(1) + head.replace(b"\r", b"").replace(b"\n", b"")

    tamed = _PARAM_FIELD.sub(shorten, data)
    if cut:
        defects.append(f"{cut} Content-Type/Disposition field(s) over {_MAX_PARAM_FIELD} bytes cut")
    return tamed


class _Raw8BitHeaders(Compat32):
    """compat32 that hands raw 8-bit header bytes back as surrogates, which `_unsurrogate`
    decodes (UTF-8, else the message's charset), where compat32 itself turns them into U+FFFD:
    a part's `filename="ciële.txt"` sent as raw UTF-8 keeps its name."""

    def header_fetch_parse(self, name, value):
        return value if isinstance(value, str) else super().header_fetch_parse(name, value)


_RAW_8BIT = _Raw8BitHeaders()


def _leaves_stdlib(data: bytes) -> tuple[list[_Leaf], list[str]]:
    import email
    import email.policy

    defects: list[str] = []
    root = email.message_from_bytes(_tame_param_fields(data, defects), policy=_RAW_8BIT)
    leaves: list[_Leaf] = []
    stack = [(root, False)]
    while stack:
        part, nested = stack.pop()
        defects.extend(type(d).__name__ for d in part.defects)
        ctype = _media_type(part.get_content_type())
        if ctype.startswith("multipart/"):
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((child, nested) for child in reversed(payload))
            continue
        try:
            leaf, children = _stdlib_leaf(part, ctype, nested, defects)
        except Exception as exc:  # one broken part must not cost the rest of the message
            defects.append(f"{ctype} part unreadable: {type(exc).__name__}")
            continue
        leaves.append(leaf)
        if leaf.is_message and children:
            stack.extend((child, True) for child in reversed(children))
    return leaves, defects


def _stdlib_leaf(
    part: Message, ctype: str, nested: bool, defects: list[str]
) -> tuple[_Leaf, list | None]:
    """One non-multipart part; message/* parts also return their parsed sub-messages."""
    filename = part.get_filename() or ""
    if filename:
        filename = decode_header_text(filename)
    disposition = str(part.get("content-disposition", "")).split(";", 1)[0].strip().lower()
    is_message = ctype in _MESSAGE_TYPES
    children = part.get_payload() if part.is_multipart() else None
    if children is not None:  # compat32 parses message/* into sub-messages
        try:
            payload_bytes = b"\n".join(child.as_bytes() for child in children)
        except Exception:  # regenerating broken input can fail; keep the part, empty
            payload_bytes = b""
            defects.append(f"{ctype} part could not be re-serialised")
    else:
        payload_bytes = _stdlib_payload(part, defects)
    leaf = _Leaf(
        content_type=ctype,
        charset=_unsurrogate(part.get_content_charset() or "") or None,
        disposition=disposition,
        filename=filename,
        content_id=_content_id(part.get("content-id")),
        payload=payload_bytes,
        nested=nested,
        is_message=is_message,
    )
    return leaf, children


# --------------------------------------------------------------------------------------------
# Bodies and snippet


def _snippet(text: str, length: int, *, whole_lines_only: bool = False) -> str | None:
    """The first `length` characters of what the message says. With `whole_lines_only`, None
    unless the line that completes the snippet is followed by another line of `text`: then
    every line used is whole, whatever `text` was cut from (see _html_snippet)."""
    lines = []
    size = 0
    complete = False
    for line in text[: length * 20].splitlines(keepends=whole_lines_only):
        stripped = line.strip()
        if not stripped or stripped.startswith(">"):  # quoted reply: not what this mail says
            continue
        lines.append(stripped)
        size += len(stripped)
        if size > length:
            complete = line.endswith(("\n", "\r"))
            break
    if whole_lines_only and not complete:
        return None
    return clean_text(" ".join(lines), length)


# An HTML-only message's snippet is read from the first 8 KB of its markup when that holds
# enough text (most do): html_to_text of a newsletter's whole 20,000 characters cost more than
# the rest of its parse (bench/sync.py, issue #17).
_HTML_SNIPPET_PREFIX = 8192


def _html_snippet(markup: str, length: int) -> str:
    """_snippet(html_to_text(markup)), read from a prefix of the markup where that gives the
    same answer. The prefix ends just after a tag's `>`, so no tag or entity is cut; html_to_text
    of it is then the text of the whole markup up to the prefix's last line (a hidden element
    still open there drops the rest, as a later closer would have resumed it). A snippet whose
    last line is followed by another one used no line that could differ."""
    if len(markup) > _HTML_SNIPPET_PREFIX:
        cut = markup.rfind(">", 0, _HTML_SNIPPET_PREFIX) + 1
        if cut > 0:
            snippet = _snippet(html_to_text(markup[:cut], cut), length, whole_lines_only=True)
            if snippet is not None:
                return snippet
    return _snippet(html_to_text(markup), length) or ""


# C0 controls other than TAB, LF, FF and CR: NUL breaks PostgreSQL text, ESC and friends have
# no business in a body and can hide markup from filters (docs/reliability.md X-10).
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


# The same controls as bytes: in UTF-8 they only ever occur as themselves (every byte of a
# multi-byte sequence is >= 0x80), so one C-speed translate() of the encoded body finds them.
_BODY_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])


def _needs_cleaning(text: str) -> bool:
    """Whether the body holds a control character or a lone surrogate. A regex scan of a big
    HTML body cost ~0.1 ms a message (bench/sync.py, issue #17); encoding to UTF-8 fails on
    surrogates and is a copy, and bytes.translate() is a table lookup a byte."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return len(data.translate(None, _BODY_CONTROL_BYTES)) != len(data)


def _body_text(text: str, limits: Limits, what: str, defects: list[str]) -> tuple[str, bool]:
    dirty = _needs_cleaning(text)
    if dirty and _BODY_CONTROLS.search(text):
        text = _BODY_CONTROLS.sub("", text)
        defects.append(f"control characters removed from the {what} body")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if dirty and _SURROGATES.search(text):  # PostgreSQL (and UTF-8 itself) cannot hold them
        text = _SURROGATES.sub("\ufffd", text)
    if len(text) > limits.max_body_chars:
        defects.append(f"{what} body cut to {limits.max_body_chars} characters")
        return text[: limits.max_body_chars], True
    return text, False


# --------------------------------------------------------------------------------------------
# The parse


_MESSAGE_TYPES = ("message/rfc822", "message/global")  # RFC 2046 5.2.1, RFC 6532 3.7
_QP_FIELD = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*quoted-printable")


def _qp_with_8bit(mime_block: bytes, body: bytes) -> bool:
    """8-bit bytes after a quoted-printable part starts (cheap, and rare in honest mail)."""
    if _QP_FIELD.search(mime_block):
        return True
    if b"uoted-printable" not in body and b"UOTED-PRINTABLE" not in body:
        return False  # the usual spellings; a byte search instead of a regex over the body
    first = _QP_FIELD.search(body)
    return first is not None and not body[first.end() :].isascii()


_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
# After the pre-scan cut, the Rust tree is bounded by the prefix itself; the leaf cap in
# _fill_parts still applies.
_NO_CAPS = Limits(max_depth=1 << 30, max_parts=1 << 30)
_BOUNCE_SENDERS = ("mailer-daemon@", "postmaster@")
_AUTO_PRECEDENCE = {"auto_reply", "auto-reply"}
_LIST_PRECEDENCE = {"bulk", "list", "junk"}


def parse_message(
    raw: bytes,
    *,
    internal_date: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    backend: str = "auto",
) -> ParsedMessage:
    """Parse one message. Raises only `MessageUnparseable` (input that is not mail at all).

    `internal_date` (IMAP INTERNALDATE, or the file time of an import) stands in for a missing
    or absurd Date header. `backend` is "auto" (fast-mail-parser, stdlib on failure) or
    "stdlib"; it exists for the benchmark and the tests.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MessageUnparseable(f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    head = raw[:65536]
    if b"\n" not in head and b"\r" in head:  # classic Mac OS line ends: bare CR only
        raw = raw.replace(b"\r", b"\n")
    if not raw.strip():
        raise MessageUnparseable("empty message")
    if internal_date is not None and internal_date.tzinfo is None:
        internal_date = internal_date.replace(tzinfo=UTC)
    defects: list[str] = []
    try:
        message = _parse(raw, internal_date, limits, backend, defects)
    except MessageUnparseable:
        raise
    except Exception as exc:  # RecursionError, MemoryError slices, a backend bug: degrade
        defects.append(f"parser failure: {type(exc).__name__}: {str(exc)[:200]}")
        try:
            message = _parse(raw, internal_date, limits, "none", defects)
        except MessageUnparseable:
            raise
        except Exception as again:
            raise MessageUnparseable(
                f"could not read even the headers: {type(again).__name__}: {str(again)[:200]}"
            ) from again
    message.defects = list(dict.fromkeys(message.defects))[: limits.max_defects]
    return message


def _parse(
    raw: bytes,
    internal_date: datetime | None,
    limits: Limits,
    backend: str,
    defects: list[str],
) -> ParsedMessage:
    message = ParsedMessage(defects=defects)
    if len(raw) > limits.max_size:
        message.too_large = message.truncated = True
        defects.append(f"message of {len(raw)} bytes is over the {limits.max_size} byte limit")
    head = _read_header_block(raw[: limits.max_size], limits, defects)
    fields = head.fields

    _fill_headers(message, fields, internal_date, limits, defects)

    body = raw[head.body_offset : limits.max_size]
    content_type = fields.get(b"content-type", [""])[0]
    top_boundary = _boundary_of(content_type) if "multipart" in content_type.lower() else None
    mime_block = head.mime_block
    unsplittable = "multipart without a boundary read as text"
    if top_boundary and not _has_delimiter(body, top_boundary):
        unsplittable = "multipart whose boundary never occurs read as text"
        top_boundary = None
    elif top_boundary and not _PLAIN_BOUNDARY.search(content_type):
        # RFC 2231 `boundary*=`, or `,` or nothing before `boundary=`: forms fast-mail-parser
        # does not read. Hand it the plain form of the same field.
        mime_block = _plain_content_type(mime_block, content_type, top_boundary, head.newline)
    if top_boundary is None and content_type.lower().lstrip().startswith("multipart/"):
        # A multipart with no boundary cannot be split (RFC 2046 5.1.1); read it as text so
        # whatever the sender wrote is not lost.
        defects.append(unsplittable)
        mime_block = _CONTENT_TYPE_FIELD.sub(b"", mime_block)
        mime_block += b"Content-Type: text/plain" + head.newline
    cut_cleanly = True
    if message.too_large:
        # Cut at the last delimiter before the limit so no attachment is kept half-read.
        cut_cleanly = False
        if top_boundary:
            last = body.rfind(b"\n--")
            if last > 0:
                body, cut_cleanly = body[: last + 1], True
    elif top_boundary:
        closing = b"--" + top_boundary.encode("utf-8", "replace") + b"--"
        if body.find(closing, len(body) - 4096) < 0 and closing not in body:
            defects.append("missing closing MIME boundary (truncated download?)")

    leaves: list[_Leaf] | None = None
    if backend == "none":
        message.backend = "none"
        declared = content_type.lower().strip()
        if not top_boundary and (not declared or declared.startswith("text/")):
            leaves = [_Leaf("text/plain", _charset_param(content_type), "", "", "", body, False)]
        else:
            leaves = []
    else:
        use_fast = backend == "auto" and _fmp is not None
        if use_fast and not body.isascii() and _qp_with_8bit(mime_block, body):
            # fast-mail-parser drops 8-bit bytes inside quoted-printable text (a raw UTF-8
            # apostrophe in an otherwise QP body vanishes); the stdlib keeps them.
            use_fast = False
        over_caps = False
        if use_fast:
            # The Rust parser is linear and caps its own depth (256), so it can look first;
            # our caps are checked on its tree, and only a message over them pays the scan.
            try:
                leaves = _leaves_fast(mime_block + head.newline + body, limits)
                if leaves == [] and top_boundary:  # junk in the field hid the boundary from it
                    mime_block = _plain_content_type(
                        mime_block, content_type, top_boundary, head.newline
                    )
                    leaves = _leaves_fast(mime_block + head.newline + body, limits)
            except Exception as exc:  # DecodeError, MimeStructureError...: stdlib decides
                defects.append(f"fast parser refused: {type(exc).__name__}")
                use_fast = False
            else:
                over_caps = leaves is None
        if leaves is None:
            cut, reason = _safe_prefix(body, top_boundary, limits)
            if reason:
                message.truncated = True
                defects.append(f"{reason}: parsed the first {cut} bytes of the body only")
                body = body[:cut]
            elif over_caps:
                # The Rust tree is over a cap the exact scan does not see (it also splits at
                # delimiter prefixes such as `--boundaryXYZ`); stdlib agrees with the scan.
                defects.append("fast parser tree over the caps; parsed with stdlib")
                use_fast = False
            data = mime_block + head.newline + body
            if use_fast:
                try:
                    leaves = _leaves_fast(data, _NO_CAPS)
                except Exception as exc:
                    defects.append(f"fast parser refused: {type(exc).__name__}")
            if leaves is None:
                leaves, stdlib_defects = _leaves_stdlib(data)
                defects.extend(stdlib_defects)
                message.backend = "stdlib"
        message.backend = message.backend or "fast-mail-parser"
    if not cut_cleanly and leaves and (not _is_body(leaves[-1]) or leaves[-1].filename):
        # A half-read attachment would be stored as if whole; text can be shown cut.
        dropped = leaves.pop()
        defects.append(f"{dropped.content_type} part cut by the size limit; not kept")
    _fill_parts(message, leaves, limits, defects)
    # RFC 3464 delivery status notification: multipart/report with a delivery-status part.
    message.is_bounce = (
        message.is_bounce
        or ("report" in content_type.lower() and "delivery-status" in content_type.lower())
        or any(leaf.content_type in _DSN_TYPES and not leaf.nested for leaf in leaves)
    )
    return message


def _fill_headers(
    message: ParsedMessage,
    fields: dict[bytes, list[str]],
    internal_date: datetime | None,
    limits: Limits,
    defects: list[str],
) -> None:
    for name in (b"from", b"subject", b"date", b"message-id"):
        if len(fields.get(name, ())) > 1:
            defects.append(f"{len(fields[name])} {name.decode()} fields; used the first")
    message.message_id = _message_id(_first(fields, b"message-id"), limits)
    if b"message-id" in fields and not message.message_id:
        defects.append("Message-ID unusable (empty, too long or not an id)")
    in_reply_to = _references(_first(fields, b"in-reply-to"), limits)
    message.in_reply_to = in_reply_to[0] if in_reply_to else ""
    message.references = _references(" ".join(fields.get(b"references", [])), limits)
    subject = _first(fields, b"subject")
    message.subject = clean_text(decode_header_text(subject), limits.max_subject) if subject else ""

    senders = _addresses(fields, b"from", limits, defects)
    if senders:
        message.from_name, message.from_address = senders[0]
    elif b"from" in fields:
        defects.append("From has no usable address")
        # `Kontakt <kontakt@intranet>`: no address we can file, but the reader still sees who.
        # A name is near the start; the cut keeps getaddresses cheap (docs/reliability.md P-03).
        value = ", ".join(fields[b"from"])[:2000]
        names = (n for n, _ in _split_addresses(value, 1) if n.strip())
        message.from_name = clean_text(decode_header_text(next(names, "")), limits.max_name)
    message.sender = _addresses(fields, b"sender", limits, defects)
    message.reply_to = _addresses(fields, b"reply-to", limits, defects)
    message.to = _addresses(fields, b"to", limits, defects)
    message.cc = _addresses(fields, b"cc", limits, defects)
    message.bcc = _addresses(fields, b"bcc", limits, defects)

    date = _parse_date(_first(fields, b"date"), internal_date)
    if date is not None:
        message.date, message.date_from_header = date, True
    else:
        if b"date" in fields:
            defects.append("Date unreadable or absurd; used the server's INTERNALDATE")
        message.date = internal_date.astimezone(UTC) if internal_date else None

    headers: dict[str, str | list[str]] = {}
    for name in _KEPT_HEADERS:
        values = fields.get(name.encode())
        if values:
            headers[name] = clean_text(decode_header_text(values[0]), limits.max_stored_header)
    results = fields.get(b"authentication-results")
    if results:
        # Every one, topmost first: only the topmost header written by one of our own receiving
        # servers counts, and it need not be the topmost of all (connector/filing/
        # authentication.py, docs/reliability.md C-17). The ones below it are the sender's.
        headers["authentication-results"] = [
            clean_text(decode_header_text(value), limits.max_stored_header)
            for value in results[:_MAX_AUTHENTICATION_RESULTS]
        ]
    message.headers = headers

    auto = headers.get("auto-submitted", "").lower()
    precedence = headers.get("precedence", "").lower()
    message.is_auto_reply = bool(
        (auto and not auto.startswith("no"))
        or precedence in _AUTO_PRECEDENCE
        or "x-autoreply" in headers
        or "x-autorespond" in headers
    )
    message.is_list = bool(
        "list-id" in headers or "list-unsubscribe" in headers or precedence in _LIST_PRECEDENCE
    )
    message.is_bounce = message.from_address.startswith(_BOUNCE_SENDERS) or (
        "x-failed-recipients" in headers
    )


def _is_body(leaf: _Leaf) -> bool:
    """Text the sender wrote, as opposed to a file: text/plain or text/html that is unnamed, or
    named but explicitly `inline` (RFC 2183 2.1: shown as part of the message; the name is only
    for saving it, so such a part is listed as an inline attachment too)."""
    return (
        leaf.content_type in ("text/plain", "text/html")
        and leaf.disposition != "attachment"
        and (not leaf.filename or leaf.disposition == "inline")
    )


def _fill_parts(
    message: ParsedMessage, leaves: list[_Leaf], limits: Limits, defects: list[str]
) -> None:
    texts: list[str] = []
    htmls: list[str] = []
    nested_texts: list[str] = []
    nested_htmls: list[str] = []
    attachments: list[ParsedAttachment] = []
    if len(leaves) > limits.max_parts:  # the Rust tree can carry a few more than the scan saw
        defects.append(f"more than {limits.max_parts} MIME parts; the rest ignored")
        leaves = leaves[: limits.max_parts]
    for leaf in leaves:
        ctype = leaf.content_type
        if _is_body(leaf):
            text = decode_payload(
                leaf.payload, leaf.charset, is_html=ctype == "text/html", defects=defects
            )
            target = (
                (nested_htmls if leaf.nested else htmls)
                if ctype == "text/html"
                else (nested_texts if leaf.nested else texts)
            )
            target.append(text)
            if not leaf.filename:
                continue
        if leaf.nested:
            continue  # the forwarded message's own attachments live inside its .eml part
        shown = leaf.filename
        if leaf.is_message and not shown:  # name a forwarded message after its subject
            shown = (_inner_subject(leaf.payload) or "forwarded message")[:200] + ".eml"
        attachments.append(
            ParsedAttachment(
                filename=clean_filename(shown, content_type=ctype, cap=limits.max_filename),
                original_filename=_unsurrogate(leaf.filename).replace("\x00", "")[:1000],
                content_type=clean_text(ctype, 200) or "application/octet-stream",
                content_id=leaf.content_id,
                is_inline=leaf.disposition == "inline"
                or (not leaf.disposition and bool(leaf.content_id)),
                payload=leaf.payload,
                size=len(leaf.payload),
            )
        )
    if not texts and not htmls:  # e.g. "forward as attachment" with no text of its own
        texts, htmls = nested_texts[:1], nested_htmls[:1]
    text, cut_text = _body_text("\n".join(texts), limits, "text", defects)
    markup, cut_html = _body_text("\n".join(htmls), limits, "HTML", defects)
    message.text_body, message.html_body = text, markup
    message.truncated = message.truncated or cut_text or cut_html
    message.attachments = attachments
    if text.strip():
        message.snippet = _snippet(text, limits.snippet_length) or ""
    else:
        message.snippet = _html_snippet(markup, limits.snippet_length)


def _inner_subject(payload: bytes) -> str:
    head = payload[:65536]
    match = re.search(rb"(?im)^subject:[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)", head)
    if not match:
        return ""
    value = re.sub(rb"\r?\n[ \t]", b" ", match.group(1))
    return clean_text(decode_header_text(_decode_raw_header(value)), 200)
