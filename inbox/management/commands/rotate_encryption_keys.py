"""Re-encrypt every stored mail credential with the newest key of RELAY_ENCRYPTION_KEYS.

Rotation (docs/reliability.md C-02): put a new key first in RELAY_ENCRYPTION_KEYS, run this command,
then remove the old key. A value no configured key opens is reported and left untouched."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from inbox.crypto import SecretUnreadable, rotate
from inbox.models import ENCRYPTED_FIELDS


class Command(BaseCommand):
    help = "Re-encrypt stored passwords and tokens with the newest RELAY_ENCRYPTION_KEYS key."

    def handle(self, *args, **options):
        rotated = failed = 0
        for model, fields in ENCRYPTED_FIELDS.items():
            for pk in model.objects.values_list("pk", flat=True).iterator():
                with transaction.atomic():
                    row = model.objects.select_for_update().get(pk=pk)
                    changes = {}
                    for field in fields:
                        token = getattr(row, field)
                        if not token:
                            continue
                        try:
                            changes[field] = rotate(token)
                        except SecretUnreadable:
                            failed += 1
                            self.stderr.write(
                                f"{model._meta.label} {pk}: {field} cannot be decrypted with "
                                "any configured key; left unchanged."
                            )
                    if changes:
                        model.objects.filter(pk=pk).update(**changes)
                        rotated += len(changes)
        self.stdout.write(f"Re-encrypted {rotated} secrets; {failed} could not be decrypted.")
        if failed:
            raise CommandError(f"{failed} secrets could not be decrypted.")
