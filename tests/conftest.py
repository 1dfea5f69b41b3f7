"""Fixtures shared by the whole suite: the personas every permission test uses.

owner     - a staff user with a personal mailbox of their own
teammate  - a staff user granted the shared mailbox
outsider  - a staff user with no grant to anything
admin     - a superuser (manages mailboxes, but reads no one's personal mail)

Running in parallel: `make test` runs the suite with pytest-xdist (`pytest -n 4 --dist
loadgroup`). Nothing a test touches is shared between workers: pytest-django gives each worker
its own test database (test_relay_gw0...), tests/workerenv.py its own Redis database and data
folder (through the environment, so the Celery workers and beats of tests/workerkit.py get them
too), and every server a fixture starts (tests/servers/: Dovecot, aiosmtpd, the OAuth and fault
proxy fakes; live_server; Chromium through a pipe) listens on a port the kernel picked, never a
fixed one; tests/servers/certs.py refused_port() holds a "nobody listens here" port reserved.
The slowest files are handed out first (SLOW_FIRST below), so none is left for the end of one
worker while the others idle; the tests sharing an expensive module fixture stay on one worker
(their xdist_group mark, e.g. tests/test_packaging.py).
"""

from __future__ import annotations

import os

import pytest
from _pytest.nodeid import coerce_node_id
from pytest_django import fixtures as django_fixtures

pytest_plugins = ["tests.servers.fixtures"]

os.environ.setdefault("RELAY_ALLOWED_MAIL_HOSTS", "127.0.0.1,localhost")

from tests import factories as f  # noqa: E402

_pytest_django_db_setup = django_fixtures.django_db_setup.__wrapped__

# Longest single tests first, so that none starts near the end of the run while the other
# workers idle: a prefix is a file or one test (a node id). Ranked by
# `pytest -n 4 --dist loadgroup --durations=80` on a shared, heavily loaded machine (seconds
# there, several times the quiet figures): the packaging group (setup 137, calls 640 and 300),
# the XSS corpus (519 inbox views, 299 protected), the kill steps (250), the command help
# (240, before it ran in-process), sync faults (186), MIME trees (185, 133), round trips
# (124), the 3-vs-300 page queries (122), scale-out (122), beats (115), the embedded run
# (113); then the browser flows and the Celery-process files. Everything else: under 75 s.
SLOW_FIRST = (
    "tests/test_packaging.py",
    "tests/web/test_xss_inbox_views.py",
    "tests/web/test_xss_corpus.py",
    "tests/connector/sync/test_sync_kill_steps.py",
    "tests/connector/sync/test_sync_faults.py",
    "tests/connector/ingest/test_mime.py",
    "tests/connector/sync/test_sync_roundtrips.py",
    "tests/inbox/test_inbox_pages.py::test_every_page_takes_the_same_queries_for_3_and_300",
    "tests/test_scale_out.py",
    "tests/test_beat_twice.py",
    "tests/test_embedded.py",
    "tests/connector/outbound/test_sending_kill.py",
    "tests/test_commands.py",
    "tests/web/",
    "tests/inbox/test_permissions_matrix.py",
    "tests/inbox/test_reports.py",
    "tests/inbox/test_rendering.py",
    "tests/connector/scheduling/test_purge.py",
)


