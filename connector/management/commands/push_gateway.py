"""`manage.py push_gateway`: hold an IMAP connection (NOTIFY or IDLE) per watched mailbox and
enqueue a targeted sync as soon as a server says something changed (docs/product.md §3.11,
connector/scheduling/gateway.py). Run one or several: they share the mailboxes through leases.
SIGTERM or Ctrl-C stops it cleanly, handing every mailbox back to polling at once."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connector.scheduling.gateway import Gateway


class Command(BaseCommand):
    help = "Watch mailboxes with IMAP IDLE/NOTIFY so new mail arrives within seconds."

    def add_arguments(self, parser):
        parser.add_argument(
            "--name", default="", help="This gateway's name in the health page (default: host)."
        )
        parser.add_argument(
            "--max-sessions",
            type=int,
            default=0,
            help="Mailboxes this gateway watches at most (default: RELAY_PUSH_MAX_SESSIONS).",
        )

    def handle(self, *args, name="", max_sessions=0, **options):
        if max_sessions < 0:
            raise CommandError("--max-sessions must be 0 (the setting) or more.")
        # A background process like the workers: it logs at RELAY_WORKER_LOG_LEVEL (WARNING by
        # default, crm/celery.py), so that what reaches the screen of `make run` is what someone
        # must read and the address bin/run prints stays the last lines.
        level = logging.getLevelName(settings.RELAY_WORKER_LOG_LEVEL)
        if isinstance(level, int):
            logging.getLogger().setLevel(level)
        gateway = Gateway(name=name or f"{socket.gethostname()}:push", max_sessions=max_sessions)
        asyncio.run(self._run(gateway))

    async def _run(self, gateway: Gateway) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logging.getLogger(__name__).info("push gateway %s running; Ctrl-C stops it", gateway.name)
        await gateway.run(stop)
