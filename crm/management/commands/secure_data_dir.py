"""Make everything under the data folder (and MEDIA_ROOT) readable by its owner only:
folders 0700, files 0600 (docs/reliability.md C-29). bin/run runs it at every start, so a
data folder made by an earlier version is closed."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from crm.datadir import tighten_tree


class Command(BaseCommand):
    help = "Make the data folder private: folders 0700, files 0600."

    def handle(self, *args, **options):
        changed = tighten_tree(settings.DATA_DIR)
        if settings.MEDIA_ROOT and not str(settings.MEDIA_ROOT).startswith(str(settings.DATA_DIR)):
            changed += tighten_tree(settings.MEDIA_ROOT)
        if changed or options["verbosity"] > 1:
            self.stdout.write(f"Data folder made private: {changed} file(s) and folder(s) fixed.")
