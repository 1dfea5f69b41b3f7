"""A non-editable `pip install .` is a working Relay: the wheel carries the migrations, the
management commands, the templates and the static files, and its `relay-manage` command checks,
migrates, collects static files, serves the sign-in page and runs every management command,
from a directory that holds no checkout. Built and installed offline: the dependencies come
from the suite's own virtual environment, the project only from the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

# One worker builds the wheel and the environment once for all three tests (make test runs
# pytest-xdist with --dist loadgroup; tests/conftest.py).
pytestmark = pytest.mark.xdist_group("packaging")

ROOT = Path(__file__).resolve().parent.parent
OUR_COMMANDS = (
    "mailbox",
    "purge_jobs",
    "demo_data",
    "rotate_encryption_keys",
    "unlock_signin",
    "secure_data_dir",
)

HELP_EACH = """
import sys

from crm.manage import main

for command in sys.argv[1:]:
    print(f"\\n=== {command}", flush=True)
    sys.argv = ["relay-manage", "help", command]
    main()
    sys.stdout.flush()
"""


def run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the fresh environment's bin folder, the environment to run it with, a work folder)."""
    tmp = tmp_path_factory.mktemp("packaging")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "data", "build", "*.egg-info", "staticfiles", "__pycache__"
        ),
    )
    wheels = tmp / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(source)],
        cwd=tmp,
    )
    (wheel,) = wheels.glob("relay_crm-*.whl")
    target = tmp / "venv"
    # A fresh environment without a pip of its own (ensurepip was most of this set-up: 124 s
    # against 45 s side by side on a loaded machine). The suite's pip installs into it (pip's
    # --python option): the same non-editable install of the wheel into its site-packages.
    venv.EnvBuilder(with_pip=False).create(target)
    bin_dir = target / "bin"
    run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "-q"]
        + ["--no-deps", "--no-index", str(wheel)]
    )
    work = tmp / "elsewhere"
    work.mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "HOME": str(work),
        # The dependencies, not the project: .pth files (the checkout's editable install) are
        # only read from real site directories, never from PYTHONPATH.
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "RELAY_DATA_DIR": str(work / "data"),
        "STATIC_ROOT": str(work / "static"),
        "DJANGO_DEBUG": "false",
        "RELAY_PRODUCTION": "false",
    }
    return bin_dir, env, work


def manage(installed, *args: str) -> subprocess.CompletedProcess:
    bin_dir, env, work = installed
    return run([str(bin_dir / "relay-manage"), *args], cwd=work, env=env)


def test_the_wheel_carries_templates_static_files_migrations_and_commands(installed):
    bin_dir, env, work = installed
    probe = run(
        [
            str(bin_dir / "python"),
            "-c",
            "import crm, inbox, connector, demo, pathlib; "
            "print(pathlib.Path(crm.__file__).parent.parent)",
        ],
        cwd=work,
        env=env,
    )
    site = Path(probe.stdout.strip())
    assert ROOT not in site.parents and site != ROOT, "imported the checkout, not the wheel"
    for path in (
        "crm/templates/base.html",
        "inbox/templates/inbox/inbox.html",
        "crm/static/vendor/htmx/htmx.min.js",
        "inbox/static/js/inbox.js",
        "inbox/migrations/0001_initial.py",
        "crm/migrations/0001_initial.py",
        "connector/management/commands/mailbox.py",
        "demo/management/commands/demo_data.py",
        "notes/templates/notes/_panel.html",
        "notes/static/notes/notes.js",
        "notes/migrations/0001_initial.py",
        "notifications/templates/notifications/_bell.html",
        "notifications/migrations/0001_initial.py",
    ):
        assert (site / path).is_file(), path


def test_relay_manage_checks_migrates_collects_and_serves(installed):
    bin_dir, env, work = installed
    manage(installed, "check")
    manage(installed, "migrate", "--noinput", "-v", "0")
    manage(installed, "collectstatic", "--noinput", "-v", "0")
    assert (work / "static" / "vendor" / "bootstrap" / "bootstrap.min.css").is_file()
    assert (work / "static" / "css" / "inbox.css").is_file()
    page = run(
        [
            str(bin_dir / "python"),
            "-c",
            "import django; django.setup(); from django.test import Client; "
            "r = Client(HTTP_HOST='localhost').get('/accounts/login/'); "
            "print(r.status_code, b'Sign in' in r.content)",
        ],
        cwd=work,
        env={**env, "DJANGO_SETTINGS_MODULE": "crm.settings"},
    )
    assert page.stdout.split() == ["200", "True"]


def test_every_management_command_of_ours_runs(installed):
    bin_dir, env, work = installed
    listed = manage(installed, "help", "--commands").stdout.split()
    assert set(OUR_COMMANDS) <= set(listed)
    # Each command's help from the installed package, in one process: crm.manage.main (the
    # function the relay-manage script calls) with the arguments relay-manage passes it. One
    # Django start-up instead of six (~1.5 s of CPU each); the script itself runs in every
    # other call of this test.
    helps = run([str(bin_dir / "python"), "-c", HELP_EACH, *OUR_COMMANDS], cwd=work, env=env)
    sections = helps.stdout.split("\n=== ")[1:]
    assert [section.split("\n", 1)[0] for section in sections] == list(OUR_COMMANDS)
    for command, section in zip(OUR_COMMANDS, sections, strict=True):
        assert f"usage: relay-manage {command}" in section, section
    manage(installed, "migrate", "--noinput", "-v", "0")
    manage(installed, "demo_data")
    assert "support@relay.example" in manage(installed, "mailbox", "list").stdout
    manage(installed, "purge_jobs", "--dry-run")
    manage(installed, "rotate_encryption_keys")
    assert "Nothing is locked." in manage(installed, "unlock_signin").stdout
