"""IMAP: the one place that talks to IMAP servers (docs/architecture.md).

Built on imap-tools (folder names, modified UTF-7, login helpers) and the imaplib client under
it, with what the sync needs and the traps both leave open:

- the socket goes to the address ``connector.transport.net`` vetted (SSRF guard), and TLS verifies
  the certificate against the host name the user typed, with ``ssl.create_default_context()``
  unless the mailbox explicitly allows an untrusted certificate (docs/reliability.md C-04);
- STARTTLS is required when chosen: a server that does not offer it is refused, never used
  in clear text (C-05); plain text only to allow-listed hosts (C-06);
- reading never changes a flag: folders are opened with EXAMINE and bodies fetched with
  BODY.PEEK[] (RFC 3501 6.4.5; imap-tools' ``fetch()`` would set \\Seen; S-17);
- ``UID FETCH n:*`` answers with the last message even when n is past it (RFC 3501 6.4.8):
  fetch results are filtered to the UIDs asked for (S-10);
- every library, socket and TLS error becomes one of ``connector.transport.errors``.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from imap_tools import errors as imap_tools_errors
from imap_tools.imap_utf7 import utf7_decode
from imap_tools.mailbox import BaseMailBox
from imap_tools.utils import encode_folder

from connector.transport import net
from connector.transport.errors import (
    AuthenticationFailed,
    MailError,
    PermanentFailure,
    TemporaryFailure,
)
from connector.transport.tls import check_security, tls_context

DEFAULT_TIMEOUT = 30.0

# RFC 6154 special-use attributes, plus the older Gmail XLIST names some servers still send.
SPECIAL_USE_FLAGS = {
    "\\sent": "sent",
    "\\drafts": "drafts",
    "\\trash": "trash",
    "\\junk": "junk",
    "\\archive": "archive",
    "\\all": "all",
    "\\flagged": "flagged",
    "\\inbox": "inbox",
    "\\spam": "junk",
    "\\allmail": "all",
    "\\starred": "flagged",
}

# Where a server gives no special-use attribute, the common names (English, German, French,
# Spanish, Italian, Dutch, Portuguese, Nordic, Polish) of Exchange, Outlook, Thunderbird,
# Apple Mail and webmail defaults. Matched on the last path segment, case-insensitively.
LOCALISED_NAMES = {
    "sent": (
        "sent|sent items|sent mail|sent messages|sent-mail|gesendet|gesendete elemente|"
        "gesendete objekte|gesendete nachrichten|envoyés|envoyes|éléments envoyés|"
        "elements envoyes|messages envoyés|enviados|elementos enviados|correo enviado|inviati|"
        "posta inviata|elementi inviati|verzonden|verzonden items|verzonden berichten|skickat|"
        "skickade objekt|sendt|sendte elementer|lähetetyt|wysłane|itens enviados"
    ),
    "drafts": (
        "drafts|draft|entwürfe|entwurf|brouillons|borradores|bozze|concepten|utkast|kladder|"
        "luonnokset|kopie robocze|rascunhos"
    ),
    "trash": (
        "trash|deleted items|deleted messages|deleted|bin|papierkorb|gelöschte elemente|"
        "gelöschte objekte|corbeille|éléments supprimés|elements supprimes|papelera|"
        "elementos eliminados|cestino|posta eliminata|elementi eliminati|prullenbak|"
        "verwijderde items|papperskorgen|borttagna objekt|papirkurv|slettede elementer|kosz|"
        "lixeira|itens excluídos"
    ),
    "junk": (
        "junk|spam|junk e-mail|junk email|junk mail|bulk mail|spamverdacht|junk-e-mail|"
        "courrier indésirable|courrier indesirable|indésirables|pourriel|correo no deseado|"
        "posta indesiderata|ongewenste e-mail|skräppost|uønsket e-post|wiadomości-śmieci|"
        "lixo eletrônico"
    ),
    "archive": "archive|archives|archiv|archivo|archivio|archief|arkiv",
}
_BY_NAME = {name: use for use, names in LOCALISED_NAMES.items() for name in names.split("|")}

# RFC 5530 response codes that mean "try again later" rather than "wrong password".
_TEMPORARY_CODES = ("UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG", "OVERQUOTA")
_CODE = re.compile(rb"\[([A-Z-]+)")


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapSettings:
    """What a connection needs. ``from_mailbox`` builds it from an inbox.Mailbox."""

    host: str
    port: int
    security: str  # "ssl" | "starttls" | "none"
    login: str
    password: str = ""
    access_token: str = ""  # XOAUTH2 when set
    allow_insecure_cert: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # never show the secrets in a log or a traceback
        return (
            f"ImapSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"login={self.login!r})"
        )

    @classmethod
    def from_mailbox(cls, mailbox, *, timeout: float = DEFAULT_TIMEOUT) -> ImapSettings:
        oauth = getattr(mailbox, "connection_type", "imap") in ("google", "microsoft")
        token = ""
        if oauth:
            from inbox.crypto import Secret

            token = Secret(mailbox.oauth_access_token_encrypted)
            token = token.reveal() if token else ""
        password = "" if oauth or not mailbox.password else _reveal(mailbox.password)
        if not (token if oauth else password):
            # Forgotten when the server settings changed (docs/reliability.md C-21): nothing to
            # log in with, so no connection is made at all; a person reconnects.
            raise AuthenticationFailed("no secret is stored for this mailbox", category="no_secret")
        return cls(
            host=mailbox.imap_host,
            port=int(mailbox.imap_port),
            security=mailbox.imap_security,
            login=mailbox.login_name,
            password=password,
            access_token=token,
            allow_insecure_cert=bool(mailbox.allow_insecure_cert),
            timeout=timeout,
        )


def _reveal(secret) -> str:
    return secret.reveal() if hasattr(secret, "reveal") else str(secret or "")


@dataclass(frozen=True)
class FolderInfo:
    name: str  # decoded from modified UTF-7 (RFC 3501 5.1.3)
    delimiter: str | None
    flags: tuple[str, ...]
    special_use: str  # "" or one of inbox.models.Folder.SpecialUse values
    selectable: bool


@dataclass(frozen=True)
class FolderStatus:
    messages: int
    uidnext: int | None
    uidvalidity: int
    highestmodseq: int | None  # None when the server has no CONDSTORE (RFC 7162)


@dataclass
class FetchedMessage:
    """One message as the server sent it. ``raw`` is None only when the server sent no body
    (then ``error`` says why); ``truncated`` when fewer bytes came than RFC822.SIZE said."""

    uid: int
    raw: bytes | None
    flags: tuple[str, ...] = ()
    internal_date: dt.datetime | None = None
    size: int | None = None
    modseq: int | None = None
    error: str = ""

    @property
    def truncated(self) -> bool:
        return self.raw is not None and self.size is not None and len(self.raw) != self.size


# --- errors -----------------------------------------------------------------------------------


def _response_code(exc: Exception) -> str:
    text = str(exc).encode(errors="replace")
    match = _CODE.search(text)
    return match[1].decode() if match else ""


@contextmanager
def mapped_errors(action: str = "IMAP") -> Iterator[None]:
    """Turn imaplib, imap-tools, ssl and socket errors into connector errors."""
    try:
        yield
    except MailError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise PermanentFailure(
            f"{action}: certificate not trusted: {exc.verify_message}", category="tls"
        ) from exc
    except ssl.SSLError as exc:
        raise PermanentFailure(f"{action}: TLS failed: {exc}", category="tls") from exc
    except TimeoutError as exc:
        raise TemporaryFailure(f"{action}: timed out") from exc
    except imaplib.IMAP4.readonly as exc:
        # SELECT answered READ-ONLY where we must write (imaplib makes it a kind of abort).
        raise PermanentFailure(f"{action}: the folder is read-only: {exc}") from exc
    except imaplib.IMAP4.abort as exc:
        # Connection lost, BYE, or an unparseable line after which the stream is unusable.
        raise TemporaryFailure(f"{action}: connection lost: {exc}") from exc
    except (imaplib.IMAP4.error, imap_tools_errors.MailboxTaggedResponseError) as exc:
        if _response_code(exc) in _TEMPORARY_CODES:
            raise TemporaryFailure(f"{action}: server busy: {exc}") from exc
        raise PermanentFailure(f"{action}: {exc}") from exc
    except imap_tools_errors.ImapToolsError as exc:
        if _response_code(exc) in _TEMPORARY_CODES:
            raise TemporaryFailure(f"{action}: server busy: {exc}") from exc
        raise PermanentFailure(f"{action}: {exc}") from exc
    except OSError as exc:
        raise TemporaryFailure(f"{action}: {exc.strerror or exc}") from exc


# --- connecting -------------------------------------------------------------------------------


class _VettedIMAP4(imaplib.IMAP4):
    """imaplib client whose socket goes to an address vetted by connector.transport.net."""

    def __init__(self, host: str, port: int, addresses: Sequence[str], timeout: float):
        self._addresses = list(addresses)
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return net.connect(self._addresses, self.port, timeout)


class _VettedIMAP4_SSL(imaplib.IMAP4_SSL):
    def __init__(self, host, port, addresses, timeout, ssl_context):
        self._addresses = list(addresses)
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = net.connect(self._addresses, self.port, timeout)
        try:
            # Verify against the name the user gave, not the address we connected to.
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _MailBox(BaseMailBox):
    """imap-tools over our own pre-built imaplib client."""

    def __init__(self, client: imaplib.IMAP4):
        self._client = client
        super().__init__()

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        return self._client


def _connect(s: ImapSettings) -> imaplib.IMAP4:
    check_security(s.host, s.security)
    addresses = net.resolve_allowed(s.host, s.port)
    with mapped_errors("IMAP connect"):
        if s.security == "ssl":
            return _VettedIMAP4_SSL(
                s.host, s.port, addresses, s.timeout, tls_context(s.allow_insecure_cert)
            )
        client = _VettedIMAP4(s.host, s.port, addresses, s.timeout)
        if s.security == "starttls":
            try:
                if "STARTTLS" not in client.capabilities:
                    # Never carry on in clear text (RFC 3501 6.2.1; docs/reliability.md C-05).
                    raise PermanentFailure("the server does not offer STARTTLS", category="tls")
                # imaplib reads the capabilities again after the handshake and starts a fresh
                # reader, so nothing sent before TLS is trusted afterwards (RFC 3501 6.2.1).
                client.starttls(tls_context(s.allow_insecure_cert))
            except BaseException:
                _shutdown(client)
                raise
        return client


def _shutdown(client: imaplib.IMAP4) -> None:
    try:
        client.shutdown()
    except (OSError, ValueError, AttributeError):
        pass  # already closed by a failed handshake


def _login(client: imaplib.IMAP4, mailbox: _MailBox, s: ImapSettings) -> None:
    try:
        if s.access_token:
            # RFC 7628-style SASL XOAUTH2 (Google, Microsoft): user=..^Aauth=Bearer ..^A^A
            mailbox.xoauth2(s.login, s.access_token, initial_folder=None)
        elif (
            s.login.isascii()
            and s.password.isascii()
            and "LOGINDISABLED" not in client.capabilities
        ):
            mailbox.login(s.login, s.password, initial_folder=None)
        else:
            # Non-ASCII credentials cannot go in a LOGIN command: AUTHENTICATE PLAIN carries
            # UTF-8 (RFC 4616).
            mailbox.login_utf8(s.login, s.password, initial_folder=None)
    except (imaplib.IMAP4.error, imap_tools_errors.ImapToolsError) as exc:
        if isinstance(exc, imaplib.IMAP4.abort):
            raise TemporaryFailure(f"IMAP login: connection lost: {exc}") from exc
        if _response_code(exc) in _TEMPORARY_CODES:
            raise TemporaryFailure(f"IMAP login: server busy: {exc}") from exc
        raise AuthenticationFailed(f"IMAP login refused for {s.login!r}") from exc


# --- the session ------------------------------------------------------------------------------


class ImapSession:
    """A logged-in IMAP connection for the sync engine. Use as a context manager."""

    def __init__(self, settings: ImapSettings):
        self.settings = settings
        self.client = _connect(settings)
        self.mailbox = _MailBox(self.client)
        try:
            with mapped_errors("IMAP login"):
                _login(self.client, self.mailbox, settings)
                self.capabilities = self._capabilities()
                # imaplib keeps the greeting's list and checks it in enable() and starttls().
                self.client.capabilities = tuple(sorted(self.capabilities))
                self.condstore = "CONDSTORE" in self.capabilities
                if self.condstore and "ENABLE" in self.capabilities:
                    # RFC 7162 3.1.8: after ENABLE CONDSTORE every SELECT reports
                    # HIGHESTMODSEQ and every FETCH carries MODSEQ.
                    self.client.enable("CONDSTORE")
        except BaseException:
            self._drop()
            raise
        self.selected: str | None = None
        self.readonly = True

    def __enter__(self) -> ImapSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.logout()
        except (imaplib.IMAP4.error, OSError, ValueError):
            self._drop()

    def _drop(self) -> None:
        _shutdown(self.client)

    def _capabilities(self) -> frozenset[str]:
        # Ask again after login: servers announce more (and Dovecot fewer before) than the
        # greeting says (RFC 3501 7.2.1).
        typ, data = self.client.capability()
        if typ != "OK":
            return frozenset(c.upper() for c in self.client.capabilities)
        return frozenset(data[0].decode(errors="replace").upper().split())

    def _check(self, result, action: str):
        typ, data = result
        if typ != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            if _response_code(Exception(detail)) in _TEMPORARY_CODES:
                raise TemporaryFailure(f"{action}: {typ} {detail}")
            raise PermanentFailure(f"{action}: {typ} {detail}")
        return data

    # --- folders -----------------------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        with mapped_errors("LIST"):
            data = self._check(self.client.list(), "LIST")
        folders = []
        for item in data:
            parsed = _parse_list_item(item)
            if parsed is not None:
                folders.append(parsed)
        return folders

    def status(self, folder: str) -> FolderStatus:
        """STATUS: counts without selecting (RFC 3501 6.3.10; HIGHESTMODSEQ per RFC 7162)."""
        items = "MESSAGES UIDNEXT UIDVALIDITY" + (" HIGHESTMODSEQ" if self.condstore else "")
        with mapped_errors("STATUS"):
            typ, data = self.client._simple_command("STATUS", encode_folder(folder), f"({items})")
            self._check((typ, data), f"STATUS {folder}")
            typ, data = self.client._untagged_response(typ, data, "STATUS")
        text = b" ".join(d if isinstance(d, bytes) else d[0] + d[1] for d in data if d is not None)
        # The attribute list comes last; the folder name before it may hold anything.
        attributes = text.rsplit(b"(", 1)[-1]
        values = {
            k.decode().upper(): int(v) for k, v in re.findall(rb"([A-Za-z]+) (\d+)", attributes)
        }
        if "UIDVALIDITY" not in values:
            raise PermanentFailure(f"STATUS {folder}: no UIDVALIDITY in {text!r}")
        return FolderStatus(
            messages=values.get("MESSAGES", 0),
            uidnext=values.get("UIDNEXT"),
            uidvalidity=values["UIDVALIDITY"],
            highestmodseq=values.get("HIGHESTMODSEQ") if self.condstore else None,
        )

    def select(self, folder: str, readonly: bool = True) -> FolderStatus:
        """EXAMINE (``readonly``, the default: nothing can set \\Seen, RFC 3501 6.3.2) or
        SELECT the folder and return what the server reported about it."""
        # A failed SELECT leaves no folder selected (RFC 3501 6.3.1).
        self.selected = None
        with mapped_errors("SELECT"):
            typ, data = self.client.select(encode_folder(folder), readonly)
            self._check((typ, data), f"{'EXAMINE' if readonly else 'SELECT'} {folder}")
            responses = self.client.untagged_responses
            uidvalidity = _last_int(responses.get("UIDVALIDITY"))
            uidnext = _last_int(responses.get("UIDNEXT"))
            highestmodseq = _last_int(responses.get("HIGHESTMODSEQ"))
            exists = _last_int(responses.get("EXISTS"))
            if exists is None:
                exists = int(data[0]) if data and data[0] else 0
        if uidvalidity is None:
            raise PermanentFailure(f"SELECT {folder}: the server sent no UIDVALIDITY")
        self.selected, self.readonly = folder, readonly
        return FolderStatus(
            messages=exists,
            uidnext=uidnext,
            uidvalidity=uidvalidity,
            # NOMODSEQ (RFC 7162 3.1.2.2) or no CONDSTORE: no modseq cursor for this folder.
            highestmodseq=highestmodseq if self.condstore else None,
        )

    def _require_selected(self) -> None:
        if self.selected is None:
            raise PermanentFailure("no folder selected")

    # --- reading -----------------------------------------------------------------------
    def search_uids(self, criteria: str = "ALL") -> list[int]:
        """UID SEARCH in the selected folder. Note ``UID n:*`` always matches the highest UID
        even when n is past it (RFC 3501 6.4.8): callers filter."""
        self._require_selected()
        with mapped_errors("SEARCH"):
            data = self._check(self.client.uid("SEARCH", criteria), f"SEARCH {criteria}")
        uids: list[int] = []
        for line in data:
            if isinstance(line, bytes):
                uids.extend(int(u) for u in line.split() if u.isdigit())
        return sorted(set(uids))

    def fetch(self, uids: Iterable[int]) -> list[FetchedMessage]:
        """Bodies, flags, INTERNALDATE, size (and MODSEQ with CONDSTORE) of ``uids``, with
        BODY.PEEK[] so nothing is marked read. Only the UIDs asked for come back: a UID the
        server left out is simply absent (the caller decides, docs/reliability.md S-13)."""
        self._require_selected()
        wanted = sorted(set(int(u) for u in uids))
        if not wanted:
            return []
        items = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]"
        if self.condstore:
            items += " MODSEQ"
        with mapped_errors("FETCH"):
            data = self._check(self.client.uid("FETCH", _uid_set(wanted), f"({items})"), "FETCH")
        found: dict[int, FetchedMessage] = {}
        wanted_set = set(wanted)
        for text, literals in _fetch_responses(data):
            message = _parse_fetch(text, literals)
            if message is None or message.uid not in wanted_set:
                continue  # unsolicited FETCH (flag news), or the n:* trap
            found[message.uid] = message
        return [found[uid] for uid in wanted if uid in found]

    def fetch_sizes(self, uids: Iterable[int]) -> dict[int, int]:
        """{uid: RFC822.SIZE} for ``uids``: one command, no body. The sync sizes its batches
        with it before fetching the bodies."""
        self._require_selected()
        wanted = sorted(set(int(u) for u in uids))
        if not wanted:
            return {}
        with mapped_errors("FETCH SIZES"):
            data = self._check(
                self.client.uid("FETCH", _uid_set(wanted), "(UID RFC822.SIZE)"), "FETCH SIZES"
            )
        wanted_set, sizes = set(wanted), {}
        for text, _literals in _fetch_responses(data):
            uid, size = _int_after(rb"UID (\d+)", text), _int_after(rb"RFC822\.SIZE (\d+)", text)
            if uid in wanted_set and size is not None:
                sizes[uid] = size
        return sizes

    def fetch_flags(
        self, uid_range: str, changed_since: int | None = None
    ) -> dict[int, tuple[list[str], int | None]]:
        """{uid: (flags, modseq)} for ``uid_range`` ("1:500"), or only those changed since
        ``changed_since`` (CONDSTORE, RFC 7162 3.1.4). One command either way."""
        self._require_selected()
        items = "(UID FLAGS" + (" MODSEQ)" if self.condstore else ")")
        args: list[str] = [uid_range, items]
        if changed_since is not None and self.condstore:
            args.append(f"(CHANGEDSINCE {int(changed_since)})")
        with mapped_errors("FETCH FLAGS"):
            data = self._check(self.client.uid("FETCH", *args), "FETCH FLAGS")
        low, high = _range_bounds(uid_range)
        result: dict[int, tuple[list[str], int | None]] = {}
        for text, _literals in _fetch_responses(data):
            uid = _int_after(rb"UID (\d+)", text)
            flags = _flags(text)
            if uid is None or flags is None:
                continue
            if not (low <= uid and (high is None or uid <= high)):
                continue  # RFC 3501 6.4.8: n:* includes the last message
            result[uid] = (sorted(flags), _int_after(rb"MODSEQ \((\d+)\)", text))
        return result

    # --- writing -----------------------------------------------------------------------
    def _writable(self) -> None:
        self._require_selected()
        if self.readonly:
            self.select(self.selected, readonly=False)

    def store_flags(self, uids: Iterable[int], sign: str, flags: Iterable[str]) -> None:
        """Add (``+``) or remove (``-``) flags, silently: deltas only, never a full FLAGS
        replace that would undo another client's change (docs/reliability.md S-16)."""
        if sign not in ("+", "-"):
            raise ValueError("sign must be '+' or '-'")
        uids, flags = list(uids), list(flags)
        if not uids or not flags:
            return
        self._writable()
        with mapped_errors("STORE"):
            self._check(
                self.client.uid(
                    "STORE", _uid_set(uids), f"{sign}FLAGS.SILENT", f"({' '.join(flags)})"
                ),
                "STORE",
            )

    @property
    def can_expunge_uids(self) -> bool:
        """UID EXPUNGE (RFC 4315 2.1). Without it nothing is ever expunged: a plain EXPUNGE
        also removes what other clients only flagged \\Deleted (docs/reliability.md S-30)."""
        return "UIDPLUS" in self.capabilities

    @property
    def moves_whole(self) -> bool:
        """A move leaves nothing behind: UID MOVE, or COPY then UID EXPUNGE. Otherwise the
        source copy stays, flagged \\Deleted."""
        return "MOVE" in self.capabilities or self.can_expunge_uids

    def move(self, uids: Iterable[int], target: str) -> dict[int, int]:
        """Move to ``target``: UID MOVE (RFC 6851) or COPY + \\Deleted + UID EXPUNGE
        (RFC 4315) where MOVE is missing. With neither, the source copies are left flagged
        \\Deleted (``moves_whole`` is False; docs/reliability.md S-30). Returns
        {old uid: new uid} when COPYUID says."""
        uids = list(uids)
        if not uids:
            return {}
        self._writable()
        with mapped_errors("MOVE"):
            self.client.untagged_responses.pop("COPYUID", None)
            if "MOVE" in self.capabilities:
                typ, data = self.client.uid("MOVE", _uid_set(uids), encode_folder(target))
                self._check((typ, data), f"MOVE to {target}")
                return _copyuid(self.client, data)
            typ, data = self.client.uid("COPY", _uid_set(uids), encode_folder(target))
            self._check((typ, data), f"COPY to {target}")
            mapping = _copyuid(self.client, data)
        self.store_flags(uids, "+", ["\\Deleted"])
        self.expunge_uids(uids)
        return mapping

    def copy(self, uids: Iterable[int], target: str) -> dict[int, int]:
        uids = list(uids)
        self._require_selected()
        with mapped_errors("COPY"):
            self.client.untagged_responses.pop("COPYUID", None)
            typ, data = self.client.uid("COPY", _uid_set(uids), encode_folder(target))
            self._check((typ, data), f"COPY to {target}")
            return _copyuid(self.client, data)

    def expunge_uids(self, uids: Iterable[int]) -> bool:
        """Expunge only these UIDs, with UID EXPUNGE (RFC 4315 2.1); True when done. Without
        UIDPLUS nothing is expunged and False comes back: a plain EXPUNGE would also remove
        messages another client marked \\Deleted but meant to keep (docs/reliability.md
        S-30), so the UIDs stay flagged \\Deleted for a client the user runs to expunge."""
        uids = list(uids)
        if not uids:
            return True
        if not self.can_expunge_uids:
            return False
        self._writable()
        with mapped_errors("EXPUNGE"):
            self._check(self.client.uid("EXPUNGE", _uid_set(uids)), "UID EXPUNGE")
        return True

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        date: dt.datetime | None = None,
    ) -> int | None:
        """APPEND and return the new UID from APPENDUID (RFC 4315 3) when the server says it,
        else None (then find it by Message-ID; docs/reliability.md S-23)."""
        flag_list = "(" + " ".join(flags) + ")" if flags else None
        when = date or dt.datetime.now(dt.UTC)
        with mapped_errors("APPEND"):
            self.client.untagged_responses.pop("APPENDUID", None)
            data = self._check(
                self.client.append(encode_folder(folder), flag_list, when, raw), "APPEND"
            )
            codes = self.client.untagged_responses.pop("APPENDUID", None) or []
        text = b" ".join(d for d in data if isinstance(d, bytes))
        match = re.search(rb"APPENDUID \d+ (\d+)", text)
        if match:
            return int(match[1])
        for code in codes:
            parts = code.split() if isinstance(code, bytes) else []
            if len(parts) == 2 and parts[1].isdigit():
                return int(parts[1])
        return None


