"""The differential fidelity net: what Relay shows of a message against the standard library.

Every message goes through `connector.ingest.mime.parse_message` and through
`email.message_from_bytes(raw, policy=email.policy.default)`; both are reduced to what a reader
sees (docs/fidelity.md says why each field is compared the way it is):

* subject, sender display name, sender address, date (one instant, UTC);
* attachments: the multiset of (name as sent, decoded; size in bytes of the decoded payload);
* text: the plain-text body as a sequence of words (line ends, wrapping and runs of blanks do
  not count, Unicode NFC).

The stdlib does not decide which parts are body and which are files; `_stdlib_view` walks its
tree with the rules Relay documents (docs/fidelity.md "What is compared"), so that what is
compared is each library's reading of the bytes: structure, transfer and charset decoding,
RFC 2047/2231 words, dates and addresses.

Run by hand over any folders of messages (files, .tar.xz archives) to print agreement rates:

    .venv/bin/python -m tests.connector.ingest.fidelity tests/fixtures/corpus [--show field]
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import sys
import tarfile
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

FIELDS = ("subject", "from_name", "from_address", "date", "attachments", "text")
_MESSAGE_TYPES = ("message/rfc822", "message/global")


class StdlibFailed(Exception):
    """The standard library raised while reading this field; the text says what."""


@dataclass(frozen=True)
class Outcome:
    relay: object
    stdlib: object

    @property
    def agrees(self) -> bool:
        return self.relay == self.stdlib


# --------------------------------------------------------------------------------------------
# Normalisation shared by both sides: what "the same" means to a reader

_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def display(value: str | None) -> str:
    """One display line: NFC, no controls or bidi marks, blanks collapsed, trimmed."""
    if not value:
        return ""
    value = unicodedata.normalize("NFC", value)
    value = _CONTROLS.sub("", value.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    return " ".join(value.split())


def words(value: str | None) -> tuple[str, ...]:
    """A body as its words: line ends, wrapping and runs of blanks are not a difference."""
    if not value:
        return ()
    return tuple(_CONTROLS.sub("", unicodedata.normalize("NFC", value)).split())


def address(value: str | None) -> str:
    """Lower case with an IDNA domain, as Relay stores addresses (crm/normalize.py)."""
    if not value:
        return ""
    local, at, domain = value.strip().rpartition("@")
    if not at:
        return value.strip().lower()
    try:
        domain = domain.rstrip(".").lower().encode("idna").decode("ascii")
    except UnicodeError:
        domain = domain.lower()
    return f"{local.lower()}@{domain}"


def instant(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # RFC 5322 "-0000": UTC with no claim about the local zone
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------------------------
# The two views


def relay_view(raw: bytes) -> dict[str, object]:
    from connector.ingest.mime import MessageUnparseable, parse_message

    try:
        parsed = parse_message(raw)
    except MessageUnparseable as exc:
        refused = f"refused: {exc.reason}"
        return dict.fromkeys(FIELDS, refused)
    attachments = Counter(
        (display(a.original_filename), _size(a.content_type, a.payload)) for a in parsed.attachments
    )
    return {
        "subject": display(parsed.subject),
        "from_name": display(parsed.from_name),
        "from_address": parsed.from_address,
        "date": instant(parsed.date),
        "attachments": tuple(sorted(attachments.items(), key=repr)),
        "text": words(parsed.text_body),
    }


def _size(content_type: str, payload: bytes) -> int | None:
    """Bytes of a file; a text file's line ends do not count (quoted-printable decodes hard
    line breaks to CRLF, RFC 2045 6.7, where the stdlib keeps the message's own); a message/*
    part has none to compare (the stdlib re-serialises it)."""
    if content_type.startswith("message/"):
        return None
    if content_type.startswith("text/"):
        return len(payload.replace(b"\r\n", b"\n"))
    return len(payload)


def _field(function):
    """Run one stdlib read; a crash becomes a StdlibFailed value, not a test error."""
    try:
        return function()
    except Exception as exc:  # the point is to see where the stdlib gives up
        return StdlibFailed(f"{type(exc).__name__}: {str(exc)[:120]}")


def stdlib_view(raw: bytes) -> dict[str, object]:
    message = email.message_from_bytes(raw, policy=email.policy.default)

    def sender():
        header = message["from"]
        if header is None:
            return "", ""
        for group in header.groups:
            for item in group.addresses:
                if item.addr_spec and "@" in item.addr_spec:
                    return display(item.display_name), address(item.addr_spec)
        return "", ""

    def date():
        header = message["date"]
        return instant(header.datetime) if header is not None else ""

    sender_pair = _field(sender)
    parts = _field(lambda: _stdlib_parts(message))
    return {
        "subject": _field(lambda: display(str(message["subject"] or ""))),
        "from_name": sender_pair if isinstance(sender_pair, StdlibFailed) else sender_pair[0],
        "from_address": sender_pair if isinstance(sender_pair, StdlibFailed) else sender_pair[1],
        "date": _field(date),
        "attachments": parts if isinstance(parts, StdlibFailed) else parts[0],
        "text": parts if isinstance(parts, StdlibFailed) else parts[1],
    }


def _stdlib_parts(message) -> tuple[tuple, tuple[str, ...]]:
    """(attachments, text words) by the rules in docs/fidelity.md "What is compared"."""
    texts: list[str] = []
    htmls: list[str] = []
    nested_texts: list[str] = []
    nested_htmls: list[str] = []
    attachments: Counter = Counter()
    failed_text: StdlibFailed | None = None
    stack = [(message, False)]
    while stack:
        part, nested = stack.pop()
        ctype = part.get_content_type()
        if ctype in _MESSAGE_TYPES:
            if not nested:
                attachments[(display(part.get_filename() or ""), None)] += 1
            inner = part.get_payload()
            if isinstance(inner, list):
                stack.extend((child, True) for child in reversed(inner))
            continue
        if ctype.startswith("message/"):  # delivery-status, external-body...: one file each
            if not nested:
                attachments[(display(part.get_filename() or ""), None)] += 1
            continue
        if part.is_multipart():
            stack.extend((child, nested) for child in reversed(list(part.iter_parts())))
            continue
        if ctype.startswith("multipart/"):
            # A multipart the stdlib could not split (no boundary, or one that never occurs):
            # a careful client shows what is there as text rather than nothing.
            payload = part.get_payload(decode=True) or b""
            (nested_texts if nested else texts).append(payload.decode("utf-8", "replace"))
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        body = (
            ctype in ("text/plain", "text/html")
            and disposition != "attachment"
            and (not filename or disposition == "inline")
        )
        if body:
            try:
                content = part.get_content()
            except LookupError as exc:  # unknown charset: the stdlib gives up on the part
                failed_text = StdlibFailed(f"LookupError: {exc}")
                content = ""
            target = (
                (nested_htmls if nested else htmls)
                if ctype == "text/html"
                else (nested_texts if nested else texts)
            )
            target.append(content)
        if nested:
            continue
        if not body or filename:
            payload = part.get_payload(decode=True) or b""
            attachments[(display(filename or ""), _size(ctype, payload))] += 1
    if not texts and not htmls:  # "forward as attachment": the inner message's text is shown
        texts = nested_texts[:1]
    text = failed_text or words("\n".join(texts))
    return tuple(sorted(attachments.items(), key=repr)), text


def compare(raw: bytes) -> dict[str, Outcome]:
    ours, theirs = relay_view(raw), stdlib_view(raw)
    return {name: Outcome(ours[name], theirs[name]) for name in FIELDS}


# --------------------------------------------------------------------------------------------
# Corpora: folders of files and .tar.xz archives of them


def messages(root: Path) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) for every message under `root`, named `<archive or folder>/<file>`."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in paths:
        if path.name.endswith((".tar.xz", ".tar.gz", ".tgz")):
            source = path.name.split(".tar", 1)[0].removesuffix(".tgz")
            with tarfile.open(path) as archive:
                for member in sorted(archive.getmembers(), key=lambda m: m.name):
                    if member.isfile():
                        yield f"{source}/{member.name}", archive.extractfile(member).read()
        elif path.suffix == ".eml":
            yield f"{path.parent.name}/{path.name}", path.read_bytes()


@dataclass
class Known:
    """known_differences.txt: `<message> <field> <reason id>` a line, # comments."""

    entries: dict[tuple[str, str], str]

    @classmethod
    def load(cls, path: Path) -> Known:
        entries = {}
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, field_name, reason = line.split()
                entries[(name, field_name)] = reason
        return cls(entries)


