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

# Names of fields whose value is a secret wherever it appears (key=value, key: value, JSON),
# alone or at the end of a longer name (EMAIL_HOST_PASSWORD, smtp_pass, x-api-key).
_SECRET_NAMES = (
    r"password|passwd|pwd|passphrase|secret|client_secret|token|access_token|refresh_token|"
    r"id_token|auth_token|session_token|api_key|apikey|api-key|authorization|sessionid|"
    r"csrftoken|cookie|code_verifier|secret_key|private_key|credentials?"
)
_NAME = rf"(?<![\w-])(?:[\w-]*[_-])?(?:{_SECRET_NAMES}|pass)"
# A quoted value, either quote, backslash escapes honoured.
_QUOTED_VALUE = r"(?:(?!(?P=q))[^\\\r\n]|\\.)*"

_PATTERNS = [
    # scheme://user:password@host (DATABASE_URL, REDIS_URL, broker URLs in kombu errors); the
    # password runs to the last "@" of the authority, so an unencoded "@" in it leaks nothing.
    (re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/?#]*(?=@)", re.I), r"\g<pre>"),
    # https://<token>@host: a token as the whole user part (git remotes, webhooks)
    (re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://)[A-Za-z0-9_.~-]{20,}(?=@)", re.I), r"\g<pre>"),
    # Authorization / Proxy-Authorization / Cookie headers: the whole value, whatever its
    # scheme (Bearer, Basic, Token, Digest...), up to the end of the line or a closing quote.
    (
        re.compile(
            r"(?P<pre>(?<![\w-])(?:proxy-)?(?:authorization|(?:set-)?cookie)[\"']?\s*[:=]\s*"
            r"[\"']?(?:(?:Bearer|Basic|Token|Digest|Negotiate|NTLM|OAuth|Bot)\s+)?)"
            r"(?:[^\r\n\"'\\]|\"[^\"\r\n]*\"|\\.)+",
            re.I,
        ),
        r"\g<pre>",
    ),
    # "Bearer x", "Basic x" anywhere else (a token has a digit or a symbol, or is long: "Bearer
    # tokens are refreshed" is prose)
    (
        re.compile(
            r"(?P<pre>\b(?:Bearer|Basic)\s+)(?=[A-Za-z]*[0-9._~+/=-]|[A-Za-z]{16})"
            r"[A-Za-z0-9._~+/=-]+",
            re.I,
        ),
        r"\g<pre>",
    ),
    # XOAUTH2 in clear (user=...^Aauth=Bearer x) and base64-encoded ("user=" is "dXNlcj1")
    (re.compile(r"(?P<pre>\buser=[^\x01\s]*\x01auth=Bearer\s)[^\x01\s]+", re.I), r"\g<pre>"),
    (re.compile(r"\bdXNlcj1[A-Za-z0-9+/]{8,}={0,2}"), ""),
    # JSON or dict style: "password": "x", 'refresh_token': b'x', "api_key": 'it\'s'
    (
        re.compile(
            rf"(?P<pre>[\"'](?:[\w-]*[_-])?(?:{_SECRET_NAMES}|pass)[\"']\s*:\s*b?(?P<q>[\"']))"
            + _QUOTED_VALUE,
            re.I,
        ),
        r"\g<pre>",
    ),
    # key='value', key="value with spaces", Secret(password='x')
    (
        re.compile(rf"(?P<pre>{_NAME}\s*[=:]\s*b?(?P<q>[\"']))" + _QUOTED_VALUE, re.I),
        r"\g<pre>",
    ),
    # key=value and key: value (value up to whitespace, comma, ampersand or quote)
    (
        re.compile(rf"(?P<pre>{_NAME}\s*[=:]\s*)(?![\s\"'\[])[^\s,&\"']+", re.I),
        r"\g<pre>",
    ),
    # An OAuth authorization code in a callback URL's query string
    (re.compile(r"(?P<pre>[?&](?:code|code_verifier)=)[^\s&#\"']+", re.I), r"\g<pre>"),
    # Fernet tokens (our encrypted columns) and JWTs, wherever they turn up
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), ""),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), ""),
]
_SECRET_KEY = re.compile(rf"^(?:{_SECRET_NAMES})$|password|secret|token", re.I)