def open_session(mailbox_or_settings, *, timeout: float = DEFAULT_TIMEOUT) -> ImapSession:
    """Connect and log in; the result is a context manager that logs out."""
    settings = (
        mailbox_or_settings
        if isinstance(mailbox_or_settings, ImapSettings)
        else ImapSettings.from_mailbox(mailbox_or_settings, timeout=timeout)
    )
    return ImapSession(settings)


# --- parsing ----------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_LIST_ITEM = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"(?:\\.|[^"\\])*"|NIL) ?(?P<name>.*)$')


def imap_date(day: dt.date) -> str:
    # RFC 3501 date: "02-Mar-2026"; month names fixed, not from the locale.
    return f"{day.day:02d}-{list(_MONTHS)[day.month - 1]}-{day.year}"


def _unquote(value: bytes) -> bytes:
    if value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2:
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


def _parse_list_item(item) -> FolderInfo | None:
    if isinstance(item, tuple):
        # The name came as a literal (RFC 3501 4.3): {n}\r\n<name>
        head, name = item[0], item[1]
        head = re.sub(rb"\{\d+\}$", b"", head)
    elif isinstance(item, bytes):
        head, name = item, None
    else:
        return None
    match = _LIST_ITEM.match(head.rstrip() if name is not None else head)
    if not match:
        return None
    if name is None:
        name = _unquote(match["name"])
    delim_raw = match["delim"]
    delimiter = None if delim_raw == b"NIL" else _unquote(delim_raw).decode()
    flags = tuple(match["flags"].decode(errors="replace").split())
    decoded = utf7_decode(name)
    lowered = {f.lower() for f in flags}
    selectable = not ({"\\noselect", "\\nonexistent"} & lowered)
    return FolderInfo(
        name=decoded,
        delimiter=delimiter,
        flags=flags,
        special_use=special_use_for(decoded, flags, delimiter),
        selectable=selectable,
    )