def agreement(
    corpus: list[tuple[str, bytes]],
) -> tuple[dict[str, int], dict[tuple[str, str], Outcome]]:
    """Per-field count of agreeing messages, and every disagreement by (message, field)."""
    agree = dict.fromkeys(FIELDS, 0)
    differences: dict[tuple[str, str], Outcome] = {}
    for name, raw in corpus:
        for field_name, outcome in compare(raw).items():
            if outcome.agrees:
                agree[field_name] += 1
            else:
                differences[(name, field_name)] = outcome
    return agree, differences


def main(argv: list[str]) -> int:
    import argparse

    import django

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--show", action="append", default=[], help="print these fields' diffs")
    parser.add_argument("--known", type=Path, help="known_differences.txt to classify against")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    django.setup()
    corpus = [item for path in args.paths for item in messages(path)]
    agree, differences = agreement(corpus)
    known = Known.load(args.known).entries if args.known else {}
    total = len(corpus)
    print(f"{total} messages")
    for field_name in FIELDS:
        rate = 100 * agree[field_name] / total
        print(f"  {field_name:13} {agree[field_name]:5}/{total}  {rate:6.2f}%")
    unknown = [key for key in differences if key not in known]
    print(f"{len(differences)} disagreements, {len(unknown)} not listed as known")
    for (name, field_name), outcome in sorted(differences.items()):
        if field_name in args.show or "all" in args.show:
            mark = known.get((name, field_name), "NEW")
            relay, stdlib = outcome.relay, outcome.stdlib
            if isinstance(relay, str | tuple) and isinstance(stdlib, str | tuple):
                at = next(
                    (i for i, (x, y) in enumerate(zip(relay, stdlib, strict=False)) if x != y),
                    min(len(relay), len(stdlib)),
                )
                start = max(0, at - 8)
                relay, stdlib = relay[start : at + 12], stdlib[start : at + 12]
            print(f"\n{name} {field_name} [{mark}]\n  relay : {relay!r:.400}")
            print(f"  stdlib: {stdlib!r:.400}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
