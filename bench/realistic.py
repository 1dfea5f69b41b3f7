"""A seeded corpus of real-sized mail for bench/sync.py (``--corpus realistic``, the default).

demo/corpus.py writes the mail of a support desk: short messages (16 KB on average). Mailboxes
people connect carry newsletters, HTML written by Outlook and web clients, and attachments: the
sizes issue #17 measured are about 77 KB a message on average. This corpus has that shape:

* bodies: ~40 % text/plain only, ~40 % multipart/alternative (text + HTML), ~20 % HTML only;
  HTML of 8-100 KB (tables, inline styles, tracking links, as newsletters and Outlook write it);
  text in the languages and charsets of demo/corpus.py (utf-8, iso-8859-1, windows-1252,
  iso-2022-jp, koi8-r, gb2312, ...), every transfer encoding (7bit, 8bit, quoted-printable,
  base64), subjects and names as RFC 2047 words;
* about one message in ten with one or two attachments of 10 KB to 2 MB (log-uniform: mostly
  tens of KB, a few of a megabyte or more), PDF, PNG, CSV and opaque binaries, base64;
* about 2 % malformed in the ways mail servers pass on: a base64 part that is not base64, a
  missing closing boundary (cut download), an unknown charset label, raw 8-bit bytes in a
  header, a Date nobody can read, a multipart without a boundary. Relay stores all of them
  (docs/reliability.md P-01..P-10); none may fail.

Everything comes from one ``random.Random(seed)``: the same arguments give the same bytes.
Pure Python, no Django.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.corpus import (  # noqa: E402
    INBOX,
    LANGUAGES,
    SEEN,
    _address,
    _binary_part,
    _csv,
    _noise_png,
    _Part,
    _pdf,
    _text_part,
    _unstructured,
)

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# The charset each language is written in, weighted, with the transfer encodings seen for it.
_CHARSETS = {
    "en": (("us-ascii", "7bit", 3), ("utf-8", "quoted-printable", 4), ("utf-8", "8bit", 2)),
    "de": (
        ("iso-8859-1", "quoted-printable", 3),
        ("windows-1252", "8bit", 2),
        ("iso-8859-15", "quoted-printable", 1),
        ("utf-8", "base64", 2),
    ),
    "fr": (
        ("iso-8859-1", "8bit", 2),
        ("windows-1252", "quoted-printable", 2),
        ("utf-8", "quoted-printable", 3),
    ),
    "es": (("iso-8859-1", "quoted-printable", 2), ("utf-8", "8bit", 3)),
    "ja": (("iso-2022-jp", "7bit", 4), ("shift_jis", "base64", 2), ("utf-8", "base64", 3)),
    "ru": (("koi8-r", "8bit", 2), ("windows-1251", "base64", 2), ("utf-8", "base64", 3)),
    "zh": (("gb2312", "base64", 3), ("big5", "base64", 1), ("utf-8", "base64", 3)),
}
_LANG_WEIGHTS = (("en", 50), ("de", 12), ("fr", 10), ("es", 8), ("ja", 7), ("ru", 7), ("zh", 6))
_MALFORMED = (
    "bad_base64",
    "no_closing_boundary",
    "unknown_charset",
    "raw_8bit_header",
    "bad_date",
    "multipart_without_boundary",
)
_DOMAINS = ("example.com", "customer.example", "news.example", "mail.example.org", "shop.example")


@dataclass(frozen=True, slots=True)
class RealisticMessage:
    raw: bytes
    folder: str
    flags: tuple[str, ...]
    date: datetime


def _weighted(rng: random.Random, pairs):
    total = sum(p[-1] for p in pairs)
    roll = rng.random() * total
    for pair in pairs:
        roll -= pair[-1]
        if roll < 0:
            return pair
    return pairs[-1]


def _encodable(text: str, charset: str) -> str:
    return text.encode(charset, "replace").decode(charset)


def _text(rng: random.Random, lang, size: int) -> str:
    """Paragraphs of the language's sentences up to about `size` characters."""
    sentences = [*lang.openers, *lang.fillers, *lang.staff_answers, *lang.followups]
    subs = {
        "order": f"{rng.randrange(100000, 999999)}",
        "invoice": f"INV-{rng.randrange(1000, 9999)}",
        "pallets": str(rng.randrange(2, 40)),
        "city": rng.choice(lang.cities),
        "week": str(rng.randrange(1, 52)),
    }
    paragraphs: list[str] = [rng.choice(lang.greetings).format_map(_Blank(name="Alex"))]
    used = 0
    while used < size:
        paragraph = lang.sentence_sep.join(
            rng.choice(sentences).format_map(_Blank(subs)) for _ in range(rng.randrange(2, 6))
        )
        paragraphs.append(paragraph)
        used += len(paragraph) + 2
    paragraphs.append(rng.choice(lang.closings).format_map(_Blank(name="Alex")))
    return "\n\n".join(paragraphs) + "\n"


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _html(rng: random.Random, lang, size: int, charset: str) -> str:
    """A newsletter / Outlook-style HTML body of about `size` characters: nested tables, inline
    styles, links with long tracking URLs, a style block, a few images by URL."""
    style = (
        '<style type="text/css">\n'
        + "".join(
            f".c{i} {{ font-family: Arial, Helvetica, sans-serif; font-size: {12 + i % 6}px; "
            f"color: #{rng.randrange(0, 0xFFFFFF):06x}; padding: {i % 9}px {i % 13}px; }}\n"
            for i in range(rng.randrange(20, 80))
        )
        + "</style>\n"
    )
    rows: list[str] = []
    used = len(style)
    n = 0
    while used < size:
        n += 1
        text = _text(rng, lang, rng.randrange(150, 600))
        cells = "".join(
            f'<p class="c{n % 20}" style="margin:0 0 12px 0;line-height:1.4">'
            + p.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br>\n")
            + "</p>\n"
            for p in text.split("\n\n")
            if p
        )
        token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(48))
        row = (
            '<tr><td align="left" valign="top" style="padding:16px 24px;background:#ffffff;'
            'border-bottom:1px solid #e5e5e5">\n'
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
            f'<tr><td style="font-family:Arial,sans-serif;font-size:14px;color:#333333">\n{cells}'
            f'<a href="https://click.news.example/ls/click?upn={token}&amp;n={n}" '
            'style="color:#1a73e8;text-decoration:underline" target="_blank">'
            f'<img src="https://img.news.example/{token[:16]}.png" width="560" height="180" '
            'alt="" style="display:block;border:0"></a>\n</td></tr></table>\n</td></tr>\n'
        )
        rows.append(row)
        used += len(row)
    return (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
        f"<title>Newsletter</title>\n{style}</head>\n"
        '<body style="margin:0;padding:0;background:#f4f4f4">\n'
        '<table width="100%" cellpadding="0" cellspacing="0" border="0"><tr><td align="center">\n'
        '<table width="600" cellpadding="0" cellspacing="0" border="0">\n'
        + "".join(rows)
        + "</table>\n</td></tr></table>\n"
        '<img src="https://t.news.example/open.gif" width="1" height="1" alt="">\n'
        "</body></html>\n"
    )


