"""Structured logs: one line per event, with the mailbox and message ids, and never a
secret.

`StructuredFormatter` writes logfmt (`ts=... level=INFO logger=connector.sync event="..."
mailbox_id=3 message_id=81`) or, with `style="json"`, one JSON object per line; a traceback is
folded into the same line, so a log shipper never splits an event. Ids come from `extra=` on
the logging call (`log.info("...", extra={"mailbox_id": m.pk})`), from the Celery task running
(`task`, `task_id`, and `mailbox_id` for a sync), and, for the older calls that put them in the
text (`mailbox=3 folder=7`), are also lifted out of the message.

`RedactSecretsFilter` sits on the handler: whatever a message, its arguments or its extras hold
(a password in a URL, an IMAP LOGIN line, an XOAUTH2 or Bearer token, `password=...` or
`"refresh_token": "..."`) is replaced by [redacted] before any formatter sees it. The
credentials themselves never print (inbox.crypto.Secret); this is the net under third-party
messages (imaplib, smtplib, kombu, psycopg) that quote what they were given
(docs/reliability.md C-01).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

REDACTED = "[redacted]"

# Names of fields whose value is a secret wherever it appears (key=value, key: value, JSON).
_SECRET_NAMES = (
    r"password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|id_token|"
    r"api_key|apikey|authorization|sessionid|csrftoken|cookie|code_verifier|secret_key"
)
_PATTERNS = [
    # scheme://user:password@host (DATABASE_URL, REDIS_URL, broker URLs in kombu errors)
    (re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.I), r"\g<pre>"),
    # "Authorization: Bearer x", "Bearer x", "Basic x"
    (re.compile(r"(?P<pre>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\g<pre>"),
    # IMAP: "a001 LOGIN user password", SMTP/IMAP: "AUTH(ENTICATE) PLAIN|XOAUTH2|LOGIN <b64>".
    # Upper case only, as the protocols' clients write them: "login failed for x" is prose.
    (re.compile(r"(?P<pre>\bLOGIN +\S+ +)\S+"), r"\g<pre>"),
    (
        re.compile(r"(?P<pre>\bAUTH(?:ENTICATE)? +(?:PLAIN|XOAUTH2|LOGIN|OAUTHBEARER) +)\S+"),
        r"\g<pre>",
    ),
    (re.compile(r"(?P<pre>\buser=[^\x01\s]*\x01auth=Bearer\s)[^\x01\s]+", re.I), r"\g<pre>"),
    # JSON or dict style: "password": "x", 'refresh_token': 'x'
    (
        re.compile(rf"(?P<pre>[\"'](?:{_SECRET_NAMES})[\"']\s*:\s*[\"'])[^\"']*(?=[\"'])", re.I),
        r"\g<pre>",
    ),
    # key=value and key: value (value up to whitespace, comma, ampersand or quote)
    (
        re.compile(rf"(?P<pre>\b(?:{_SECRET_NAMES})\s*[=:]\s*)(?![\s\"'\[])[^\s,&\"']+", re.I),
        r"\g<pre>",
    ),
    # Fernet tokens (our encrypted columns) and JWTs, wherever they turn up
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), ""),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), ""),
]
_SECRET_KEY = re.compile(rf"^(?:{_SECRET_NAMES})$|password|secret|token", re.I)


def redact(text: str) -> str:
    """The text with anything that looks like a credential replaced by [redacted]."""
    if not text:
        return text
    for pattern, keep in _PATTERNS:
        text = pattern.sub(lambda m, keep=keep: m.expand(keep) + REDACTED, text)
    return text


# Attributes every LogRecord has: whatever else is on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Ids written into older messages as "mailbox=3 folder=7 uid=12": lifted out as fields.
_INLINE_IDS = re.compile(r"\b(mailbox|message|folder|entry)(?:_id)?=(\d+)\b")


def extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactSecretsFilter(logging.Filter):
    """Redacts the message (after %-formatting with its arguments) and string extras in place.
    Always lets the record through: it changes what is logged, never whether."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we have, still redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        for key, value in extras(record).items():
            if _SECRET_KEY.search(key):
                setattr(record, key, REDACTED)
            elif isinstance(value, str):
                setattr(record, key, redact(value))
        return True


# Tasks whose first argument is a mailbox id: every line logged while one runs carries it.
MAILBOX_TASKS = {"relay.sync_mailbox"}


def _task_fields() -> dict:
    """The Celery task this line was logged from, if any: its name and id, and the mailbox it
    works on, so a worker's lines can be grouped per task and per mailbox."""
    from celery._state import get_current_task

    task = get_current_task()
    request = getattr(task, "request", None)
    if task is None or request is None or not getattr(request, "id", None):
        return {}
    fields = {"task": task.name, "task_id": request.id}
    args = getattr(request, "args", None) or ()
    if task.name in MAILBOX_TASKS and args and isinstance(args[0], int):
        fields["mailbox_id"] = args[0]
    return fields


def _logfmt_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not re.search(r'[\s="\\]', text):
        return text
    return json.dumps(text, ensure_ascii=False)


class StructuredFormatter(logging.Formatter):
    """One line per event: logfmt by default, JSON with style="json"."""

    def __init__(self, *args, style: str = "logfmt", **kwargs):
        super().__init__()
        self.output = "json" if style == "json" else "logfmt"

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        fields = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "event": message,
        }
        fields.update(_task_fields())
        for name, value in _INLINE_IDS.findall(message):
            fields.setdefault(f"{name}_id", int(value))
        for key, value in extras(record).items():
            if key in ("ts", "level", "logger", "event"):
                key = f"extra_{key}"
            fields[key] = REDACTED if _SECRET_KEY.search(key) else value
        if record.processName not in ("MainProcess", None):
            fields["process"] = record.processName
        if record.exc_info:
            fields["error"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            fields["error"] = redact(record.exc_text)
        if self.output == "json":
            return json.dumps(fields, default=str, ensure_ascii=False)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())
