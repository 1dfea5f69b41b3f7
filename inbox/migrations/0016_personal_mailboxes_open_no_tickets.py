"""Personal mailboxes never open tickets or forward mail (docs/reliability.md C-22): clear the
two settings where an admin's edit left them, so the model's validation, which now refuses
them on a personal mailbox, never blocks an admin saving such a mailbox."""

from django.db import migrations


def clear(apps, schema_editor):
    Mailbox = apps.get_model("inbox", "Mailbox")
    Mailbox.objects.filter(kind="personal").exclude(
        create_tickets=False, forward_unplaced_to=""
    ).update(create_tickets=False, forward_unplaced_to="")


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0015_privacy_subject_by_default"),
    ]

    operations = [migrations.RunPython(clear, migrations.RunPython.noop)]
