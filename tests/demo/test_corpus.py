"""The generated corpus: reproducible, parseable, threaded, multilingual, and realistic enough
for the demo mailbox and the sync benchmark."""

from __future__ import annotations

import ast
import mailbox
import os
import struct
import subprocess
import sys
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from demo import corpus

PARSER = BytesParser(policy=policy.default)
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# Outlook writes RFC 2047 words inside quoted filename parameters; every reader accepts them and
# the stdlib decodes them, noting these two header defects. They are deliberate realism.
TOLERATED_HEADER_DEFECTS = {
    "encoded word inside quoted string",
    "missing trailing whitespace after encoded-word",
}


@pytest.fixture(scope="module")
def demo() -> list[corpus.GeneratedMessage]:
    return list(corpus.generate(300))


@pytest.fixture(scope="module")
def parsed(demo) -> list[EmailMessage]:
    return [PARSER.parsebytes(m.raw) for m in demo]


@pytest.fixture(scope="module")
def wide() -> list[corpus.GeneratedMessage]:
    """A larger sample with small attachments, for charset coverage."""
    return list(corpus.generate(1500, seed=5, attachment_max_bytes=20_000))


def main_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


# ---- reproducibility ------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_flags():
    first = [(m.folder, m.flags, m.raw) for m in corpus.generate(150, seed=3)]
    second = [(m.folder, m.flags, m.raw) for m in corpus.generate(150, seed=3)]
    assert first == second


def test_output_does_not_depend_on_the_process(tmp_path):
    """No set or hash order leaks into the output: two interpreters with different hash seeds
    write the same bytes."""
    script = (
        "import hashlib, sys\n"
        "from demo import corpus\n"
        "digest = hashlib.sha256()\n"
        "for m in corpus.generate(200, seed=8):\n"
        "    digest.update(m.folder.encode() + repr(m.flags).encode() + m.raw)\n"
        "print(digest.hexdigest())\n"
    )
    root = Path(corpus.__file__).resolve().parent.parent
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for hash_seed in (1, 2)
    }
    assert len(digests) == 1


def test_different_seed_gives_different_mail():
    one = [m.raw for m in corpus.generate(40, seed=3)]
    other = [m.raw for m in corpus.generate(40, seed=4)]
    assert sum(a != b for a, b in zip(one, other, strict=True)) == 40


def test_count_and_arguments_are_honoured():
    assert list(corpus.generate(0)) == []
    messages = list(corpus.generate(25, seed=9, mailbox_address="sales@acme-crm.example"))
    assert len(messages) == 25
    inbox = [m for m in messages if m.folder == corpus.INBOX]
    assert inbox and all(b"Delivered-To: sales@acme-crm.example" in m.raw for m in inbox)
    with pytest.raises(ValueError):
        corpus.generate(-1)


