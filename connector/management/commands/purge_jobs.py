"""`manage.py purge_jobs`: delete completed job records and old ledger entries now (the beat
runs the same every day; see connector/scheduling/purge.py for what is and is never deleted)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connector.scheduling import purge


class Command(BaseCommand):
    help = "Purge completed job records and old ledger entries older than N days."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Age in days (default: the Site settings page's value, else "
            "RELAY_PURGE_AFTER_DAYS).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args, days=None, dry_run=False, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        report = purge.purge(days=days, dry_run=dry_run)
        if report.cutoff is None:
            self.stdout.write(report.summary())
            return
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} rows older than {report.cutoff:%Y-%m-%d %H:%M} UTC:")
        for name, count in report.counts.items():
            self.stdout.write(f"  {name}: {count}")
