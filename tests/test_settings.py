"""Production settings: `manage.py check --deploy` must be clean (docs/product.md §8), checked in a
fresh process because settings are read once, from the environment, at start-up."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "RELAY_PRODUCTION": "true",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        # Two keys, as during a rotation.
        "RELAY_ENCRYPTION_KEYS": ",".join(Fernet.generate_key().decode() for _ in range(2)),
        "RELAY_TOKEN_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": "postgres://relay:secret@db.internal:5432/relay",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "DJANGO_ALLOWED_HOSTS": "crm.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://crm.example.com",
        # Anything the app writes must land here, not in the checkout.
        "RELAY_DATA_DIR": str(tmp_path / "data"),
    }
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_without_warnings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    assert not (tmp_path / "data").exists(), "production must not invent secrets or folders"


def test_production_refuses_to_invent_a_missing_secret(tmp_path):
    env = production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]

    result = manage(env, "check")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_static_files_build_as_in_the_dockerfile(tmp_path):
    """The Dockerfile's collectstatic step, with its build-only placeholders: the manifest
    storage must find every file a stylesheet refers to, or the image does not build."""
    env = production_env(
        tmp_path,
        DJANGO_SECRET_KEY="collectstatic-only",
        RELAY_ENCRYPTION_KEYS="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        RELAY_TOKEN_KEY="collectstatic-only",
        STATIC_ROOT=str(tmp_path / "static"),
    )

    result = manage(env, "collectstatic", "--noinput", "--verbosity", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()
    assert not (tmp_path / "data").exists()


def _settings_source() -> str:
    return (BASE_DIR / "crm" / "settings.py").read_text()


def test_every_environment_variable_the_settings_read_is_in_the_readme():
    """crm/settings.py is the one place settings are read from the environment, and the
    README's table lists every one of them (the table is how an operator finds them)."""
    import re

    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', _settings_source()))
    readme = (BASE_DIR / "README.md").read_text()
    assert read, "no env() calls found: the pattern is out of date"
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert not missing, f"in crm/settings.py but not in the README's table: {missing}"


def test_the_code_reads_only_settings_that_are_declared():
    """No getattr(settings, NAME, default): a setting that exists only as a default in code
    can never be switched on from the environment (RELAY_AUTHSERV_IDS was one)."""
    import re

    from django.conf import global_settings

    declared = set(re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*[:=]", _settings_source(), re.M))
    declared |= {name for name in dir(global_settings) if name.isupper()}
    problems = []
    for package in ("crm", "inbox", "connector", "notes", "notifications", "demo"):
        for path in (BASE_DIR / package).rglob("*.py"):
            text = path.read_text()
            if re.search(r"getattr\(\s*(django_)?settings\s*,", text):
                problems.append(f"{path.relative_to(BASE_DIR)}: getattr(settings, ...)")
            for name in re.findall(r"\b(?:django_)?settings\.([A-Z][A-Z0-9_]+)", text):
                if name not in declared:
                    problems.append(f"{path.relative_to(BASE_DIR)}: settings.{name}")
    assert not problems, problems
