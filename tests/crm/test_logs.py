"""Structured logs: one line per event with mailbox and message ids, never a secret
(docs/reliability.md C-01), as configured in settings.LOGGING."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from pathlib import Path

import pytest
from django.conf import settings

from crm.logs import RedactSecretsFilter, StructuredFormatter, redact

CANARY = "Canary-s3cr3t-7Q"


@pytest.fixture
def captured():
    """The console handler exactly as settings.LOGGING builds it, writing to a buffer."""
    config = json.loads(json.dumps(settings.LOGGING))
    config["handlers"]["console"]["stream"] = "ext://sys.stderr"
    stream = io.StringIO()
    logging.config.dictConfig({**config, "root": {"handlers": [], "level": "DEBUG"}})
    handler = logging.getHandlerByName("console")
    handler.setStream(stream)
    logger = logging.getLogger("relay.test.structured")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logging.config.dictConfig(settings.LOGGING)


def lines(stream) -> list[str]:
    return stream.getvalue().splitlines()


def test_one_line_per_event_with_the_ids(captured):
    logger, stream = captured
    logger.info("stored a batch", extra={"mailbox_id": 3, "message_id": 81, "stored": 12})
    logger.warning("message failed mailbox=4 folder=9 uid=12 attempts=2 error=%s", "bad\nMIME")
    out = lines(stream)
    assert len(out) == 2
    first, second = out
    assert " level=INFO logger=relay.test.structured " in first
    assert 'event="stored a batch"' in first
    assert "mailbox_id=3 message_id=81 stored=12" in first
    # Older calls put the ids in the text: they are fields all the same.
    assert "mailbox_id=4" in second and "folder_id=9" in second
    assert "\\n" in second  # the line break in the value is escaped: still one line


def test_a_traceback_stays_on_the_event_line(captured):
    logger, stream = captured
    try:
        raise ValueError(f"could not log in with password={CANARY}")
    except ValueError:
        logger.exception("sync failed", extra={"mailbox_id": 5})
    out = lines(stream)
    assert len(out) == 1
    assert "mailbox_id=5" in out[0] and "ValueError" in out[0]
    assert CANARY not in out[0]


@pytest.mark.parametrize(
    "text",
    [
        f"connecting to postgres://relay:{CANARY}@db:5432/relay",
        f"redis://:{CANARY}@redis:6379/0 refused",
        f"> b'a001 LOGIN ana@acme.example {CANARY}'",
        f"AUTH PLAIN {CANARY}",
        f"AUTHENTICATE XOAUTH2 {CANARY}",
        f"Authorization: Bearer {CANARY}",
        f"token response {{'access_token': '{CANARY}', 'expires_in': 3600}}",
        f'{{"refresh_token": "{CANARY}"}}',
        f"password={CANARY} user=ana",
        f"client_secret: {CANARY}",
        f"stored gAAAAAB{CANARY}xxxxxxxxxxxxxxxxxxxxxxxx in the row",
    ],
)
def test_secrets_are_redacted_wherever_they_appear(captured, text):
    logger, stream = captured
    logger.error("%s", text)
    assert CANARY not in stream.getvalue()
    assert "[redacted]" in stream.getvalue()


def test_secret_extras_are_redacted_and_ordinary_text_is_left_alone(captured):
    logger, stream = captured
    logger.info("login failed for ana@acme.example", extra={"password": CANARY, "token": "x"})
    out = stream.getvalue()
    assert CANARY not in out
    assert 'event="login failed for ana@acme.example"' in out  # prose is not redacted
    assert "password=[redacted]" in out and "token=[redacted]" in out


def test_json_style_is_one_object_per_line():
    record = logging.LogRecord("connector.sync", logging.INFO, __file__, 1, "synced %s", (7,), None)
    record.mailbox_id = 7
    RedactSecretsFilter().filter(record)
    data = json.loads(StructuredFormatter(style="json").format(record))
    assert data["event"] == "synced 7" and data["mailbox_id"] == 7 and data["level"] == "INFO"


def test_redact_keeps_what_is_not_a_secret():
    text = "mailbox=3 uid=12 outcome=stored subject='Password reset' from=ana@acme.example"
    assert redact(text) == text


def test_lines_logged_inside_a_sync_task_carry_the_task_and_the_mailbox(captured):
    from celery import shared_task

    logger, stream = captured

    @shared_task(name="relay.sync_mailbox_log_probe", bind=True)
    def probe(self, mailbox_id):
        logger.info("working")

    import crm.logs as structured

    structured.MAILBOX_TASKS.add("relay.sync_mailbox_log_probe")
    try:
        probe.apply(args=(42,), task_id="t-123")
    finally:
        structured.MAILBOX_TASKS.discard("relay.sync_mailbox_log_probe")
    line = lines(stream)[0]
    assert "task=relay.sync_mailbox_log_probe task_id=t-123 mailbox_id=42" in line


# --- The corpus (docs/reliability.md C-24) ----------------------------------------------------

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
SECRET = re.compile(r"⟦(.*?)⟧")


def secret_cases() -> list[list[str]]:
    cases, case = [], []
    for line in (CORPUS / "secrets.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if case:
                cases.append(case)
            case = []
            continue
        case.append(line)
    if case:
        cases.append(case)
    return cases


def test_the_corpus_is_big_enough():
    cases = secret_cases()
    assert len(cases) >= 40
    assert all(SECRET.search("\n".join(case)) for case in cases)


@pytest.mark.parametrize("case", secret_cases(), ids=lambda case: SECRET.sub("…", case[0])[:60])
def test_no_secret_of_the_corpus_survives(captured, case):
    """Each case logged line by line (one record a line, as a protocol trace is written) and
    then as one record: no secret, nor any word of one, is in what the handler writes."""
    logger, stream = captured
    secrets = [s for line in case for s in SECRET.findall(line)]
    plain = [SECRET.sub(lambda m: m.group(1), line) for line in case]
    for line in plain:
        logger.info("%s", line)
    logger.info("%s", "\r\n".join(plain))
    out = stream.getvalue()
    words = {w for s in secrets for w in re.split(r"[\s\"'\\]+", s) if len(w) >= 4}
    assert [s for s in secrets if s in out] == []
    assert [w for w in words if w in out] == []
    assert "[redacted]" in out


def test_ordinary_lines_are_left_exactly_as_they_were(captured):
    logger, stream = captured
    ordinary = [
        line
        for line in (CORPUS / "ordinary.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(ordinary) >= 25
    changed = [(line, redact(line)) for line in ordinary if redact(line) != line]
    assert changed == []
    # Through the handler too, one record a line: nothing carries over into the next line.
    for line in ordinary:
        logger.info("%s", line)
    assert "[redacted]" not in stream.getvalue()
