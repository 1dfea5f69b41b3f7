"""Message bodies compressed with lz4 instead of pglz when PostgreSQL moves them out of line
(TOAST, above ~2 KB). A newsletter's HTML body is tens of KB; pglz compressing it was the
largest part of PostgreSQL's CPU in an initial sync of real-sized mail (bench/sync.py,
issue #17). lz4 compresses several times faster for about the same size, and reads faster.
Applies to rows written from now on; PostgreSQL reads either kind. Needs PostgreSQL 14+ built
with lz4 (Debian's and the official images are); elsewhere nothing changes."""

from django.db import migrations

COLUMNS = ("text_body", "html_body")


def _lz4_available(cursor) -> bool:
    cursor.execute("SELECT current_setting('server_version_num')::int >= 140000")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    )
    return cursor.fetchone() is not None


def _set(compression: str):
    def run(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            if compression == "lz4" and not _lz4_available(cursor):
                return
            for column in COLUMNS:
                cursor.execute(
                    f"ALTER TABLE inbox_message ALTER COLUMN {column} SET COMPRESSION {compression}"
                )

    return run


class Migration(migrations.Migration):
    dependencies = [("inbox", "0025_push_watch")]

    operations = [migrations.RunPython(_set("lz4"), _set("pglz"))]