def special_use_for(name: str, flags: Iterable[str], delimiter: str | None = None) -> str:
    """RFC 6154 attribute first; else INBOX (RFC 3501 5.1: case-insensitive); else a common
    localised name, on the last path segment."""
    for flag in flags:
        use = SPECIAL_USE_FLAGS.get(flag.lower())
        if use:
            return use
    if name.upper() == "INBOX":
        return "inbox"
    leaf = name.rsplit(delimiter, 1)[-1] if delimiter else name
    return _BY_NAME.get(leaf.strip().lower(), "")


def _fetch_responses(data) -> Iterator[tuple[bytes, list[bytes]]]:
    """Group imaplib's flat FETCH data into responses. A response with literals comes as one
    or more (text, literal) tuples closed by a bytes tail; one without as a single bytes."""
    text, literals = b"", []
    open_response = False
    for item in data:
        if isinstance(item, tuple):
            text += item[0]
            literals.append(item[1])
            open_response = True
        elif isinstance(item, bytes):
            if open_response:
                yield text + item, literals
                text, literals, open_response = b"", [], False
            else:
                yield item, []
    if open_response:
        yield text, literals


def _parse_fetch(text: bytes, literals: list[bytes]) -> FetchedMessage | None:
    uid = _int_after(rb"UID (\d+)", text)
    if uid is None:
        return None
    flags = _flags(text) or []
    raw: bytes | None = None
    error = ""
    # Find which literal is BODY[]: literals appear in order, each announced by "{n}".
    announced = list(re.finditer(rb"(BODY\[\]|[A-Z0-9.\[\]]+) \{(\d+)\+?\}", text))
    for index, match in enumerate(announced):
        if match[1] == b"BODY[]" and index < len(literals):
            raw = literals[index]
            if len(raw) != int(match[2]):
                error = f"literal of {len(raw)} bytes where {int(match[2])} were announced"
            break
    else:
        body = re.search(rb'BODY\[\] ("(?:\\.|[^"\\])*"|NIL)', text)
        if body is None:
            return None  # not an answer to our FETCH: flag news from another session
        if body[1] == b"NIL":
            error = "the server sent NIL for the body"
        else:
            raw = _unquote(body[1])
    size = _int_after(rb"RFC822\.SIZE (\d+)", text)
    message = FetchedMessage(
        uid=uid,
        raw=raw,
        flags=tuple(sorted(flags)),
        internal_date=_internal_date(text),
        size=size,
        modseq=_int_after(rb"MODSEQ \((\d+)\)", text),
        error=error,
    )
    if message.truncated and not error:
        message.error = f"truncated: {len(raw)} of {size} bytes"
    return message


