"""`manage.py mailbox add|test|list|sync|import|status`: mailboxes for operators and scripts.

The subcommand names and options are a contract (docs/product.md §3.9): scripts rely on them."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connector.sync.importer import ImportFileError, import_messages, read_messages
from connector.sync.mailbox import sync_mailbox
from connector.sync.status import mailbox_status
from connector.transport.oauth import connect_imap
from connector.transport.probe import test_connection
from inbox.mailbox_forms import guess_server_settings
from inbox.models import Mailbox, Security
from inbox.services.mailboxes import mailbox_connect


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--sync-from must be a date as YYYY-MM-DD, not {value!r}") from exc


class Command(BaseCommand):
    help = "Add, test, list, sync, import into and inspect mailboxes."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="SUBCOMMAND")

        add = sub.add_parser("add", help="Check the connection and create a mailbox.")
        add.add_argument("--kind", choices=["shared", "personal"], required=True)
        add.add_argument("--owner", metavar="USERNAME", help="Owner of a personal mailbox.")
        add.add_argument("--email", required=True, metavar="ADDRESS")
        add.add_argument("--login", metavar="LOGIN", help="Login name if not the address.")
        secret = add.add_mutually_exclusive_group(required=True)
        secret.add_argument("--password-file", metavar="FILE", type=Path)
        secret.add_argument("--password-env", metavar="VAR")
        add.add_argument(
            "--imap-host", metavar="HOST", help="Default: guessed from the address's domain."
        )
        add.add_argument("--imap-port", type=int, metavar="PORT")
        add.add_argument("--imap-security", choices=Security.values)
        add.add_argument("--smtp-host", metavar="HOST")
        add.add_argument("--smtp-port", type=int, metavar="PORT")
        add.add_argument("--smtp-security", choices=Security.values)
        add.add_argument(
            "--folders", metavar="INBOX,Sent,...", help="Folders to sync (default: Inbox and Sent)."
        )
        add.add_argument("--sync-from", type=_date, metavar="YYYY-MM-DD")
        add.add_argument(
            "--allow-insecure-cert",
            action="store_true",
            help="Accept a certificate not signed by a trusted authority.",
        )
        add.add_argument(
            "--create-contacts", action="store_true", help="Create contacts for unknown senders."
        )
        add.add_argument(
            "--create-tickets", action="store_true", help="Support mailbox: new mail opens tickets."
        )
        add.add_argument("--refresh-interval", type=int, default=300, metavar="SECONDS")
        add.add_argument(
            "--skip-check",
            action="store_true",
            help="Create without logging in first (the server is not up yet).",
        )

        test = sub.add_parser("test", help="Log in to IMAP (and SMTP) and list the folders.")
        test.add_argument("id", type=int)

        sub.add_parser("list", help="List the mailboxes.")

        sync = sub.add_parser("sync", help="Run one sync in the foreground.")
        sync.add_argument("id", type=int)

        imp = sub.add_parser("import", help="Import .mbox and .eml files into a mailbox.")
        imp.add_argument("id", type=int)
        imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
        imp.add_argument("--folder", default="Imported", help="Local folder to import into.")

        status = sub.add_parser("status", help="Show a mailbox's sync state.")
        status.add_argument("id", type=int)
        status.add_argument("--json", action="store_true", help="One JSON object.")

    def handle(self, *args, **options):
        return getattr(self, f"do_{options['action']}")(options)

    # --- helpers ---
    def _mailbox(self, pk: int) -> Mailbox:
        try:
            return Mailbox.objects.get(pk=pk)
        except Mailbox.DoesNotExist as exc:
            raise CommandError(f"No mailbox with id {pk}.") from exc

    def _read_password(self, options) -> str:
        if options["password_file"]:
            try:
                password = options["password_file"].read_text().rstrip("\r\n")
            except OSError as exc:
                raise CommandError(f"Cannot read the password file: {exc.strerror}") from exc
        else:
            password = os.environ.get(options["password_env"], "")
            if not password:
                raise CommandError(f"The variable {options['password_env']} is empty or unset.")
        if not password:
            raise CommandError("The password is empty.")
        return password

    # --- subcommands ---
    def do_add(self, options):
        """The same service as the connect wizard and the admin site (inbox/services/
        mailboxes.py mailbox_connect), after the same connection test unless --skip-check."""
        owner = None
        if options["kind"] == "personal":
            if not options["owner"]:
                raise CommandError("A personal mailbox needs --owner USERNAME.")
            try:
                owner = get_user_model().objects.get(username=options["owner"])
            except get_user_model().DoesNotExist as exc:
                raise CommandError(f"No user named {options['owner']!r}.") from exc
        elif options["owner"]:
            raise CommandError("A shared mailbox has no owner; grant it in the admin site.")
        smtp = [options["smtp_host"], options["smtp_port"], options["smtp_security"]]
        if any(smtp) and not all(smtp):
            raise CommandError("Give --smtp-host, --smtp-port and --smtp-security together.")
        folders = [f.strip() for f in (options["folders"] or "").split(",") if f.strip()]
        imap = [options["imap_host"], options["imap_port"], options["imap_security"]]
        if not options["imap_host"]:
            # The connect wizard's guess (well-known providers, else imap.<domain>:993 TLS).
            guess = guess_server_settings(options["email"])
            imap = [
                guess.get("imap_host", ""),
                options["imap_port"] or guess.get("imap_port"),
                options["imap_security"] or guess.get("imap_security"),
            ]
            self.stdout.write(
                f"IMAP server guessed from the address: {imap[0]}:{imap[1]} ({imap[2]})"
            )
        elif not all(imap):
            raise CommandError("Give --imap-port and --imap-security with --imap-host.")
        fields = dict(
            login=options["login"] or "",
            imap_host=imap[0],
            imap_port=imap[1],
            imap_security=imap[2],
            smtp_host=options["smtp_host"] or "",
            smtp_port=options["smtp_port"] or 465,
            smtp_security=options["smtp_security"] or Security.SSL,
            allow_insecure_cert=options["allow_insecure_cert"],
            sync_from=options["sync_from"],
            create_contacts=options["create_contacts"],
            refresh_interval=options["refresh_interval"],
        )
        if options["create_tickets"]:
            if options["kind"] != "shared":
                raise CommandError("--create-tickets is for a shared (support) mailbox.")
            fields["create_tickets"] = True
        password = self._read_password(options)
        if not options["skip_check"]:
            candidate = Mailbox(
                kind=options["kind"], owner=owner, email_address=options["email"], **fields
            )
            candidate.set_password(password)
            try:
                candidate.full_clean(exclude=["password_encrypted"])
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            result = test_connection(candidate)
            if not result.ok:
                raise CommandError(f"Connection check failed: {result.error}")
            names = {f.name for f in result.folders}
            missing = [f for f in folders if f not in names]
            if missing:
                raise CommandError(f"No such folders on the server: {', '.join(missing)}")
            self.stdout.write(f"Connection OK: {len(result.folders)} folders.")
        try:
            mailbox = mailbox_connect(
                user=None,
                kind=options["kind"],
                owner=owner,
                email_address=options["email"],
                password=password,
                active_folders=folders or None,
                **fields,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(str(mailbox.pk))

    def do_test(self, options):

        mailbox = self._mailbox(options["id"])
        result = test_connection(mailbox)
        if not result.ok:
            raise CommandError(f"Connection check failed: {result.error}")
        self.stdout.write(f"IMAP login OK as {mailbox.login_name}")
        if result.smtp_error:
            self.stdout.write(f"SMTP: {result.smtp_error}")
        elif mailbox.smtp_host:
            self.stdout.write("SMTP login OK")
        for folder in result.folders:
            since = "" if folder.since_count is None else f", {folder.since_count} to sync"
            use = f" ({folder.special_use})" if folder.special_use else ""
            self.stdout.write(f"  {folder.name}{use}: {folder.messages} messages{since}")

    def do_list(self, options):
        rows = Mailbox.objects.select_related("owner").order_by("pk")
        self.stdout.write(f"{'ID':>4}  {'KIND':8}  {'OWNER':12}  {'STATE':16}  ADDRESS")
        for m in rows:
            owner = m.owner.username if m.owner else "-"
            self.stdout.write(f"{m.pk:>4}  {m.kind:8}  {owner:12}  {m.state:16}  {m.email_address}")

    def do_sync(self, options):

        mailbox = self._mailbox(options["id"])
        # The same connect as the Celery task: OAuth tokens are refreshed before the login.
        report = sync_mailbox(mailbox.pk, connect=connect_imap)
        for folder in report.folders:
            extra = " (UIDVALIDITY changed: re-enumerated)" if folder.uidvalidity_reset else ""
            self.stdout.write(
                f"  {folder.name}: {folder.stored} stored, {folder.duplicate} duplicate, "
                f"{folder.skipped} skipped, {folder.failed} failed, {folder.held} held, "
                f"{folder.expunged} expunged, {folder.flags_changed} flag changes{extra}"
            )
        self.stdout.write(report.summary())
        if not report.completed:
            raise CommandError(f"Sync did not complete: {report.summary()}")

    def do_import(self, options):

        mailbox = self._mailbox(options["id"])
        for path in options["files"]:
            try:
                # An archive, as an upload's (docs/product.md §3.10): filed, never answered.
                result = import_messages(
                    mailbox, read_messages(path), folder_name=options["folder"], history=True
                )
            except ImportFileError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"{path}: {result.stored} stored, {result.duplicate} duplicate, "
                f"{result.unchanged} already imported, {result.failed + result.held} failed"
            )

    def do_status(self, options):

        status = mailbox_status(self._mailbox(options["id"]))
        if options["json"]:
            self.stdout.write(json.dumps(status))
            return
        self.stdout.write(f"{status['email']}: {status['state']}")
        if status["last_error"]:
            self.stdout.write(f"Last error: {status['last_error']}")
        for f in status["folders"]:
            self.stdout.write(
                f"  {f['name']}: uidvalidity {f['uidvalidity']}, last uid {f['last_uid']}, "
                f"{f['messages']} messages"
            )
        self.stdout.write("Ledger: " + ", ".join(f"{k} {v}" for k, v in status["ledger"].items()))
