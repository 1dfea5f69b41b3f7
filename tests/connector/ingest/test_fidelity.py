"""The fidelity net: Relay against the stdlib's `email` on real-world mail (docs/fidelity.md).

Every message of the committed corpus (tests/fixtures/corpus, mail from other projects' test
suites) and every hard case (tests/fixtures/eml/fidelity) goes through parse_message and
through `email.message_from_bytes(raw, policy=email.policy.default)`; fidelity.py reduces both
to what a reader sees. A disagreement fails unless known_differences.txt lists it with a reason
that docs/fidelity.md explains. No database needed.

RELAY_FIDELITY_CORPUS (paths joined by os.pathsep: folders of .eml files or .tar.xz archives)
adds corpora that cannot be committed; their agreement rates are printed, not asserted.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.ingest.mime import MessageUnparseable, parse_message

from .fidelity import FIELDS, Known, agreement, compare, messages

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "fixtures" / "corpus"
HARD_CASES = ROOT / "tests" / "fixtures" / "eml" / "fidelity"
DOC = ROOT / "docs" / "fidelity.md"


def _rates(title: str, corpus, agree) -> str:
    lines = [f"{title}: {len(corpus)} messages"]
    for name in FIELDS:
        lines.append(
            f"  {name:13} {agree[name]:5}/{len(corpus)} {100 * agree[name] / len(corpus):7.2f}%"
        )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def committed():
    corpus = [item for path in sorted(CORPUS.glob("*.tar.xz")) for item in messages(path)]
    corpus += list(messages(HARD_CASES))
    agree, differences = agreement(corpus)
    return corpus, agree, differences


@pytest.fixture(scope="module")
def known() -> dict[tuple[str, str], str]:
    return Known.load(CORPUS / "known_differences.txt").entries


def test_corpus_is_there():
    sources = {path.name for path in CORPUS.glob("*.tar.xz")}
    assert {"cpython.tar.xz", "django-mailbox.tar.xz", "talon.tar.xz"} <= sources
    assert len([p for p in HARD_CASES.glob("*.eml")]) >= 30


def test_every_disagreement_is_a_known_deliberate_one(committed, known, capsys):
    corpus, agree, differences = committed
    with capsys.disabled():
        print("\n" + _rates("fidelity, committed corpus", corpus, agree))
    unknown = {key: outcome for key, outcome in differences.items() if key not in known}
    report = "\n".join(
        f"{name} {field_name}\n  relay : {outcome.relay!r:.300}\n  stdlib: {outcome.stdlib!r:.300}"
        for (name, field_name), outcome in sorted(unknown.items())
    )
    assert not unknown, f"Relay disagrees with the stdlib where nobody decided it should:\n{report}"


def test_no_known_difference_is_stale(committed, known):
    """A listed difference that no longer occurs is a fix nobody wrote down (or a lost one)."""
    corpus, _, differences = committed
    present = {name for name, _ in corpus}
    stale = sorted(key for key in known if key[0] in present and key not in differences)
    missing = sorted(key for key in known if key[0] not in present)
    assert not stale, f"listed in known_differences.txt but Relay now agrees: {stale}"
    assert not missing, f"listed in known_differences.txt but not in the corpus: {missing}"


def test_every_reason_is_explained_in_the_docs(known):
    explained = set(re.findall(r"^### ([A-Z0-9-]+)", DOC.read_text(), re.MULTILINE))
    assert set(known.values()) - explained == set()


@pytest.mark.skipif(not os.environ.get("RELAY_FIDELITY_CORPUS"), reason="no extra corpus given")
def test_extra_corpus_rates(capsys):
    paths = [Path(p) for p in os.environ["RELAY_FIDELITY_CORPUS"].split(os.pathsep) if p]
    corpus = [item for path in paths for item in messages(path)]
    agree, _ = agreement(corpus)
    with capsys.disabled():
        print("\n" + _rates("fidelity, RELAY_FIDELITY_CORPUS", corpus, agree))
    assert corpus


# --------------------------------------------------------------------------------------------
# The hard cases one by one: what a reader must see (tests/fixtures/eml/fidelity/README.md)


def _parse(name: str, backend: str = "auto"):
    return parse_message((HARD_CASES / name).read_bytes(), backend=backend)


def _names(parsed) -> list[str]:
    return sorted(a.original_filename for a in parsed.attachments)


BACKENDS = ["auto", "stdlib"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_encoded_word_file_names(backend):
    parsed = _parse("attachment_name_encoded_word.eml", backend)
    assert _names(parsed) == ["Rechnung März.pdf", "This is a test.pdf"]
    assert sorted(a.filename for a in parsed.attachments) == _names(parsed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_inline_named_text_is_the_body(backend):
    parsed = _parse("inline_named_text_only.eml", backend)
    assert parsed.text_body.strip() == "Meeting notes: ship on Friday."
    assert parsed.snippet == "Meeting notes: ship on Friday."
    [notes] = parsed.attachments
    assert (notes.filename, notes.is_inline, parsed.has_attachments) == ("notes.txt", True, False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, words",
    [
        ("content_type_without_subtype.eml", "Plain words under a Content-Type with no subtype."),
        ("content_type_junk.eml", "Use the View Invoices function."),
        ("content_type_with_tspecial.eml", "Test of text/plain section with invalid content type"),
    ],
)
def test_hard_case_invalid_content_type_is_plain_text(backend, name, words):
    parsed = _parse(name, backend)
    assert parsed.text_body.strip() == words
    assert parsed.attachments == []


def test_hard_case_dates_before_1970():
    assert _parse("date_before_1970.eml").date == datetime(1969, 11, 21, 15, 55, 6, tzinfo=UTC)
    assert _parse("sender_comment_inside_named_address.eml").date.year == 1969


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_uuencoded_attachment_is_decoded(backend):
    [file] = _parse("uuencode_attachment.eml", backend).attachments
    assert (file.filename, file.payload) == ("hello.bin", b"Hello, uuencoded world!\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_boundary_that_never_occurs_shows_the_text(backend):
    parsed = _parse("boundary_never_occurs.eml", backend)
    assert "message 1" in parsed.text_body and "--BOUNDARY" in parsed.text_body


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name, text, files",
    [
        ("boundary_rfc2231.eml", "part one", ["one.bin"]),
        ("multipart_params_without_semicolon.eml", "test\ntest2", []),
        ("quoted_boundary_leading_blanks.eml", "first\nsecond", []),
        ("unquoted_boundary_with_equals.eml", "Hello from the plain part.", []),
    ],
)
def test_hard_case_boundaries_as_senders_write_them(backend, name, text, files):
    parsed = _parse(name, backend)
    assert parsed.text_body.split() == text.split()
    assert _names(parsed) == files


def test_hard_case_sloppy_closing_delimiter_closes():
    """fast-mail-parser's reading; the stdlib backend (a fallback) keeps the line as text."""
    assert _parse("sloppy_closing_delimiter.eml").text_body.split() == "Find us on the Web.".split()


