from django.db import migrations, models
from django.db.models.functions import Now


def confirm_existing(apps, schema_editor):
    # Addresses set before confirmation existed stay staff addresses (docs/reliability.md C-19):
    # only new claims need their owner to answer the confirmation mail.
    StaffEmail = apps.get_model("crm", "StaffEmail")
    StaffEmail.objects.filter(confirmed_at__isnull=True).update(confirmed_at=Now())


class Migration(migrations.Migration):

    dependencies = [
        ("crm", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="staffemail",
            name="confirmed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(confirm_existing, migrations.RunPython.noop),
    ]
