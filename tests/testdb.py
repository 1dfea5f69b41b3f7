"""One migrated PostgreSQL database per run of the migrations, copied to each pytest-xdist worker.

pytest-django migrates a fresh test database in every worker: the whole migration graph, about
7 s of client CPU plus the server's share, four times per `make test` on a 2-core machine. Here
the first worker to arrive migrates a *template* database once, under a PostgreSQL advisory lock,
and every worker then makes its own database as a copy of it (`CREATE DATABASE ... TEMPLATE`,
under a second). The template is named after a fingerprint of every migration file and the
Django version, so a changed migration builds a new one (and drops the older ones of the same
base name); an unchanged tree reuses it across runs, as the machine's PostgreSQL outlives them.

A half-built template is never used: it is migrated under a temporary name and renamed once
complete. On SQLite (the embedded default) or with --nomigrations, pytest-django's own set-up
runs unchanged (tests/conftest.py django_db_setup).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import django
import psycopg
from django.apps import apps
from django.conf import settings
from django.db import connections

# pg_advisory_lock key: "relay-te" in ASCII, any constant that other code does not use.
LOCK_KEY = 0x72656C61792D7465


def migrations_fingerprint() -> str:
    """Twelve hex digits that change whenever a migration file or Django itself does."""
    digest = hashlib.sha256(django.get_version().encode())
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        folder = Path(config.path) / "migrations"
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            digest.update(f"{config.label}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@contextmanager
def _maintenance(settings_dict: dict) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the server's `postgres` database, for CREATE/DROP DATABASE."""
    params = {
        "dbname": "postgres",
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
    }
    with psycopg.connect(autocommit=True, **{k: v for k, v in params.items() if v}) as conn:
        yield conn


def _exists(admin: psycopg.Connection, name: str) -> bool:
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _build_template(admin: psycopg.Connection, base: str, template: str) -> None:
    """Migrate a database under a temporary name, then publish it under the template's name."""
    stale = admin.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
        [f"test_{base}_template_%", template],
    ).fetchall()
    for (name,) in stale:
        admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    building = f"{template}_building"
    connection = connections["default"]
    original_test = dict(connection.settings_dict.get("TEST") or {})
    connection.settings_dict.setdefault("TEST", {})["NAME"] = building
    try:
        # Django's own creation: drops a leftover `building`, migrates, creates cache tables.
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
    finally:
        connection.close()
        connection.settings_dict["TEST"] = original_test
    admin.execute(f"ALTER DATABASE {_quote(building)} RENAME TO {_quote(template)}")


def setup() -> str:
    """Make this worker's test database from the template (built first if needed); its name."""
    connection = connections["default"]
    settings_dict = connection.settings_dict
    base = settings_dict["NAME"]
    test_name = connection.creation._get_test_db_name()
    template = f"test_{base}_template_{migrations_fingerprint()}"
    with _maintenance(settings_dict) as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            if not _exists(admin, template):
                _build_template(admin, base, template)
            admin.execute(f"DROP DATABASE IF EXISTS {_quote(test_name)} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {_quote(test_name)} TEMPLATE {_quote(template)}")
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    connection.close()
    settings.DATABASES["default"]["NAME"] = test_name
    settings_dict["NAME"] = test_name
    return test_name


def teardown(test_name: str, original_name: str) -> None:
    connection = connections["default"]
    connection.close()
    settings.DATABASES["default"]["NAME"] = original_name
    connection.settings_dict["NAME"] = original_name
    with _maintenance(connection.settings_dict) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {_quote(test_name)} WITH (FORCE)")