def test_hard_case_part_header_without_blank_line_keeps_the_text():
    assert _parse("part_header_without_blank_line.eml").text_body.strip() == "bar"


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_raw_utf8_inside_quoted_printable(backend):
    text = _parse("quoted_printable_with_raw_utf8.eml", backend).text_body
    assert text.split() == "Stuffs’s Weekly Summary – the week in review".split()


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_raw_8bit_names_and_headers(backend):
    assert _names(_parse("part_name_raw_utf8.eml", backend)) == ["ciële.txt"]
    assert _parse("subject_q_word_raw_8bit.eml", backend).subject == "Die Hasen und die Frösche"
    parsed = _parse("raw_utf8_headers.eml", backend)
    assert (parsed.from_name, parsed.subject) == ("Jöhn Doe", "Grüße aus München")


@pytest.mark.parametrize(
    "name, from_name, from_address",
    [
        ("sender_comment_inside_named_address.eml", "Pete", "pete@silly.test"),
        ("sender_comment_as_name.eml", "John X. Doe", "jdoe@example.com"),
        ("sender_address_in_plain_sight.eml", "", "bb@bug.com"),
        ("sender_unfileable_domain.eml", "Kontakt", ""),
        ("encoded_words_split_name.eml", "MySurvey.com & Carol", "survey@mysurvey.example"),
    ],
)
def test_hard_case_senders(name, from_name, from_address):
    parsed = _parse(name)
    assert (parsed.from_name, parsed.from_address) == (from_name, from_address)


@pytest.mark.parametrize(
    "name, words",
    [
        ("undeclared_8bit_body.eml", "Envoyé par le service de messagerie texte de Bell Mobilité."),
        (
            "utf8_and_cp1252_in_one_body.eml",
            "Atención al cliente A divulgação desta mensagem é proibida.",
        ),
        ("unknown_charset_label.eml", "A text section"),
    ],
)
def test_hard_case_body_charsets(name, words):
    assert _parse(name).text_body.split() == words.split()


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_file_names_as_sent(backend):
    assert _names(_parse("unquoted_name_with_spaces.eml", backend)) == ["This is a test.txt"]
    [picture] = _parse("windows_path_file_name.eml", backend).attachments
    assert (picture.original_filename, picture.filename) == (
        "C:\\TEMP\\nsmail39.png",
        "nsmail39.png",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_case_base64(backend):
    [doc] = _parse("base64_with_a_stray_character.eml", backend).attachments
    assert doc.payload == b"<html>\n"
    [audio] = _parse("declared_base64_that_is_not.eml", backend).attachments
    assert audio.payload.startswith(b"... base64-encoded 8000 Hz")


def test_hard_case_refusals_and_absurd_dates():
    with pytest.raises(MessageUnparseable, match="not an email message|no message header"):
        _parse("not_a_message.eml")
    arrival = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
    raw = (HARD_CASES / "future_date.eml").read_bytes()
    parsed = parse_message(raw, internal_date=arrival)
    assert (parsed.date, parsed.date_from_header) == (arrival, False)


def test_every_hard_case_is_indexed_and_checked():
    index = (HARD_CASES / "README.md").read_text()
    names = sorted(p.name for p in HARD_CASES.glob("*.eml"))
    assert [n for n in names if f"`{n}`" not in index] == []
    source = Path(__file__).read_text()
    assert [n for n in names if f'"{n}"' not in source] == []


def test_compare_sees_a_real_difference():
    """The net can fail: a message whose subject Relay and the stdlib read differently."""
    raw = b"From: a@b.example\nSubject: =?utf-8?q?a?= =?utf-8?q?b?=\n\nx\n"
    assert compare(raw)["subject"].agrees
    raw = b"From: a@b.example\nSubject: abc\nDate: Mon, 30 Jun 3609 19:42:06 +0000\n\nx\n"
    assert not compare(raw)["date"].agrees