def _attachment_size(rng: random.Random) -> int:
    # Log-uniform between 10 KB and 2 MB: mostly tens of KB, a few of a megabyte or more.
    # (skewed a little further down by the exponent, so that the mean is about 300 KB).
    return int(10_000 * 200 ** (rng.random() ** 1.3))


def _attachment(rng: random.Random, index: int) -> _Part:
    size = _attachment_size(rng)
    kind = rng.choice(("pdf", "png", "csv", "bin"))
    if kind == "pdf":
        data = _pdf(rng, [f"Document {index}", "Relay bench"], size)
        return _binary_part(data, "application/pdf", f"document-{index}.pdf")
    if kind == "png":
        return _binary_part(_noise_png(rng, size), "image/png", f"photo-{index}.png")
    if kind == "csv":
        return _binary_part(_csv(rng, "en", size), "text/csv", f"export-{index}.csv")
    return _binary_part(rng.randbytes(size), "application/octet-stream", f"archive-{index}.zip")


def generate(count: int, *, seed: int = 1, mailbox: str = "support@relay.example"):
    """Yield `count` messages for the INBOX, oldest first; same arguments, same bytes."""
    rng = random.Random(seed)
    earlier: list[str] = []
    for index in range(count):
        yield _message(rng, index, count, mailbox, earlier)


