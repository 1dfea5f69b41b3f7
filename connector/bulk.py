"""Plain inserts of many new rows, fast: COPY on PostgreSQL with psycopg 3, bulk_create
elsewhere (SQLite for `make run`, small batches).

The initial sync inserts about seven rows a message (the message, its addresses, its thread,
its location and ledger entry). bulk_create spent more CPU turning model instances into SQL
parameters than PostgreSQL spent storing the rows, in the one process that must keep up with
the parse pool (bench/sync.py). Only plain inserts go through here: rows that may conflict
(locations, the ledger) keep bulk_create's ON CONFLICT. Same transaction, same values as
Django would write; the instances get their primary keys, as bulk_create gives them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import DateField, JSONField, Model
from django.utils import timezone
from psycopg.types.json import Jsonb

COPY_MIN_ROWS = 20  # below this, COPY's set-up costs more than it saves


def can_copy(rows: int) -> bool:
    return (
        rows >= COPY_MIN_ROWS
        and connection.vendor == "postgresql"
        and connection.Database.__name__ == "psycopg"
    )


def copy_rows(model: type[Model], columns: list[str], rows: Iterable[Sequence]) -> None:
    quote = connection.ops.quote_name
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) FROM STDIN"
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)


def insert(model: type[Model], objects: list[Model]) -> list[Model]:
    """Insert new instances (no pk yet) and set their pk. auto_now/auto_now_add fields are set
    as bulk_create's pre_save would set them."""
    if not can_copy(len(objects)):
        return model.objects.bulk_create(objects)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [model._meta.db_table, len(objects)],
        )
        ids = [row[0] for row in cursor.fetchall()]
    fields = model._meta.concrete_fields
    json_fields = {f.attname for f in fields if isinstance(f, JSONField)}
    stamped = [
        f.attname
        for f in fields
        if isinstance(f, DateField) and (getattr(f, "auto_now", False) or f.auto_now_add)
    ]
    now = timezone.now()
    rows = []
    for instance, pk in zip(objects, ids, strict=True):
        instance.pk = pk
        for attname in stamped:
            setattr(instance, attname, now)
        instance._state.adding, instance._state.db = False, connection.alias
        rows.append(
            [
                Jsonb(getattr(instance, f.attname))
                if f.attname in json_fields
                else getattr(instance, f.attname)
                for f in fields
            ]
        )
    copy_rows(model, [f.column for f in fields], rows)
    return objects


def upsert(
    model: type[Model],
    objects: Sequence[Model],
    *,
    unique_fields: Sequence[str],
    update_fields: Sequence[str] = (),
) -> bool:
    """INSERT ... ON CONFLICT (unique_fields) DO NOTHING, or DO UPDATE SET update_fields, for
    many rows in one statement whose parameters are one array a column (`unnest`): what
    bulk_create(ignore_conflicts / update_conflicts) does, without building a placeholder and
    a parameter per value. Objects with a pk (rows known to exist) go in by their unique
    fields like the others; the pk is never written. Returns False, having done nothing, where
    it does not apply (not PostgreSQL, few rows): the caller then uses bulk_create."""
    if not can_copy(len(objects)):
        return False
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    for f in fields:
        if isinstance(f, DateField) and (getattr(f, "auto_now", False) or f.auto_now_add):
            for instance in objects:
                if getattr(f, "auto_now", False) or getattr(instance, f.attname) is None:
                    setattr(instance, f.attname, now)
    arrays = []
    for f in fields:
        if isinstance(f, JSONField):
            arrays.append([Jsonb(getattr(o, f.attname)) for o in objects])
        else:
            arrays.append([getattr(o, f.attname) for o in objects])
    quote = connection.ops.quote_name
    unnest = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in unique_fields)
    if update_fields:
        sets = ", ".join(
            f"{quote(c)} = EXCLUDED.{quote(c)}"
            for c in (meta.get_field(n).column for n in update_fields)
        )
        action = f"DO UPDATE SET {sets}"
    else:
        action = "DO NOTHING"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" SELECT * FROM unnest({unnest}) ON CONFLICT ({conflict}) {action}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
    return True
