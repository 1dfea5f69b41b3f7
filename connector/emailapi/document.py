"""The Email API: a support mailbox accepts XML documents that create or
update accounts, contacts and tickets, as the RangerMSP Email Connector does.

Who may use it: only senders on the mailbox's allowed list (inbox.EmailApiSender), only when
our receiving server authenticated the mail for the From domain (an aligned SPF, DKIM or DMARC
pass, connector/filing/authentication.py: a forged From of an allowed sender is the obvious
attack), and, when the sender has a secret, only with that secret in <request secret="...">
(docs/reliability.md C-17). Mail from anyone else is ordinary mail.

What counts as a document: the text body, when it starts with "<", or else the first `.xml`
attachment. The schema is published in schema/relay-email-api.xsd, with examples beside it.

How it is applied: parsed with defusedxml with DTDs refused outright (no entity expansion, no
external entity or DTD fetch: billion laughs and XXE never reach the parser's expander), after
a size cap; checked in full, collecting every error with its element path and line; then
applied inside one savepoint, so the whole document is saved or nothing is. The sender gets a
reply through the outbox (purpose "api_reply") saying what was done, or exactly what is wrong.

This module is the document itself: parsed, checked and applied, with no mail involved.
Where it runs: new mail goes through connector/emailapi/intake.py, which hands the messages
from allowed senders to connector/emailapi/handler.py before filing the rest; the documents
are answered, never filed (so an API document never opens a ticket of its own). The lost-task
sweep and a redelivered task go through the same door: one EmailApiRequest row per message
makes the second run a no-op.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from crm.models import Account, Contact, ContactEmail, Ticket
from crm.normalize import normalize_domain, normalize_email
from crm.services import (
    account_create,
    account_set_domains,
    contact_create,
    contact_set_emails,
    ticket_create,
)

log = logging.getLogger(__name__)
NAMESPACE = "urn:relay-crm:email-api:1"
ROOT = "request"
SCHEMA_FILE = "schema/relay-email-api.xsd"

# A real request is a few kilobytes; the cap bounds the parse's time and memory whatever the
# sender sends (256 KiB of elements parse in well under a second).
MAX_OPERATIONS = 100
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
ROOT_END = re.compile(r"</(?:[A-Za-z_][\w.-]*:)?request\s*>")
TICKET_REF_RE = re.compile(r"(?:TKT-)?(\d{1,18})", re.IGNORECASE)


def max_bytes() -> int:
    return settings.RELAY_EMAIL_API_MAX_BYTES


# --- the vocabulary ---------------------------------------------------------------------------
# child element -> (model field, max length, repeatable). Kept beside the XSD: a test checks
# every example against both.
ACCOUNT_FIELDS = {
    "name": ("name", 200, False),
    "website": ("website", 200, False),
    "phone": ("phone", 50, False),
    "domain": ("domains", 253, True),
}

CONTACT_FIELDS = {
    "firstName": ("first_name", 100, False),
    "lastName": ("last_name", 100, False),
    "title": ("title", 100, False),
    "phone": ("phone", 50, False),
    "email": ("emails", 320, True),
    "account": ("account", None, False),
}

TICKET_FIELDS = {
    "subject": ("subject", 300, False),
    "description": ("description", 10_000, False),
    "note": ("note", 10_000, False),
    "status": ("status", None, False),
    "priority": ("priority", None, False),
    "contact": ("contact", None, False),
    "account": ("account", None, False),
}

OPERATIONS = {
    "createAccount": ("account", "create", ACCOUNT_FIELDS),
    "updateAccount": ("account", "update", ACCOUNT_FIELDS),
    "createContact": ("contact", "create", CONTACT_FIELDS),
    "updateContact": ("contact", "update", CONTACT_FIELDS),
    "createTicket": ("ticket", "create", TICKET_FIELDS),
    "updateTicket": ("ticket", "update", TICKET_FIELDS),
}

CHOICES = {"status": Ticket.Status.values, "priority": Ticket.Priority.values}


@dataclass(frozen=True)
class ApiError:
    path: str
    line: int | None
    text: str

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.path}: {self.text}" if self.path else f"{where}{self.text}"


class Rejected(Exception):
    """Applying met an error: the savepoint rolls back every record of the document."""

    def __init__(self, error: ApiError):
        super().__init__(str(error))
        self.error = error


@dataclass
class RecordRef:
    """<account key=".."/>, <contact id=".."/>, <contact email=".."/>."""

    kind: str
    key: str = ""
    id: int | None = None
    email: str = ""


@dataclass
class Operation:
    name: str
    record_type: str
    action: str
    path: str
    line: int | None
    key: str = ""
    target: dict = field(default_factory=dict)  # id / email / number: which record to update
    values: dict = field(default_factory=dict)  # model field -> value (lists for emails/domains)
    refs: dict = field(default_factory=dict)  # "account"/"contact" -> RecordRef
    paths: dict = field(default_factory=dict)  # model field -> (path, line), for error reports


@dataclass
class Result:
    applied: bool
    request_id: str = ""
    results: list[dict] = field(default_factory=list)
    errors: list[ApiError] = field(default_factory=list)


class _LineTreeBuilder(ET.TreeBuilder):
    """Remembers the line each element starts on: error messages point at it."""

    def __init__(self):
        super().__init__()
        self.lines: dict[ET.Element, int] = {}
        self.parser: DefusedXMLParser | None = None

    def start(self, tag, attrs):
        element = super().start(tag, attrs)
        self.lines[element] = self.parser.parser.CurrentLineNumber
        return element


def parse(document: str | bytes, *, size: int | None = None) -> tuple[ET.Element, dict]:
    """The root element and the line of each element, or Rejected with what is wrong. `size`
    is the full size when `document` was read only up to the cap."""
    if size is None:
        size = len(
            document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
        )
    if size > max_bytes():
        raise Rejected(
            ApiError("", None, f"the document is {size} bytes; the limit is {max_bytes()} bytes")
        )
    builder = _LineTreeBuilder()
    # forbid_dtd: a DOCTYPE is refused before any entity can be declared, so nothing is ever
    # expanded (billion laughs) or fetched (external entities, external DTD subsets).
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    builder.parser = parser
    try:
        parser.feed(document)
        root = parser.close()
    except DTDForbidden as exc:
        line = getattr(parser.parser, "CurrentLineNumber", None)
        raise Rejected(
            ApiError(
                "", line, f"a DTD (<!DOCTYPE {exc.name}>) is not accepted: no DTDs, no entities"
            )
        ) from None
    except EntitiesForbidden as exc:
        raise Rejected(
            ApiError("", exc.line, f"entity declarations ({exc.name}) are not accepted")
        ) from None
    except DefusedXmlException as exc:
        raise Rejected(ApiError("", None, f"refused: {exc}")) from None
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        text = str(exc).split(":")[0]
        raise Rejected(
            ApiError("", line, f"not well-formed XML ({text}, column {column})")
        ) from None
    return root, builder.lines


def _attrs(names) -> str:
    return ", ".join(f"@{a}" for a in sorted(names))


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


class _Checker:
    def __init__(self, lines: dict):
        self.lines = lines
        self.errors: list[ApiError] = []

    def error(self, path: str, element: ET.Element | None, text: str) -> None:
        self.errors.append(
            ApiError(path, self.lines.get(element) if element is not None else None, text)
        )

    def operations(self, root: ET.Element) -> tuple[str, list[Operation]]:
        ns, name = _local(root.tag)
        if ns != NAMESPACE or name != ROOT:
            expected = f'<{ROOT} xmlns="{NAMESPACE}">'
            got = f"<{name}>" + (f' in namespace "{ns}"' if ns else " in no namespace")
            self.error(f"/{name}", root, f"the root element must be {expected}; found {got}")
            return "", []
        self._attributes(f"/{ROOT}", root, allowed={"id", "secret"})
        request_id = (root.get("id") or "").strip()[:200]
        if (root.text or "").strip():
            self.error(f"/{ROOT}", root, "text is not allowed here, only operation elements")
        children = list(root)
        if not children:
            self.error(f"/{ROOT}", root, "the request holds no operation")
        if len(children) > MAX_OPERATIONS:
            self.error(
                f"/{ROOT}",
                root,
                f"{len(children)} operations; at most {MAX_OPERATIONS} per request",
            )
            return request_id, []
        counts: dict[str, int] = {}
        keys: dict[tuple[str, str], str] = {}
        operations = []
        for child in children:
            ns, name = _local(child.tag)
            counts[name] = counts.get(name, 0) + 1
            path = f"/{ROOT}/{name}[{counts[name]}]"
            if ns != NAMESPACE or name not in OPERATIONS:
                where = f' (namespace "{ns}")' if ns != NAMESPACE else ""
                self.error(
                    path,
                    child,
                    f"unknown operation <{name}>{where}; expected one of {', '.join(OPERATIONS)}",
                )
                continue
            operation = self._operation(child, name, path, keys)
            if operation is not None:
                operations.append(operation)
        return request_id, operations

    def _attributes(self, path, element, *, allowed: set[str]) -> None:
        for attribute in element.attrib:
            if attribute not in allowed:
                hint = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
                self.error(f"{path}/@{attribute}", element, f"unknown attribute{hint}")

    def _operation(self, element, name, path, keys) -> Operation | None:
        record_type, action, fields = OPERATIONS[name]
        op = Operation(name, record_type, action, path, self.lines.get(element))
        if action == "create":
            self._attributes(path, element, allowed={"key"})
            key = element.get("key")
            if key is not None:
                if not KEY_RE.fullmatch(key):
                    self.error(f"{path}/@key", element, f'"{key}" is not a valid key (a name)')
                elif (record_type, key) in keys:
                    self.error(
                        f"{path}/@key",
                        element,
                        f'key "{key}" is already used by {keys[(record_type, key)]}',
                    )
                else:
                    keys[(record_type, key)] = path
                    op.key = key
        else:
            self._target(op, element, path)
        if (element.text or "").strip():
            self.error(path, element, "text is not allowed here, only field elements")
        seen: dict[str, int] = {}
        for child in element:
            ns, child_name = _local(child.tag)
            seen[child_name] = seen.get(child_name, 0) + 1
            child_path = f"{path}/{child_name}"
            if ns != NAMESPACE or child_name not in fields:
                self.error(
                    child_path,
                    child,
                    f"unknown element in <{name}>; expected {', '.join(fields)}",
                )
                continue
            model_field, limit, repeatable = fields[child_name]
            if repeatable:
                child_path = f"{child_path}[{seen[child_name]}]"
            elif seen[child_name] > 1:
                self.error(child_path, child, f"<{child_name}> may appear only once")
                continue
            op.paths.setdefault(model_field, (child_path, self.lines.get(child)))
            if child_name in ("account", "contact"):
                ref = self._ref(child, child_name, child_path, keys, path)
                if ref is not None:
                    op.refs[child_name] = ref
                continue
            value = self._text(child, child_path, limit)
            if value is None:
                continue
            value = self._value(child, child_path, child_name, value)
            if value is None:
                continue
            if repeatable:
                op.values.setdefault(model_field, []).append(value)
            else:
                op.values[model_field] = value
        self._required(op, element)
        return op

    def _target(self, op: Operation, element, path) -> None:
        if op.record_type == "ticket":
            self._attributes(path, element, allowed={"reference"})
            value = element.get("reference", "")
            match = TICKET_REF_RE.fullmatch(value.strip())
            if not match:
                self.error(
                    f"{path}/@reference", element, 'a ticket reference is required, as "TKT-1042"'
                )
            else:
                op.target["number"] = int(match[1])
            return
        allowed = {"id", "email"} if op.record_type == "contact" else {"id"}
        self._attributes(path, element, allowed=allowed)
        given = [a for a in sorted(allowed) if element.get(a) is not None]
        if len(given) != 1:
            self.error(
                path,
                element,
                "name the record to update with exactly one of: " + _attrs(allowed),
            )
            return
        if given[0] == "id":
            number = self._id(element.get("id"), f"{path}/@id", element)
            if number is not None:
                op.target["id"] = number
        else:
            email = self._email(element.get("email"), f"{path}/@email", element)
            if email:
                op.target["email"] = email

    def _ref(self, element, kind, path, keys, op_path) -> RecordRef | None:
        allowed = {"key", "id", "email"} if kind == "contact" else {"key", "id"}
        self._attributes(path, element, allowed=allowed)
        if len(element) or (element.text or "").strip():
            self.error(path, element, f"<{kind}> names a record by attribute and holds nothing")
        given = [a for a in sorted(allowed) if element.get(a) is not None]
        if len(given) != 1:
            self.error(
                path,
                element,
                f"name the {kind} with exactly one of: " + _attrs(allowed),
            )
            return None
        attribute = given[0]
        value = element.get(attribute)
        if attribute == "key":
            if (kind, value) not in keys or keys[(kind, value)] == op_path:
                self.error(
                    f"{path}/@key",
                    element,
                    f'no {kind} with key "{value}" is created earlier in this request',
                )
                return None
            return RecordRef(kind, key=value)
        if attribute == "id":
            number = self._id(value, f"{path}/@id", element)
            return RecordRef(kind, id=number) if number is not None else None
        email = self._email(value, f"{path}/@email", element)
        return RecordRef(kind, email=email) if email else None

    def _id(self, value, path, element) -> int | None:
        if value is None or not value.strip().isdigit() or int(value) < 1 or len(value) > 18:
            self.error(path, element, f'"{value}" is not a record id (a positive whole number)')
            return None
        return int(value)

    def _email(self, value, path, element) -> str:
        try:
            return normalize_email(value or "")
        except ValidationError:
            self.error(path, element, f'"{value}" is not a valid email address')
            return ""

    def _text(self, element, path, limit) -> str | None:
        if len(element):
            self.error(path, element, "holds elements; only text is allowed here")
            return None
        if element.attrib:
            self.error(path, element, "attributes are not allowed here")
            return None
        value = (element.text or "").strip()
        if not value:
            self.error(path, element, "is empty")
            return None
        if limit and len(value) > limit:
            self.error(path, element, f"is {len(value)} characters long; at most {limit}")
            return None
        return value

    def _value(self, element, path, name, value):
        if name in CHOICES:
            if value not in CHOICES[name]:
                self.error(path, element, f'"{value}" is not one of {", ".join(CHOICES[name])}')
                return None
            return value
        if name == "email":
            return self._email(value, path, element) or None
        if name == "domain":
            try:
                return normalize_domain(value)
            except ValidationError:
                self.error(path, element, f'"{value}" is not a domain name')
                return None
        return value

    def _required(self, op: Operation, element) -> None:
        if op.action != "create":
            if not op.values and not op.refs:
                self.error(op.path, element, "nothing to update: give at least one field")
            return
        if op.record_type == "account" and "name" not in op.values and "name" not in op.paths:
            self.error(op.path, element, "<name> is required")
        if op.record_type == "ticket" and "subject" not in op.values and "subject" not in op.paths:
            self.error(op.path, element, "<subject> is required")
        if op.record_type == "ticket" and "note" in op.paths:
            self.error(
                op.paths["note"][0],
                element,
                "<note> adds to an existing ticket: use <description> here",
            )
        if op.record_type == "contact" and not op.paths.keys() & {
            "first_name",
            "last_name",
            "emails",
        }:
            self.error(op.path, element, "a contact needs <firstName>, <lastName> or <email>")


class _Applier:
    def __init__(self, sender: str):
        self.sender = sender
        self.created: dict[tuple[str, str], object] = {}
        self.results: list[dict] = []

    def fail(self, op: Operation, text: str, field_name: str | None = None) -> Rejected:
        path, line = (
            op.paths.get(field_name, (op.path, op.line)) if field_name else (op.path, op.line)
        )
        return Rejected(ApiError(path, line, text))

    def run(self, operations: Iterable[Operation]) -> list[dict]:
        for op in operations:
            getattr(self, f"_{op.action}_{op.record_type}")(op)
        return self.results

    def _note(self, op: Operation, action: str, record, label: str) -> None:
        self.results.append(
            {
                "operation": op.name,
                "line": op.line,
                "action": action,
                "record_type": record.record_type,
                "id": record.pk,
                "label": label,
            }
        )

    def _resolve(self, op: Operation, name: str):
        ref: RecordRef | None = op.refs.get(name)
        if ref is None:
            return None
        model = Account if name == "account" else Contact
        if ref.key:
            return self.created[(name, ref.key)]
        if ref.id is not None:
            record = model.objects.filter(pk=ref.id).first()
            if record is None:
                raise self.fail(op, f"there is no {name} with id {ref.id}", name)
            return record
        return self._contact_by_email(op, ref.email, name)

    def _contact_by_email(self, op: Operation, email: str, field_name: str | None) -> Contact:
        ids = sorted(
            set(ContactEmail.objects.filter(email=email).values_list("contact_id", flat=True))
        )
        if not ids:
            raise self.fail(op, f"there is no contact with the address {email}", field_name)
        if len(ids) > 1:
            raise self.fail(
                op,
                f"{email} belongs to several contacts "
                f"({', '.join(f'#{i}' for i in ids)}): name one by id",
                field_name,
            )
        return Contact.objects.get(pk=ids[0])

    def _clean(self, op: Operation, exc: ValidationError) -> Rejected:
        """A model's own validation (URL format, lengths) reported at the element it came from."""
        if hasattr(exc, "error_dict"):
            name, messages = next(iter(exc.message_dict.items()))
            return self.fail(op, " ".join(messages), name if name in op.paths else None)
        return self.fail(op, " ".join(exc.messages))

    # accounts
    def _create_account(self, op: Operation) -> None:
        values = dict(op.values)
        domains = values.pop("domains", [])
        try:
            account = account_create(domains=domains, **values)
        except ValidationError as exc:
            raise self._clean(op, exc) from None
        self._keep(op, account)
        self._note(op, "created", account, account.name)

    def _update_account(self, op: Operation) -> None:
        account = Account.objects.select_for_update().filter(pk=op.target["id"]).first()
        if account is None:
            raise self.fail(op, f"there is no account with id {op.target['id']}")
        values = dict(op.values)
        domains = values.pop("domains", [])
        for name, value in values.items():
            setattr(account, name, value)
        try:
            account.full_clean()
            account.save()
            if domains:
                current = list(account.domains.values_list("domain", flat=True))
                account_set_domains(account=account, domains=current + domains)
        except ValidationError as exc:
            raise self._clean(op, exc) from None
        self._note(op, "updated", account, account.name)

    # contacts
    def _check_addresses_free(self, op: Operation, emails: list[str], contact=None) -> None:
        """One address, one contact: the API never makes a second contact for an address that
        already has one (the sender would get duplicates and filing would have to choose)."""
        taken = ContactEmail.objects.filter(email__in=emails)
        if contact is not None:
            taken = taken.exclude(contact=contact)
        first = taken.order_by("email").first()
        if first is not None:
            raise self.fail(
                op,
                f"{first.email} already belongs to contact #{first.contact_id}: "
                f'use <updateContact id="{first.contact_id}">',
                "emails",
            )

    def _create_contact(self, op: Operation) -> None:
        values = dict(op.values)
        emails = values.pop("emails", [])
        self._check_addresses_free(op, emails)
        account = self._resolve(op, "account")
        try:
            contact = contact_create(emails=emails, account=account, **values)
        except ValidationError as exc:
            raise self._clean(op, exc) from None
        self._keep(op, contact)
        self._note(op, "created", contact, contact.name)

    def _update_contact(self, op: Operation) -> None:
        if "id" in op.target:
            contact = Contact.objects.filter(pk=op.target["id"]).first()
            if contact is None:
                raise self.fail(op, f"there is no contact with id {op.target['id']}")
        else:
            contact = self._contact_by_email(op, op.target["email"], None)
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        values = dict(op.values)
        emails = values.pop("emails", [])
        self._check_addresses_free(op, emails, contact)
        if "account" in op.refs:
            contact.account = self._resolve(op, "account")
        for name, value in values.items():
            setattr(contact, name, value)
        try:
            contact.full_clean()
            contact.save()
            if emails:
                current = list(contact.emails.values_list("email", flat=True))
                contact_set_emails(contact=contact, emails=current + emails)
        except ValidationError as exc:
            raise self._clean(op, exc) from None
        self._note(op, "updated", contact, contact.name)

    # tickets
    def _create_ticket(self, op: Operation) -> None:
        contact = self._resolve(op, "contact")
        account = self._resolve(op, "account")
        if account is None and contact is not None:
            account = contact.account
        try:
            ticket = ticket_create(contact=contact, account=account, **op.values)
        except ValidationError as exc:
            raise self._clean(op, exc) from None
        self._keep(op, ticket)
        self._note(op, "created", ticket, f"{ticket.reference} {ticket.subject}")

    def _update_ticket(self, op: Operation) -> None:
        number = op.target["number"]
        ticket = Ticket.objects.select_for_update().filter(number=number).first()
        if ticket is None:
            raise self.fail(op, f"there is no ticket {Ticket.PREFIX}-{number}")
        values = dict(op.values)
        note = values.pop("note", "")
        for name, value in values.items():
            setattr(ticket, name, value)
        if "contact" in op.refs:
            ticket.contact = self._resolve(op, "contact")
        if "account" in op.refs:
            ticket.account = self._resolve(op, "account")
        if note:
            stamp = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
            ticket.description = (
                f"{ticket.description}\n\n--- {stamp}, {self.sender} ---\n{note}".strip()
            )
        try:
            ticket.full_clean()
            ticket.save()
        except ValidationError as exc:
            raise self._clean(op, exc) from None
        self._note(op, "updated", ticket, f"{ticket.reference} {ticket.subject}")

    def _keep(self, op: Operation, record) -> None:
        if op.key:
            self.created[(op.record_type, op.key)] = record


def request_secret(document: str | bytes, *, size: int | None = None) -> str:
    """The secret the document carries (<request secret="...">), or "" when it has none or
    cannot be read (connector/emailapi/handler.py checks it before anything is applied)."""
    try:
        root, _ = parse(document, size=size)
    except Rejected:
        return ""
    ns, name = _local(root.tag)
    if ns != NAMESPACE or name != ROOT:
        return ""
    return root.get("secret") or ""


def run_document(document: str | bytes, *, sender: str, size: int | None = None) -> Result:
    """Check and apply one document: all of it in one savepoint, or nothing."""
    try:
        root, lines = parse(document, size=size)
    except Rejected as exc:
        return Result(applied=False, errors=[exc.error])
    checker = _Checker(lines)
    request_id, operations = checker.operations(root)
    if checker.errors:
        return Result(applied=False, request_id=request_id, errors=checker.errors)
    applier = _Applier(sender)
    try:
        with transaction.atomic():
            results = applier.run(operations)
    except Rejected as exc:
        return Result(applied=False, request_id=request_id, errors=[exc.error])
    return Result(applied=True, request_id=request_id, results=results)
