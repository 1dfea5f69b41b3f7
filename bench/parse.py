"""Parser throughput: stdlib `email` (compat32, default), fast-mail-parser, and ours.

Run by hand, not in CI:

    .venv/bin/python bench/parse.py [--messages 3000] [--seed 7]
    .venv/bin/python bench/parse.py --stages [--messages 1000] [--rounds 3] [--against DIR]

`--stages` (issue #17) measures CPU milliseconds a message, on bench/realistic.py's real-sized
mail, of three stages of the sync: `parse_message` alone, the parse pool's whole prepare (hash,
gzip pack, parse, attachment blobs, and the pickling to and from the pool: the worker's CPU
plus its pool processes'), and the worker's store of the prepared batches (batches of 500, its
own CPU and its PostgreSQL backend's). Each round runs each tree in a fresh process (its own
data folder, a new mailbox in the database of `DATABASE_URL`, migrated), `--against DIR` being
another checkout (e.g. `git worktree add /tmp/engine-base <commit>`), interleaved, and the
best round counts: on a shared machine CPU time is the figure that holds, not wall time.

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


# --- --stages: CPU per message of parse, prepare and store (issue #17) -----------------------

STAGES = ("parse", "prepare", "store", "postgres")


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a process (all its threads) from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stages_child(root: str, corpus_file: str, batch: int) -> None:
    """In a fresh process, the engine imported from `root`: prints one RESULT line."""
    import json
    import pickle
    import tempfile

    sys.path.insert(0, root)
    data = tempfile.mkdtemp(prefix="relay-stages-")
    os.environ["RELAY_DATA_DIR"] = data
    os.environ.pop("MEDIA_ROOT", None)
    import django

    django.setup()
    from django.db import connection

    from connector.ingest import pool
    from connector.ingest.mime import parse_message
    from connector.ingest.prepare import Fetched
    from connector.ingest.store import store_batch
    from inbox.models import Folder, Mailbox

    assert pool.__file__.startswith(root), pool.__file__
    with open(corpus_file, "rb") as fh:
        corpus: list[tuple[bytes, object]] = pickle.load(fh)
    count = len(corpus)
    out: dict[str, float] = {}

    for raw, when in corpus[:50]:  # warm up caches and lazy imports
        parse_message(raw, internal_date=when)
    started = time.process_time()
    for raw, when in corpus:
        parse_message(raw, internal_date=when)
    out["parse"] = (time.process_time() - started) / count * 1e3

    items = [
        Fetched(uid=i + 1, raw=raw, flags=("\\Seen",), internal_date=when, size=len(raw))
        for i, (raw, when) in enumerate(corpus)
    ]
    batches = [items[i : i + batch] for i in range(0, count, batch)]

    def new_folder(name: str) -> Folder:
        mailbox = Mailbox.objects.create(
            kind=Mailbox.Kind.SHARED,
            email_address=f"stages-{name}-{os.getpid()}@relay.example",
            login=f"stages-{name}-{os.getpid()}",
            imap_host="127.0.0.1",
            imap_port=143,
            imap_security="none",
            active_folders=[],
        )
        return Folder.objects.create(
            mailbox=mailbox, name="INBOX", special_use=Folder.SpecialUse.INBOX
        )

    folder, warm = new_folder("measured"), new_folder("warm-up")
    assert pool.warm_pool(), "no parse pool (RELAY_PARSE_WORKERS below 2?)"
    workers = [p.pid for p in pool._get_pool()._processes.values()]
    # A sync keeps its pool and its connections for every batch: warm them up (imports, heap,
    # Celery's producer) first, on messages from the end of the corpus, in another mailbox.
    warm_up = pool.PreparedBatch(warm.mailbox_id, items[-64:]).result()
    before = time.process_time() + sum(map(_proc_cpu, workers))
    prepared = [pool.PreparedBatch(folder.mailbox_id, b).result() for b in batches]
    out["prepare"] = (time.process_time() + sum(map(_proc_cpu, workers)) - before) / count * 1e3
    pool._drop_pool()

    class Done:
        def __init__(self, result):
            self._result = result

        def result(self):
            return self._result

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    store_batch(folder=warm, uidvalidity=1, items=items[-64:], lease=None, prepared=Done(warm_up))
    stored = 0
    before, pg_before = time.process_time(), _proc_cpu(backend)
    for b, p in zip(batches, prepared, strict=True):
        result = store_batch(
            folder=folder, uidvalidity=1, items=b, lease=None, initial=True, prepared=Done(p)
        )
        stored += result.stored
    out["store"] = (time.process_time() - before) / count * 1e3
    out["postgres"] = (_proc_cpu(backend) - pg_before) / count * 1e3
    out["stored"] = stored
    Mailbox.objects.filter(pk__in=[folder.mailbox_id, warm.mailbox_id]).delete()
    import shutil

    shutil.rmtree(data, ignore_errors=True)
    print("RESULT " + json.dumps(out), flush=True)


def _stages(args) -> None:
    import json
    import pickle
    import subprocess
    import tempfile

    here = Path(__file__).resolve()
    sys.path.insert(0, str(here.parent))
    import realistic

    trees = {"this tree": str(here.parent.parent)}
    if args.against:
        trees = {"against": str(Path(args.against).resolve()), **trees}
    corpus = [(m.raw, m.date) for m in realistic.generate(args.messages, seed=args.seed)]
    size = sum(len(raw) for raw, _ in corpus) / len(corpus)
    print(
        f"{len(corpus)} messages of bench/realistic.py (seed {args.seed}), {size / 1e3:.1f} KB avg"
    )
    with tempfile.NamedTemporaryFile(suffix=".pickle") as fh:
        pickle.dump(corpus, fh)
        fh.flush()
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, root in trees.items():
                done = subprocess.run(
                    [
                        sys.executable,
                        str(here),
                        "--stages-child",
                        root,
                        fh.name,
                        "--batch",
                        str(args.batch),
                    ],
                    capture_output=True,
                    text=True,
                    cwd=root,
                )
                line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
                result = json.loads(line[0][7:])
                runs[name].append(result)
                figures = "  ".join(f"{s} {result[s]:.3f}" for s in STAGES)
                stored = result["stored"]
                print(f"round {round_ + 1} {name:<10} ms/msg: {figures}  stored {stored:.0f}")
    print(f"\nbest of {args.rounds} rounds, CPU ms a message (load: {os.getloadavg()[0]:.1f}):")
    print(
        f"{'stage':<10}"
        + "".join(f"{name:>12}" for name in trees)
        + ("   ratio" if args.against else "")
    )
    total = {name: 0.0 for name in trees}
    for stage in STAGES:
        best = {name: min(r[stage] for r in runs[name]) for name in trees}
        if stage != "parse":  # parse is part of prepare
            for name in trees:
                total[name] += best[name]
        ratio = f"   {best['this tree'] / best['against']:.2f}x" if args.against else ""
        print(f"{stage:<10}" + "".join(f"{best[n]:>12.3f}" for n in trees) + ratio)
    ratio = f"   {total['this tree'] / total['against']:.2f}x" if args.against else ""
    print(f"{'sum':<10}" + "".join(f"{total[n]:>12.3f}" for n in trees) + ratio)
    for name in trees:
        print(
            f"{name}: prepare + store + PostgreSQL = {total[name]:.3f} ms a message: "
            f"{2000 / total[name]:,.0f} msg/s on 2 idle cores (Dovecot's CPU not counted)"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--stages-child":
        batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 500
        _stages_child(sys.argv[2], sys.argv[3], batch)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stages", action="store_true", help="CPU per message by stage")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--against", default="", help="--stages: another checkout to compare")
    parser.add_argument(
        "--corpus",
        choices=["bench", "relay", "both"],
        default="both",
        help="bench: built here; relay: demo.corpus, the generator bench/sync.py uses",
    )
    args = parser.parse_args()
    if args.stages:
        if "--seed" not in sys.argv:
            args.seed = 1
        if "--messages" not in sys.argv:
            args.messages = 1000
        _stages(args)
        return

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