def _message(rng, index, count, mailbox, earlier) -> RealisticMessage:
    code = _weighted(rng, _LANG_WEIGHTS)[0]
    lang = LANGUAGES[code]
    charset, cte, _ = _weighted(rng, _CHARSETS[code])
    when = START - timedelta(days=120) + timedelta(seconds=index * 120 * 86400 // max(count, 1))
    domain = rng.choice(_DOMAINS)
    who = rng.choice(("anna", "bob", "chen", "dmitri", "eve", "farid", "gita"))
    sender = f"{who}{rng.randrange(0, 5000)}@{domain}"
    display = _encodable(
        rng.choice(lang.cities) + " " + rng.choice(("Team", "Sales", "Info")), charset
    )
    subject = _encodable(rng.choice(lang.subjects).format_map(_Blank(order=str(index))), charset)
    message_id = f"<{index}.{rng.getrandbits(48):x}@{domain}>"
    malformed = rng.random() < 0.02 and rng.choice(_MALFORMED) or ""

    roll = rng.random()
    html_size = int(math.exp(rng.uniform(math.log(8_000), math.log(100_000))))
    text = _encodable(_text(rng, lang, rng.randrange(500, 6000)), charset)
    if roll < 0.40:
        body = _text_part(text, "plain", charset, cte)
    else:
        markup = _encodable(_html(rng, lang, html_size, charset), charset)
        html_cte = "base64" if cte == "base64" else "quoted-printable"
        html_part = _text_part(markup, "html", charset, html_cte)
        if roll < 0.80:
            boundary = f"----=_Alt_{rng.getrandbits(64):016x}"
            body = _Part(
                [f'Content-Type: multipart/alternative; boundary="{boundary}"'],
                parts=[_text_part(text, "plain", charset, cte), html_part],
                boundary=boundary,
            )
        else:
            body = html_part
    if rng.random() < 0.10:
        boundary = f"----=_Mix_{rng.getrandbits(64):016x}"
        attachments = [
            _attachment(rng, index * 10 + i) for i in range(_weighted(rng, ((1, 9), (2, 1)))[0])
        ]
        body = _Part(
            [f'Content-Type: multipart/mixed; boundary="{boundary}"'],
            parts=[body, *attachments],
            boundary=boundary,
        )

    headers = [
        "Return-Path: <" + sender + ">",
        f"Received: from mx{rng.randrange(1, 9)}.{domain} "
        f"(mx.{domain} [192.0.2.{rng.randrange(1, 254)}])"
        f"\r\n\tby mail.relay.example with ESMTPS id {rng.getrandbits(40):x}"
        f"\r\n\tfor <{mailbox}>; {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}",
        "From: " + _address(display, sender, charset),
        f"To: {mailbox}",
        _unstructured("Subject", subject, charset),
        f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    if earlier and rng.random() < 0.3:
        parent = rng.choice(earlier[-200:])
        headers += [f"In-Reply-To: {parent}", f"References: {parent}"]
    earlier.append(message_id)
    raw_body = body.to_bytes()
    if malformed == "bad_date":
        headers[5] = "Date: the 32nd of Smarch, sometime"
    elif malformed == "raw_8bit_header":
        headers[4] = "Subject: " + subject + " caf\xe9 \u2013 r\xe9sum\xe9"
    head = "\r\n".join(headers).encode("utf-8", "replace") + b"\r\n"
    raw = head + raw_body
    if malformed == "bad_base64":
        raw = raw.replace(b"base64\r\n\r\n", b"base64\r\n\r\n%%%not*base64!!\r\n", 1)
    elif malformed == "no_closing_boundary" and b"--\r\n" in raw:
        raw = raw[: raw.rfind(b"\r\n--") + 2]
    elif malformed == "unknown_charset":
        raw = raw.replace(b"charset=" + charset.encode(), b"charset=x-unknown-8bit", 1)
    elif malformed == "multipart_without_boundary":
        raw = raw.replace(b'; boundary="', b'; xboundary="', 1)
    flags = (SEEN,) if rng.random() < 0.6 else ()
    return RealisticMessage(raw=raw, folder=INBOX, flags=flags, date=when)


if __name__ == "__main__":  # python bench/realistic.py [N]: the corpus's shape
    import sys
    import time

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    started = time.perf_counter()
    sizes = [len(m.raw) for m in generate(n)]
    sizes.sort()
    print(
        f"{n} messages in {time.perf_counter() - started:.1f} s: "
        f"mean {sum(sizes) / n / 1024:.1f} KB,"
        f" median {sizes[n // 2] / 1024:.1f} KB, max {sizes[-1] / 1024:.0f} KB, "
        f"total {sum(sizes) / 1e6:.0f} MB"
    )
