"""Unlock sign-in for accounts or client addresses locked after failed sign-ins
(crm/signin.py, docs/reliability.md C-26), or list the locks."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm import signin
from crm.models import SignInThrottle


class Command(BaseCommand):
    help = "Unlock sign-in for user names or IP addresses (or --all); with nothing, list locks."

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="*", help="user names to unlock")
        parser.add_argument("--address", action="append", default=[], help="an IP address")
        parser.add_argument("--all", action="store_true", help="every account and address")

    def handle(self, *args, usernames, address, all, **options):
        if not (usernames or address or all):
            locked = SignInThrottle.objects.filter(locked_until__gt=timezone.now())
            for row in locked.order_by("locked_until"):
                until = timezone.localtime(row.locked_until).isoformat(timespec="seconds")
                self.stdout.write(f"{row.kind} {row.key} locked until {until}")
            if not locked.exists():
                self.stdout.write("Nothing is locked.")
            return
        if all and (usernames or address):
            raise CommandError("--all unlocks everything: give no names or addresses with it.")
        count = signin.unlock(usernames=usernames, addresses=address, everything=all)
        self.stdout.write(f"Unlocked: {count} account(s) or address(es) forgotten.")