def _flags(text: bytes) -> list[str] | None:
    match = re.search(rb"FLAGS \(([^)]*)\)", text)
    if match is None:
        return None
    # \Recent belongs to one session and cannot be stored or changed (RFC 3501 2.3.2; gone in
    # IMAP4rev2, RFC 9051): keeping it would make every session see a "flag change".
    return [f for f in match[1].decode(errors="replace").split() if f.lower() != "\\recent"]


def _internal_date(text: bytes) -> dt.datetime | None:
    match = re.search(
        rb'INTERNALDATE "\s?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"',
        text,
    )
    if not match:
        return None
    day, month, year, hh, mm, ss, sign, oh, om = (g.decode() for g in match.groups())
    offset = dt.timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    return dt.datetime(
        int(year),
        _MONTHS[month.capitalize()],
        int(day),
        int(hh),
        int(mm),
        int(ss),
        tzinfo=dt.timezone(offset),
    )


def _int_after(pattern: bytes, text: bytes) -> int | None:
    match = re.search(pattern, text)
    return int(match[1]) if match else None


def _last_int(values) -> int | None:
    for value in reversed(values or []):
        if isinstance(value, bytes) and value.strip().isdigit():
            return int(value)
    return None


def _range_bounds(uid_range: str) -> tuple[int, int | None]:
    low, _, high = uid_range.partition(":")
    low_n = int(low) if low.isdigit() else 1
    if not high:
        return low_n, low_n
    return low_n, (int(high) if high.isdigit() else None)


def _uid_set(uids: Sequence[int]) -> str:
    """Compact sequence set: 1,2,3,7,9,10 -> 1:3,7,9:10 (RFC 3501 9, sequence-set)."""
    ordered = sorted(set(int(u) for u in uids))
    parts = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def _expand_set(text: str) -> list[int]:
    result = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        a, b = int(low), int(high or low)
        result.extend(range(min(a, b), max(a, b) + 1))
    return result


def _copyuid(client: imaplib.IMAP4, data) -> dict[int, int]:
    """{source uid: destination uid} from COPYUID (RFC 4315 3), when present."""
    texts = [d for d in data if isinstance(d, bytes)]
    texts += [c for c in client.untagged_responses.pop("COPYUID", []) if isinstance(c, bytes)]
    for text in texts:
        match = re.search(rb"(?:COPYUID )?\d+ ([\d:,]+) ([\d:,]+)", text)
        if match:
            source = _expand_set(match[1].decode())
            target = _expand_set(match[2].decode())
            if len(source) == len(target):
                return dict(zip(source, target, strict=True))
    return {}