def _slowness(item) -> int:
    for rank, prefix in enumerate(SLOW_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(SLOW_FIRST)


def _xdist_groups(config, items) -> None:
    """What `--dist loadgroup` needs and pytest-xdist 3.8 no longer gets under pytest 9: a test
    marked xdist_group("name") carries "@name" at the end of its node id, the scope by which the
    controller hands tests out. xdist still writes the old `item._nodeid`, which pytest 9's
    nodes no longer read (their id is `item._id`), so every grouped test was handed out on its
    own: the packaging tests built their wheel and environment on three workers instead of one.
    Skipped when the id already ends with the group (an xdist that does it itself again)."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted(
            {
                str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                for mark in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)


@pytest.hookimpl(trylast=True)  # after pytest-django's own order, which the sort keeps per rank
def pytest_collection_modifyitems(config, items):
    _xdist_groups(config, items)
    items.sort(key=_slowness)  # stable: the rest keeps its order


@pytest.fixture(autouse=True)
def _no_parse_pool_outlives_its_test():
    """The ingest parse pool (connector/ingest/pool.py) forks processes that inherit every file
    this process holds open, the pipe to Playwright's driver included: a pool forked after the
    browser started kept that pipe open, the driver never saw it close, and the worker hung
    at the end of the session. Each test's pool ends with the test."""
    yield
    from connector.ingest import pool as parse_pool

    running = parse_pool._pool
    if running is not None:
        parse_pool._drop_pool()
        running.shutdown(wait=True)


@pytest.fixture(scope="session")
def django_db_setup(request, django_db_blocker, django_db_use_migrations, django_db_keepdb):
    """Each worker's PostgreSQL test database is a copy of one migrated template, built once per
    set of migrations (tests/testdb.py). SQLite, --nomigrations and --reuse-db keep
    pytest-django's own set-up."""
    from django.db import connections

    # What pytest-django's own fixture sets up first (the test environment, the xdist suffix).
    for name in ("django_test_environment", "django_db_createdb", "django_db_modify_db_settings"):
        request.getfixturevalue(name)
    connection = connections["default"]
    if connection.vendor != "postgresql" or not django_db_use_migrations or django_db_keepdb:
        yield from _pytest_django_db_setup(
            request,
            None,
            django_db_blocker,
            django_db_use_migrations,
            django_db_keepdb,
            request.getfixturevalue("django_db_createdb"),
            None,
        )
        return
    from tests import testdb

    original_name = connection.settings_dict["NAME"]
    with django_db_blocker.unblock():
        test_name = testdb.setup()
    yield
    with django_db_blocker.unblock():
        testdb.teardown(test_name, original_name)


# Kept between tests: what every migrated database holds and post_migrate would re-create.
_KEPT_TABLES = {"django_content_type", "auth_permission"}


@pytest.fixture(scope="session", autouse=True)
def _fast_flush():
    """The end of every test that commits (live_server, transactional_db): Django's flush runs
    TRUNCATE over all 50 tables, then post_migrate re-creates every content type and permission,
    about 0.33 s each time, most of it PostgreSQL making and syncing new files; over the browser
    flows alone, minutes of the suite. One DELETE per table in one transaction leaves the same
    empty tables in 2 ms (the foreign keys Django makes on PostgreSQL are deferred, so the
    order does not matter; sequences keep counting, as with Django's flush here). Content types
    and permissions stay, exactly what post_migrate would have made again. Tests flushing only
    some apps (available_apps) or restoring serialized data keep Django's own flush."""
    from django.db import connections, transaction
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def fixture_teardown(self):
        if self.available_apps is not None or self.serialized_rollback:
            return original(self)
        for db_name in self._databases_names(include_mirrors=False):
            connection = connections[db_name]
            if connection.vendor != "postgresql":
                return original(self)
            tables = sorted(
                set(connection.introspection.django_table_names(only_existing=True)) - _KEPT_TABLES
            )
            quote = connection.ops.quote_name
            with transaction.atomic(using=db_name), connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                cursor.execute("; ".join(f"DELETE FROM {quote(table)}" for table in tables))

    TransactionTestCase._fixture_teardown = fixture_teardown
    yield
    TransactionTestCase._fixture_teardown = original


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Hash test passwords with MD5, as Django's testing docs advise: PBKDF2's 1.5 million
    rounds cost ~0.5 s of CPU per user made or signed in, thousands of times over the suite.
    The production hashers stay listed, so a PBKDF2 hash still verifies."""
    from django.conf import settings
    from django.test.utils import override_settings

    fast = override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]
        + [h for h in settings.PASSWORD_HASHERS if not h.endswith("MD5PasswordHasher")]
    )
    fast.enable()
    yield
    fast.disable()


@pytest.fixture
def owner(db):
    return f.UserFactory(username="owner", first_name="Olivia", last_name="Owner")


@pytest.fixture
def teammate(db):
    return f.UserFactory(username="teammate", first_name="Tom", last_name="Teammate")


@pytest.fixture
def outsider(db):
    return f.UserFactory(username="outsider", first_name="Oscar", last_name="Outsider")


@pytest.fixture
def admin_user(db):
    return f.UserFactory(
        username="admin", first_name="Ada", last_name="Admin", is_staff=True, is_superuser=True
    )


@pytest.fixture
def personal_mailbox(owner):
    return f.MailboxFactory(owner=owner, email_address="olivia@relay.test")


@pytest.fixture
def shared_mailbox(teammate):
    mailbox = f.SharedMailboxFactory(email_address="support@relay.test")
    mailbox.granted_users.add(teammate)
    return mailbox


def login(client, user):
    client.force_login(user)
    return client
