"""Parser throughput: stdlib `email` (compat32, default), fast-mail-parser, and ours.

Run by hand, not in CI:

    .venv/bin/python bench/parse.py [--messages 3000] [--seed 7]

Builds a reproducible corpus in memory (plain, HTML+text alternatives, attachments from a few KB
to ~2 MB, many charsets, threads with In-Reply-To/References, realistic Received/DKIM header
blocks, some auto-replies, bounces and list mail), then parses every message with each option
and prints messages per second and the ratio of ours to each baseline. The whole sync must
reach >= 1,500 msg/s on 2 cores (bench/README.md), so the parser alone must stay well above that.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import multiprocessing
import os
import random
import statistics
import sys
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")

WORDS = (
    "invoice meeting proposal contract renewal quarterly report customer support ticket "
    "pricing discount delivery schedule update question follow-up agenda budget forecast "
    "shipment order account password reset onboarding training feedback review"
).split()

# (charset, sample text) pairs in the scripts our users actually receive.
NATIONAL = [
    ("iso-8859-1", "Grüße aus München, bitte prüfen Sie die Rechnung."),
    ("windows-1252", "Réunion prévue jeudi à 14h — merci de confirmer."),
    ("koi8-r", "Здравствуйте, высылаю счёт на оплату."),
    ("shift_jis", "お世話になっております。見積書を添付いたします。"),
    ("iso-2022-jp", "会議の議事録を送ります。ご確認ください。"),
    ("gb2312", "您好，附件是本季度的报价单。"),
    ("utf-8", "Olá, segue em anexo a proposta. Ελπίζω να είστε καλά. 🙂"),
    ("big5", "您好，請查收附件中的合約。"),
]

PEOPLE = [
    ("Ana Souza", "ana@acme.test"),
    ("Björn Lindqvist", "bjorn@nordic.test"),
    ("Chen Wei", "chen.wei@example.cn"),
    ("Dmitri Ivanov", "d.ivanov@example.ru"),
    ("Émilie Durand", "emilie@exemple.fr"),
    ("Hiroshi Tanaka", "tanaka@example.jp"),
    ("Support", "support@relay.test"),
    ("Olivia Owner", "olivia@relay.test"),
]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _paragraphs(rng: random.Random, count: int) -> str:
    return "\n\n".join(_sentence(rng, rng.randint(8, 30)) for _ in range(count))


def _trace_headers(rng: random.Random, msg: EmailMessage) -> None:
    for hop in range(rng.randint(3, 8)):
        msg["Received"] = (
            f"from mx{hop}.example.net (mx{hop}.example.net [192.0.2.{hop}]) by "
            f"mail.relay.test with ESMTPS id {rng.getrandbits(48):x}; "
            "Mon, 3 Nov 2025 10:00:00 +0000"
        )
    msg["DKIM-Signature"] = (
        "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=sel; h=from:to:subject:date; "
        f"bh={base64.b64encode(rng.randbytes(32)).decode()}; "
        f"b={base64.b64encode(rng.randbytes(128)).decode()}"
    )
    msg["Authentication-Results"] = "mail.relay.test; dkim=pass; spf=pass; dmarc=pass"


def build_corpus(count: int, seed: int = 7) -> list[bytes]:
    """`count` realistic messages as raw bytes, the same for the same seed."""
    rng = random.Random(seed)
    corpus: list[bytes] = []
    thread_ids: list[str] = []
    for index in range(count):
        msg = EmailMessage()
        sender = rng.choice(PEOPLE)
        rcpts = rng.sample(PEOPLE, rng.randint(1, 4))
        charset, national = rng.choice(NATIONAL) if rng.random() < 0.35 else ("utf-8", "")
        subject = _sentence(rng, rng.randint(3, 9))
        if national:
            subject = national[:30]
        msg["From"] = f'"{sender[0]}" <{sender[1]}>'
        msg["To"] = ", ".join(f'"{n}" <{a}>' for n, a in rcpts)
        if rng.random() < 0.3:
            msg["Cc"] = ", ".join(a for _, a in rng.sample(PEOPLE, 2))
        msg["Subject"] = subject
        msg["Date"] = format_datetime(
            __import__("datetime").datetime(2025, 1, 1, tzinfo=__import__("datetime").UTC)
            + __import__("datetime").timedelta(minutes=index * 7)
        )
        msg_id = make_msgid(idstring=str(index), domain="bench.relay.test")
        msg["Message-ID"] = msg_id
        if thread_ids and rng.random() < 0.4:
            parents = rng.sample(thread_ids[-50:], min(len(thread_ids[-50:]), rng.randint(1, 5)))
            msg["In-Reply-To"] = parents[-1]
            msg["References"] = " ".join(parents)
            msg.replace_header("Subject", "Re: " + subject)
        thread_ids.append(msg_id)
        _trace_headers(rng, msg)
        roll = rng.random()
        if roll < 0.03:
            msg["Auto-Submitted"] = "auto-replied"
        elif roll < 0.08:
            msg["List-Id"] = "<news.example.net>"
            msg["List-Unsubscribe"] = "<mailto:leave@example.net>"
            msg["Precedence"] = "bulk"
        text = (national + "\n\n" if national else "") + _paragraphs(rng, rng.randint(1, 6))
        msg.set_content(text, charset=charset if national else "utf-8")
        if rng.random() < 0.55:
            html = "<html><body>" + "".join(
                f"<p style='margin:0 0 1em'>{p}</p>" for p in text.split("\n\n")
            )
            html += "<img src='cid:logo@bench'></body></html>"
            msg.add_alternative(html, subtype="html", charset=charset if national else "utf-8")
            if rng.random() < 0.3:
                msg.get_payload()[1].add_related(
                    rng.randbytes(rng.randint(2_000, 20_000)),
                    maintype="image",
                    subtype="png",
                    cid="<logo@bench>",
                )
        if rng.random() < 0.25:
            for _ in range(rng.randint(1, 3)):
                size = rng.choice([5_000, 40_000, 120_000, 400_000, 2_000_000])
                size = size if size < 2_000_000 or rng.random() < 0.1 else 60_000
                msg.add_attachment(
                    rng.randbytes(size),
                    maintype="application",
                    subtype="pdf",
                    filename=f"{rng.choice(WORDS)}-{index}.pdf",
                )
        corpus.append(msg.as_bytes(policy=email.policy.SMTP))
    return corpus


def _time(label: str, fn, corpus: list[bytes]) -> tuple[float, int]:
    failures = 0
    started = time.perf_counter()
    for raw in corpus:
        try:
            fn(raw)
        except Exception:
            failures += 1
    elapsed = time.perf_counter() - started
    rate = len(corpus) / elapsed
    print(f"{label:<40} {rate:>9.0f} msg/s   failures {failures}")
    return rate, failures


def _stdlib_compat32(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in msg.walk():
        part.get_payload(decode=True)


def _stdlib_default(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        if not part.is_multipart():
            part.get_content()
    str(msg["subject"]), msg["from"], msg["to"]


_SHARED: list[bytes] = []  # the corpus, inherited by forked workers (no pickling of bytes)


def _parse_range(bounds: tuple[int, int]) -> int:
    from connector.ingest import mime

    for raw in _SHARED[bounds[0] : bounds[1]]:
        mime.parse_message(raw)
    return bounds[1] - bounds[0]


def _two_cores(corpus: list[bytes]) -> float:
    """parse_message in 2 forked processes, as two Celery worker processes would run it."""
    _SHARED[:] = corpus
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        pool.map(_parse_range, [(0, 10), (10, 20)])  # warm up imports in both workers
        step = 50
        chunks = [(i, min(i + step, len(corpus))) for i in range(0, len(corpus), step)]
        started = time.perf_counter()
        done = sum(pool.map(_parse_range, chunks, chunksize=1))
        elapsed = time.perf_counter() - started
    rate = done / elapsed
    print(f"{'ours, 2 processes':<40} {rate:>9.0f} msg/s")
    return rate


def _measure(label: str, corpus: list[bytes]) -> None:
    from connector.ingest import mime

    total = sum(map(len, corpus))
    print(
        f"\n== {label}: {len(corpus)} messages, {total / 1e6:.1f} MB, median "
        f"{statistics.median(map(len, corpus)) / 1e3:.1f} KB"
    )
    rates: dict[str, float] = {}
    rates["stdlib compat32 (walk + decode)"], _ = _time(
        "stdlib compat32 (walk + decode)", _stdlib_compat32, corpus
    )
    rates["stdlib policy.default"], _ = _time("stdlib policy.default", _stdlib_default, corpus)
    try:
        import fast_mail_parser
    except ImportError:
        print("fast-mail-parser: not installed")
    else:
        rates["fast-mail-parser parse_email"], _ = _time(
            "fast-mail-parser parse_email", fast_mail_parser.parse_email, corpus
        )
        rates["fast-mail-parser parse_email_tree"], _ = _time(
            "fast-mail-parser parse_email_tree", fast_mail_parser.parse_email_tree, corpus
        )
    ours_stdlib, _ = _time(
        "ours, stdlib backend only",
        lambda raw: mime.parse_message(raw, backend="stdlib"),
        corpus,
    )
    ours, failures = _time("ours (parse_message)", mime.parse_message, corpus)
    two = _two_cores(corpus)

    latencies = []
    backends: dict[str, int] = {}
    for raw in corpus:
        t0 = time.perf_counter()
        parsed = mime.parse_message(raw)
        latencies.append(time.perf_counter() - t0)
        backends[parsed.backend] = backends.get(parsed.backend, 0) + 1
    latencies.sort()
    print(
        f"ours per message: p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms, "
        f"worst {latencies[-1] * 1e3:.2f} ms; backends used {backends}"
    )
    print(f"ours: {ours:.0f} msg/s on one core ({failures} failures), {two:.0f} on two")
    print(f"ours, stdlib backend only: {ours_stdlib:.0f} msg/s")
    for label, rate in rates.items():
        print(f"  ours / {label:<36} {ours / rate:6.2f}x")


def _hostile() -> None:
    """Time per hostile message with the caps on (docs/reliability.md §8.4: p99 <= 1 s)."""
    import importlib.util
    import tempfile

    from connector.ingest import mime

    root = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "eml"
    spec = importlib.util.spec_from_file_location("make_hostile", root / "make_hostile.py")
    make_hostile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_hostile)
    with tempfile.TemporaryDirectory() as directory:
        paths = sorted((root / "hostile").glob("*.eml")) + make_hostile.write_all(Path(directory))
        timings = []
        for path in paths:
            raw = path.read_bytes()
            for backend in ("auto", "stdlib"):
                t0 = time.perf_counter()
                try:
                    mime.parse_message(raw, backend=backend)
                except mime.MessageUnparseable:
                    pass
                timings.append((time.perf_counter() - t0, f"{path.name} ({backend})"))
    timings.sort()
    p99 = timings[int(len(timings) * 0.99)][0]
    print(f"\n== hostile corpus: {len(timings)} parses, p99 {p99 * 1e3:.0f} ms")
    for seconds, name in timings[-5:]:
        print(f"  {seconds * 1e3:8.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--corpus",
        choices=["bench", "relay", "both"],
        default="both",
        help="bench: built here; relay: demo.corpus, the generator bench/sync.py uses",
    )
    args = parser.parse_args()

    if args.corpus in ("bench", "both"):
        started = time.perf_counter()
        corpus = build_corpus(args.messages, args.seed)
        print(f"built the bench corpus in {time.perf_counter() - started:.1f} s")
        _measure("bench corpus (attachments up to 2 MB)", corpus)
    if args.corpus in ("relay", "both"):
        from demo import corpus as relay_corpus

        messages = [m.raw for m in relay_corpus.generate(args.messages, seed=args.seed)]
        _measure("connector.corpus (the demo/sync generator)", messages)
    _hostile()


if __name__ == "__main__":
    main()