# --- Protocol lines: IMAP LOGIN and SASL, possibly spread over several lines -----------------
# A line of a protocol trace may carry a transport prefix ("> b'", "send: b'", "C: ") first.
_PREFIX = re.compile(r"(?:\s*(?:[<>]+|send:|reply:|[CS]:|\*cmd\*|\*resp\*)?\s*(?:b?[\"'])?)")
# The IMAP LOGIN command: upper case as clients send it, or lower case after a tag ("a1 login");
# "login failed for ana" is prose.
_LOGIN = re.compile(
    r"(?<![\w.-])(?<!AUTH )(?<!AUTHENTICATE )(?<!OK )(?<!NO )(?<!BAD )"
    r"(?:[A-Za-z]+\d+[ \t]+(?i:login)|LOGIN)[ \t]+"
)
_SASL_MECHS = (
    r"PLAIN|LOGIN|XOAUTH2|OAUTHBEARER|CRAM-MD5|DIGEST-MD5|NTLM|GSSAPI|SCRAM-SHA-\d+(?:-PLUS)?"
)
# AUTH / AUTHENTICATE <mechanism> [initial response], any case (clients and servers differ).
_SASL = re.compile(
    rf"(?<![\w-])AUTH(?:ENTICATE)?[ \t]+(?:{_SASL_MECHS})(?![\w-])(?P<gap>[ \t]*)"
    r"(?P<ir>[A-Za-z0-9+/=._~-]*)",
    re.I,
)
# A server line: a continuation request (IMAP "+", SMTP 334) or a final answer.
_CONTINUATION = re.compile(r"(?:\+(?:[ \t]|$|['\"\\])|334(?:[ \t-]|$))")
_FINAL = re.compile(r"(?:[A-Za-z]+\d+[ \t]+(?:OK|NO|BAD)\b|\*[ \t]|[2-5]\d\d(?:[ \t-]|$))")
_LITERAL = re.compile(r"\{(\d+)\+?\}(?=\s*(?:\\r\\n|\\n)?['\"]?\s*$)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# What may stand before a command on its line: an IMAP tag.
_COMMAND_START = re.compile(r"(?:[A-Za-z0-9.]+[ \t]+)?")
_BREAK = re.compile(r"(\r\n|\n|\r|\\r\\n|\\n)")


def _looks_secret(token: str) -> bool:
    """A SASL response, not a word: "AUTH LOGIN failed" stays prose, "AUTH PLAIN AGFu..."
    does not."""
    return len(token) >= 16 or bool(
        re.search(r"[0-9+/=]", token) or (re.search(r"[a-z]", token) and re.search(r"[A-Z]", token))
    )


class _Carry:
    """What a protocol line leaves pending for the lines after it: the rest of a LOGIN whose
    arguments are IMAP literals ({8} then the password on the next line), or the responses of
    a SASL exchange without an initial response."""

    __slots__ = ("arg", "literal", "sasl")

    def __init__(self, arg: int = 0, literal: int | None = None, sasl: int = 0):
        self.arg, self.literal, self.sasl = arg, literal, sasl


def _login_args(line: str, pos: int, arg: int) -> tuple[str, _Carry | None]:
    """Redact the password (second argument) of a LOGIN from ``pos``; arguments are atoms,
    quoted strings or literals. Returns the line and what is still pending."""
    while arg < 2:
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        rest = line[pos:]
        if not rest or re.fullmatch(r"(?:\\r\\n|\\n)?['\"]?\s*", rest):
            # An IMAP command is one line unless it sends a literal: a LOGIN that ends here
            # is prose ("LOGIN failed"), and the next line is not its password.
            return line, None
        literal = _LITERAL.match(rest)
        if literal:
            return line, _Carry(arg=arg, literal=int(literal.group(1)))
        quoted = _QUOTED.match(rest) if rest[0] == '"' else None
        end = pos + (quoted.end() if quoted else len(rest.split(None, 1)[0]))
        if arg == 1:
            line = line[:pos] + REDACTED + line[end:]
            end = pos + len(REDACTED)
        pos, arg = end, arg + 1
    return line, None


def _protocol_line(line: str, carry: _Carry | None) -> tuple[str, _Carry | None]:
    prefix = _PREFIX.match(line)
    start = prefix.end() if prefix else 0
    body = line[start:]
    if not body.strip(" \t'\""):
        return line, carry  # the closing quote of a bytes repr, an empty line
    if carry is not None:
        if _CONTINUATION.match(body):
            return line, carry  # the server asks for the next piece: still pending
        if _FINAL.match(body):
            carry = None  # the server answered: nothing more is coming
        elif carry.sasl:
            # A SASL response (base64 of the password, a token): the whole line.
            carry.sasl -= 1
            return line[:start] + REDACTED, carry if carry.sasl else None
        elif carry.literal is not None:
            if carry.arg == 1:  # the password literal: the whole rest of the line
                return line[:start] + REDACTED, None
            # The user name literal: N characters, then the rest of the command.
            return _login_args(line, start + carry.literal, carry.arg + 1)
        else:
            return _login_args(line, start, carry.arg)
    login = _LOGIN.search(line)
    if login:
        line, carry = _login_args(line, login.end(), 0)
        return line, carry
    sasl = _SASL.search(line)
    if sasl:
        response = sasl.group("ir")
        if response and _looks_secret(response):
            line = line[: sasl.start("ir")] + REDACTED + line[sasl.end("ir") :]
        elif (not response or response == "=") and _COMMAND_START.fullmatch(
            line[start : sasl.start()]
        ):
            # A command line without an initial response: the next client line(s) carry it
            # (AUTH LOGIN sends two). Prose that ends in "AUTH PLAIN" is no command.
            return line, _Carry(sasl=2)
    return line, None


def redact_lines(text: str, carry: _Carry | None = None) -> tuple[str, _Carry | None]:
    """``redact`` for one piece of a longer trace: ``carry`` is what the previous piece left
    pending (see ``_Carry``); returns the redacted text and what it leaves pending."""
    if not text:
        return text, carry
    for pattern, keep in _PATTERNS:
        text = pattern.sub(lambda m, keep=keep: m.expand(keep) + REDACTED, text)
    pieces = _BREAK.split(text)
    for index in range(0, len(pieces), 2):
        pieces[index], carry = _protocol_line(pieces[index], carry)
    return "".join(pieces), carry


def redact(text: str) -> str:
    """The text with anything that looks like a credential replaced by [redacted]."""
    return redact_lines(text)[0]


# Attributes every LogRecord has: whatever else is on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Ids written into older messages as "mailbox=3 folder=7 uid=12": lifted out as fields.
_INLINE_IDS = re.compile(r"\b(mailbox|message|folder|entry)(?:_id)?=(\d+)\b")


def extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactSecretsFilter(logging.Filter):
    """Redacts the message (after %-formatting with its arguments) and string extras in place.
    Always lets the record through: it changes what is logged, never whether."""

    def __init__(self, name: str = ""):
        super().__init__(name)
        # A protocol trace logs one line per record: what a LOGIN or AUTH line leaves pending
        # (a password sent as an IMAP literal on the next line) carries over to the next record
        # of the same logger and thread.
        self._carry: dict[tuple[str, int | None], _Carry] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we have, still redacted
            message = f"{record.msg} {record.args}"
        key = (record.name, record.thread)
        redacted, carry = redact_lines(message, self._carry.pop(key, None))
        if carry is not None:
            if len(self._carry) > 1000:  # abandoned exchanges: forget them, never grow
                self._carry.clear()
            self._carry[key] = carry
        record.msg, record.args = redacted, None
        for key, value in extras(record).items():
            if _SECRET_KEY.search(key):
                setattr(record, key, REDACTED)
            elif isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class UvicornFields(logging.Filter):
    """uvicorn's own lines (bin/web, docker-compose's gunicorn workers) as Relay's: an access
    line (`'%s - "%s %s HTTP/%s" %d'` with the client, method, path, HTTP version and status)
    becomes `event="GET /inbox/ 200" method=GET path=/inbox/ status=200 client=...`, and the
    ANSI-coloured copy of each message uvicorn attaches (`color_message`) is dropped. The path
    is redacted like any extra (a `?code=` of an OAuth callback), by RedactSecretsFilter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, http_version, status = args
            record.msg, record.args = "%s %s %s", (method, path, status)
            record.method, record.path, record.status = method, path, status
            record.http_version, record.client = http_version, client
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
