"""Many rows in one statement: the one bulk-insert helper of the engine (sync, threads,
filing). COPY for plain inserts and INSERT ... SELECT FROM unnest(arrays) ON CONFLICT for rows
that may exist already, on PostgreSQL with psycopg 3; bulk_create elsewhere (SQLite for
`make run`) and for small batches.

The initial sync inserts about seven rows a message (the message, its addresses, its thread,
its location and ledger entry). bulk_create spent more CPU turning model instances into SQL
parameters than PostgreSQL spent storing the rows, in the one process that must keep up with
the parse pool (bench/sync.py). Only plain inserts go through here: rows that may conflict
(locations, the ledger, filings) go through `upsert` or `insert_ignoring_conflicts`, whose
parameters are one array a column whatever the number of rows. Same transaction, same values
as Django would write; the instances get their primary keys, as bulk_create gives them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import psycopg
from django.db import connection
from django.db.models import DateField, Field, JSONField, Model
from django.utils import timezone
from psycopg.types.json import Jsonb

COPY_MIN_ROWS = 20  # below this, COPY's set-up costs more than it saves


def can_copy(rows: int) -> bool:
    return (
        rows >= COPY_MIN_ROWS
        and connection.vendor == "postgresql"
        and connection.Database.__name__ == "psycopg"
    )


# COPY in PostgreSQL's binary format where every column's type is one of these and every value
# is of the Python type its column takes as is: a text field travels as its UTF-8 bytes and a
# length, where the text format escapes it byte by byte here and unescapes it there. On real-
# sized mail (~30 KB of bodies a message) that cut the CPU of the messages' rows by three
# quarters here and by half in PostgreSQL (bench/README.md, issue #17). Anything else (a naive
# datetime, which the text format leaves to the session's time zone; a str for a number...)
# keeps the text format: same rows.
_BINARY_TYPES: dict[str, tuple[type, ...]] = {
    "int2": (int,),
    "int4": (int,),
    "int8": (int,),
    "bool": (bool,),
    "text": (str,),
    "varchar": (str,),
    "jsonb": (Jsonb,),
    "timestamptz": (datetime,),
}
_column_types: dict[tuple[int, str], dict[str, str]] = {}


def _types_of(table: str) -> dict[str, str]:
    """column -> PostgreSQL type name of `table`, asked once per connection (a migration that
    changes a type is picked up by the next connection)."""
    connection.ensure_connection()
    key = (id(connection.connection), table)
    types = _column_types.get(key)
    if types is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attname, atttypid::regtype::text FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table],
            )
            names = {"bigint": "int8", "integer": "int4", "smallint": "int2", "boolean": "bool"}
            names |= {"character varying": "varchar", "timestamp with time zone": "timestamptz"}
            types = {column: names.get(kind, kind) for column, kind in cursor.fetchall()}
        if len(_column_types) > 1000:  # connections come and go over a worker's life
            _column_types.clear()
        _column_types[key] = types
    return types


def _binary_types(table: str, columns: list[str], rows: list[Sequence]) -> list[str] | None:
    """The columns' type names if these rows can go in binary, else None."""
    types = _types_of(table)
    kinds = [types.get(column, "") for column in columns]
    accepted = [_BINARY_TYPES.get(kind) for kind in kinds]
    if None in accepted:
        return None
    for index, python in enumerate(accepted):
        for row in rows:
            value = row[index]
            if value is None:
                continue
            if not isinstance(value, python):
                return None
            if python[0] is datetime and value.tzinfo is None:
                return None
            if python[0] is int and isinstance(value, bool) and kinds[index] != "bool":
                return None
    return kinds


def copy_rows(model: type[Model], columns: list[str], rows: Iterable[Sequence]) -> None:
    quote = connection.ops.quote_name
    table = model._meta.db_table
    sql = f"COPY {quote(table)} ({', '.join(map(quote, columns))}) FROM STDIN"
    rows = rows if isinstance(rows, list) else list(rows)
    kinds = _binary_types(table, columns, rows)
    if kinds is not None:
        sql += " (FORMAT BINARY)"
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(sql) as copy:
            if kinds is not None:
                copy.set_types(kinds)
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


def _insert_from_arrays(
    model: type[Model], fields: Sequence[Field], arrays: list[list], on_conflict: str
) -> int:
    """INSERT INTO table (fields) SELECT * FROM unnest(one array a field) ON CONFLICT ...: a
    handful of parameters whatever the number of rows. Runs on a server-side-binding cursor
    on Django's own connection (same transaction): the arrays travel as binary parameters
    instead of being spelled out as SQL literals client-side. Returns the rows inserted."""
    quote = connection.ops.quote_name
    unnest = ", ".join(
        f"%s::{'bigint' if f.is_relation else f.db_type(connection)}[]" for f in fields
    )
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" SELECT * FROM unnest({unnest}) {on_conflict}"
    )
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount


def _column_values(field: Field, values: Iterable) -> list:
    if isinstance(field, JSONField):
        return [Jsonb(v) for v in values]
    return list(values)


def upsert(
    model: type[Model],
    objects: Sequence[Model],
    *,
    unique_fields: Sequence[str],
    update_fields: Sequence[str] = (),
) -> bool:
    """INSERT ... ON CONFLICT (unique_fields) DO NOTHING, or DO UPDATE SET update_fields, for
    many instances in one statement: what bulk_create(ignore_conflicts / update_conflicts)
    does, without building a placeholder and a parameter per value. Objects with a pk (rows
    known to exist) go in by their unique fields like the others; the pk is never written.
    Returns False, having done nothing, where it does not apply (not PostgreSQL, few rows):
    the caller then uses bulk_create."""
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
    arrays = [_column_values(f, (getattr(o, f.attname) for o in objects)) for f in fields]
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(meta.get_field(name).column) for name in unique_fields)
    if update_fields:
        sets = ", ".join(
            f"{quote(c)} = EXCLUDED.{quote(c)}"
            for c in (meta.get_field(n).column for n in update_fields)
        )
        action = f"DO UPDATE SET {sets}"
    else:
        action = "DO NOTHING"
    _insert_from_arrays(model, fields, arrays, f"ON CONFLICT ({conflict}) {action}")
    return True


def insert_ignoring_conflicts(model: type[Model], fields: Sequence[str], rows: list[tuple]) -> int:
    """Insert rows given as tuples of `fields`, skipping those any unique constraint refuses
    (a filing that exists, even unlinked; an open triage entry with the same reason, which is
    a partial unique index). Returns how many were inserted."""
    if not rows:
        return 0
    meta = model._meta
    if connection.vendor != "postgresql":
        names = [meta.get_field(name).attname for name in fields]
        objects = [model(**dict(zip(names, row, strict=True))) for row in rows]
        return len(model.objects.bulk_create(objects, ignore_conflicts=True))
    model_fields = [meta.get_field(name) for name in fields]
    arrays = [
        _column_values(field, (row[index] for row in rows))
        for index, field in enumerate(model_fields)
    ]
    return _insert_from_arrays(model, model_fields, arrays, "ON CONFLICT DO NOTHING")