def test_module_is_pure_python_without_django_or_models():
    tree = ast.parse(Path(corpus.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"django", "crm", "inbox", "connector"}


# ---- every message is well formed -----------------------------------------------------------


def test_every_message_parses_cleanly_with_required_headers(demo, parsed):
    ids = set()
    for generated, message in zip(demo, parsed, strict=True):
        assert b"\r\n" in generated.raw and b"\n" not in generated.raw.replace(b"\r\n", b"")
        assert message["Message-ID"] == generated.message_id
        assert message["From"] and message["Date"]
        assert message["Date"].datetime == generated.date
        assert message["MIME-Version"] == "1.0"
        ids.add(generated.message_id)
        for part in message.walk():
            assert part.defects == [], (generated.kind, part.defects)
            for name, value in part.items():
                defects = {str(d) for d in getattr(value, "defects", ())}
                assert defects <= TOLERATED_HEADER_DEFECTS, (generated.kind, name, defects)
                if defects:
                    assert name.lower() in ("content-type", "content-disposition")
    assert len(ids) == len(demo), "Message-IDs are unique"


def test_headers_stay_within_line_limits(demo):
    for generated in demo:
        head = generated.raw.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        assert head.isascii(), "non-ASCII header text is RFC 2047 encoded"


def test_dates_spread_over_the_months_before_start(demo):
    dates = [m.date for m in demo]
    assert all(START - timedelta(days=121) < d < START for d in dates)
    assert max(dates) - min(dates) > timedelta(days=90)
    assert len({d.utcoffset() for d in dates}) >= 4, "senders write from several time zones"


def test_flags_most_older_mail_is_read_and_sent_mail_is_seen(demo):
    for generated in demo:
        assert set(generated.flags) <= {corpus.SEEN, corpus.ANSWERED, corpus.FLAGGED}
        if generated.folder == corpus.SENT:
            assert generated.flags == (corpus.SEEN,)
    older = [m for m in demo if m.folder == corpus.INBOX and START - m.date > timedelta(days=7)]
    assert sum(corpus.SEEN in m.flags for m in older) > 0.8 * len(older)
    assert any(corpus.ANSWERED in m.flags for m in demo)
    assert any(corpus.SEEN not in m.flags for m in demo if m.folder == corpus.INBOX)


# ---- threads --------------------------------------------------------------------------------


def test_replies_point_at_earlier_messages(demo, parsed):
    seen: dict[str, corpus.GeneratedMessage] = {}
    replies = 0
    for generated, message in zip(demo, parsed, strict=True):
        if generated.in_reply_to:
            replies += 1
            assert message["In-Reply-To"] == generated.in_reply_to
            assert generated.in_reply_to in seen, generated.kind
            assert generated.date > seen[generated.in_reply_to].date
            references = str(message["References"]).split()
            assert references == list(generated.references)
            assert references[-1] == generated.in_reply_to
            assert all(ref in seen for ref in references)
        seen[generated.message_id] = generated
    assert replies > 80


def test_conversations_go_back_and_forth_with_ticket_references(demo):
    by_id = {m.message_id: m for m in demo}
    depth: dict[str, int] = {}
    for generated in demo:
        depth[generated.message_id] = depth.get(generated.in_reply_to, 0) + 1
    assert max(depth.values()) >= 4, "customer, staff, customer, staff"
    staff_replies = [m for m in demo if m.kind == "staff_reply"]
    assert staff_replies and all(m.folder == corpus.SENT for m in staff_replies)
    assert all(m.subject.startswith("Re: ") for m in staff_replies)
    assert all("[TKT-" in m.subject or "[OPP-" in m.subject for m in staff_replies)
    customer_replies = [m for m in demo if m.kind == "reply" and m.ticket]
    assert customer_replies
    for reply in customer_replies:
        assert f"[{reply.ticket}]" in reply.subject
        assert by_id[reply.in_reply_to].folder == corpus.SENT
    tickets = {m.ticket for m in demo if m.ticket}
    assert len(tickets) >= 10


def test_auto_replies_answer_staff_mail_without_breaking_the_thread(wide):
    by_id = {m.message_id: m for m in wide}
    auto = [m for m in wide if m.kind == "auto_reply"]
    assert auto
    for message in auto:
        assert b"\r\nAuto-Submitted: auto-replied\r\n" in message.raw
        assert by_id[message.in_reply_to].folder == corpus.SENT
    auto_ids = {m.message_id for m in auto}
    assert not any(m.in_reply_to in auto_ids for m in wide), "nobody answers an auto-reply"


# ---- languages and charsets -----------------------------------------------------------------


def test_charsets_decode_back_to_the_intended_text(wide):
    charsets = Counter()
    for generated in wide:
        if generated.kind == "bounce" or generated.charset in ("us-ascii",):
            continue
        if generated.charset == "utf-8" and generated.language == "en":
            continue  # plenty of those elsewhere; keep the test fast
        message = PARSER.parsebytes(generated.raw)
        assert str(message["Subject"]) == generated.subject
        assert main_text(message).rstrip("\n") == generated.text.rstrip("\n"), generated.kind
        charsets[generated.charset] += 1
    expected = {
        "utf-8",
        "iso-8859-1",
        "iso-2022-jp",
        "koi8-r",
        "gb2312",
        "gb18030",
        "windows-1252",
        "windows-1251",
    }
    assert expected <= set(charsets), charsets


def test_encoded_display_names_round_trip(demo, parsed):
    names = 0
    for generated, message in zip(demo, parsed, strict=True):
        for address in message["From"].addresses:
            if not address.display_name.isascii():
                names += 1
                head = b"\r\n" + generated.raw.split(b"\r\n\r\n", 1)[0]
                assert b"=?" in head.split(b"\r\nFrom: ", 1)[1].split(b"\r\n", 1)[0]
    known = {p.name for p in corpus.demo_people()}
    decoded = {a.display_name for m in parsed for a in m["From"].addresses}
    assert {"Jürgen Weiß", "佐藤 陽菜", "Анна Смирнова", "王芳"} & decoded & known
    assert names > 10


def test_transfer_encodings_are_varied(wide):
    raw = b"".join(m.raw for m in wide[:600])
    for cte in (b"quoted-printable", b"base64", b"7bit", b"8bit"):
        assert b"Content-Transfer-Encoding: " + cte in raw


# ---- structure of the special kinds ---------------------------------------------------------


def png_is_valid(data: bytes) -> bool:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    position, pixels = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        if zlib.crc32(kind + chunk) & 0xFFFFFFFF != crc:
            return False
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        if kind == b"IDAT":
            pixels += chunk
        position += 12 + length
    return len(zlib.decompress(pixels)) == height * (width * 3 + 1)


def test_newsletters_have_inline_images_and_a_tracking_pixel(demo, parsed):
    newsletters = [(g, m) for g, m in zip(demo, parsed, strict=True) if g.kind == "newsletter"]
    assert newsletters
    for _generated, message in newsletters:
        assert message["List-Id"] and message["List-Unsubscribe"]
        html = message.get_body(preferencelist=("html",)).get_content()
        assert 'src="https://' in html and "open.gif" in html
        inline = [p for p in message.walk() if p["Content-ID"]]
        assert len(inline) == 2
        for part in inline:
            assert f"cid:{part['Content-ID'].strip('<>')}" in html
            assert png_is_valid(part.get_content())


def test_attachments_are_real_files_within_the_size_cap():
    messages = list(corpus.generate(400, seed=11, attachment_max_bytes=60_000))
    kinds = Counter()
    for generated in messages:
        if not generated.attachments:
            continue
        message = PARSER.parsebytes(generated.raw)
        for part in message.iter_attachments():
            if part.get_content_type() == "message/rfc822":
                continue
            data = part.get_payload(decode=True)
            assert len(data) <= 60_000 + 2_000, part.get_filename()
            assert part.get_filename() in generated.attachments
            kind = part.get_content_type()
            kinds[kind] += 1
            if kind == "application/pdf":
                assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
                offset = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
                assert data[offset : offset + 4] == b"xref"
            elif kind == "image/png":
                assert png_is_valid(data)
            elif kind == "text/csv":
                assert data.decode("utf-8-sig").startswith("sku")
    assert {"application/pdf", "image/png", "text/csv"} <= set(kinds)


def test_attachment_sizes_reach_the_cap_only_rarely():
    sizes = []
    for generated in corpus.generate(3000, seed=2, attachment_max_bytes=400_000):
        if generated.attachments:
            sizes.append(len(generated.raw))
    assert len(sizes) > 200
    small = sum(size < 60_000 for size in sizes)
    large = sum(size > 250_000 for size in sizes)
    assert small > 0.7 * len(sizes)
    assert 0 < large < 0.05 * len(sizes)


def test_bounces_auto_replies_lists_and_forwards_are_marked_as_such(wide):
    seen = Counter()
    for generated in wide:
        if generated.kind not in ("bounce", "list", "forward", "notification"):
            continue
        message = PARSER.parsebytes(generated.raw)
        seen[generated.kind] += 1
        if generated.kind == "bounce":
            assert message.get_content_type() == "multipart/report"
            assert message.get_param("report-type") == "delivery-status"
            assert message["Auto-Submitted"] == "auto-replied"
            types = [p.get_content_type() for p in message.walk()]
            assert "message/delivery-status" in types and "message/rfc822" in types
            assert message["From"].addresses[0].username == "MAILER-DAEMON"
        elif generated.kind == "list":
            assert message["List-Id"] and message["Precedence"] == "list"
            assert generated.subject.removeprefix("Re: ").startswith("[relay-users] ")
        elif generated.kind == "notification":
            assert message["From"].addresses[0].username == "noreply"
        elif generated.kind == "forward":
            assert generated.subject.split(" ", 1)[0] in ("Fwd:", "WG:", "TR", "RV:", "転送:") or (
                generated.subject.startswith(("TR : ", "转发："))
            )
            inner = [p for p in message.walk() if p.get_content_type() == "message/rfc822"]
            if inner:
                forwarded = inner[0].get_content()
                assert forwarded["Message-ID"] and forwarded["From"]
            else:
                assert "---------- Forwarded message ---------" in main_text(message)
    assert all(seen[kind] for kind in ("bounce", "list", "forward", "notification")), seen


def test_cc_lines_name_several_people(demo, parsed):
    cc_counts = [len(m["Cc"].addresses) for m in parsed if m["Cc"]]
    assert cc_counts and max(cc_counts) >= 2


# ---- the demo set ---------------------------------------------------------------------------


def test_the_demo_set_has_every_kind_of_mail(demo):
    kinds = Counter(m.kind for m in demo)
    languages = {m.language for m in demo}
    assert len(demo) == 300
    assert sum(m.has_html for m in demo) >= 50
    assert sum(bool(m.attachments) for m in demo) >= 20
    assert len(languages) >= 4
    assert sum(m.folder == corpus.SENT for m in demo) >= 30
    assert sum(bool(m.in_reply_to) for m in demo) >= 80
    for kind in ("request", "reply", "staff_reply", "outbound", "newsletter", "list", "forward"):
        assert kinds[kind] > 0, kind
    assert kinds["auto_reply"] + kinds["bounce"] > 0
    assert any("[TKT-" in m.subject for m in demo)


def test_demo_senders_come_from_the_cast(demo):
    cast = {p.email for p in corpus.demo_people()}
    requests = [m for m in demo if m.kind in ("request", "reply")]
    assert requests and all(m.sender in cast for m in requests)
    assert any(m.sender not in cast for m in demo if m.kind == "cold")


def test_custom_people_write_the_mail():
    people = [
        corpus.Person("Ada", "Staff", "ada@ourco.example", "OurCo", role="staff"),
        corpus.Person("Bo", "Buyer", "bo@client.example", "Client Ltd"),
        corpus.Person("Cy", "Buyer", "cy@client.example", "Client Ltd", language="de"),
    ]
    messages = list(
        corpus.generate(60, seed=4, people=people, mailbox_address="help@ourco.example")
    )
    senders = {m.sender for m in messages if m.kind in ("request", "reply")}
    assert senders and senders <= {"bo@client.example", "cy@client.example"}
    staff = {m.sender for m in messages if m.kind == "staff_reply"}
    assert staff <= {"help@ourco.example"}
    with pytest.raises(ValueError):
        corpus.generate(5, people=people[:1])


def test_demo_cast_is_plain_data_matching_the_companies():
    people = corpus.demo_people()
    companies = {c.name: c for c in corpus.demo_companies()}
    assert len({p.email for p in people}) == len(people)
    staff = [p for p in people if p.role == "staff"]
    assert staff and all(p.domain == "relay.example" for p in staff)
    free = [p for p in people if p.domain in ("gmail.com", "outlook.com")]
    assert len(free) >= 2 and all(not p.company for p in free)
    for person in people:
        if person.role == "contact" and person.company:
            assert companies[person.company].domain == person.domain
        assert person.first_name in person.name and person.last_name in person.name
        assert person.email.endswith("@" + person.domain)
    assert {p.language for p in people} >= {"en", "de", "fr", "es", "ja", "ru", "zh"}
    assert corpus.demo_companies()[0].domain == "acme-logistics.example"


# ---- files ----------------------------------------------------------------------------------


def test_mbox_round_trip(tmp_path, demo):
    path = tmp_path / "demo.mbox"
    assert corpus.write_mbox(path, demo) == len(demo)
    box = mailbox.mbox(path)
    try:
        stored = [box.get_bytes(key) for key in box.keys()]
    finally:
        box.close()
    assert len(stored) == len(demo)
    for generated, data in zip(demo, stored, strict=True):
        assert data.rstrip(b"\n") == generated.raw.replace(b"\r\n", b"\n").rstrip(b"\n")
    first_line = path.read_bytes().split(b"\n", 1)[0]
    assert first_line.startswith(b"From " + demo[0].sender.encode() + b" ")
    corpus.write_mbox(tmp_path / "again.mbox", demo)
    assert (tmp_path / "again.mbox").read_bytes() == path.read_bytes()


def test_mbox_quotes_from_lines(tmp_path):
    message = next(iter(corpus.generate(1)))
    tricky = corpus.GeneratedMessage(
        **{
            **{f: getattr(message, f) for f in corpus.GeneratedMessage.__dataclass_fields__},
            "raw": message.raw + b"From here on\r\n",
        }
    )
    corpus.write_mbox(tmp_path / "t.mbox", [tricky, message])
    assert len(mailbox.mbox(tmp_path / "t.mbox")) == 2


def test_eml_dir_one_file_per_message_by_folder(tmp_path, demo):
    paths = corpus.write_eml_dir(tmp_path / "eml", demo[:50])
    assert len(paths) == 50
    assert {p.parent.name for p in paths} == {m.folder for m in demo[:50]}
    assert [p.read_bytes() for p in paths] == [m.raw for m in demo[:50]]
