"""The embedded run (`make run`: SQLite, the kombu filesystem broker, keys generated into the
data folder) in processes of its own, as bin/run starts them (docs/reliability.md C-26, C-29).
The rest of the suite runs on PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import hashlib, json, django
django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from django.contrib.auth import get_user_model
from connector.ingest import storage
from crm.celery import app

# Mail files through the code that stores them: a pack of raw sources, a single one, an
# attachment blob, a compose upload.
mails = (b"Subject: a\r\n\r\none", b"Subject: b\r\n\r\n2")
raws = [(hashlib.sha256(r).hexdigest(), r) for r in mails]
storage.save_raws(mailbox_id=1, raws=raws)
digest = hashlib.sha256(b"x").hexdigest()
storage.save_raw(mailbox_id=2, digest=digest, raw=b"Subject: c\r\n\r\nx")
storage.save_blob(b"%PDF-1.4 attachment")
default_storage.save("outbox/1/upload.pdf", ContentFile(b"%PDF-1.4 upload"))
# A task message on the filesystem broker, as the web process sends them.
app.send_task("relay.beat_tick")

# Sign-in throttling on SQLite.
get_user_model().objects.create_user("ana", password="right-password")
out = {}
client = Client(HTTP_HOST="localhost")
for n in range(5):
    client.post("/accounts/login/", {"username": "ana", "password": f"wrong-{n}"})
page = client.post("/accounts/login/", {"username": "ana", "password": "right-password"})
out["locked"] = "Too many failed sign-ins" in page.content.decode()
out["signed_in_while_locked"] = "_auth_user_id" in client.session
call_command("unlock_signin", "ana")
page = client.post("/accounts/login/", {"username": "ana", "password": "right-password"})
out["signed_in_after_unlock"] = page.status_code == 302 and "_auth_user_id" in client.session
print(json.dumps(out))
"""


def embedded_env(data: Path, static: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RELAY_", "DATABASE_URL", "REDIS_URL", "DJANGO_"))
    }
    env.update(
        RELAY_DATA_DIR=str(data),
        STATIC_ROOT=str(static),
        RELAY_PRODUCTION="false",
        DJANGO_SETTINGS_MODULE="crm.settings",
    )
    return env


def run(args, env) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(0o022),  # a usual umask: files would be world-readable
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def modes(root: Path) -> dict[str, str]:
    """Every folder and file under root (root included) with its permission bits."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def open_to_others(root: Path) -> dict[str, str]:
    return {name: mode for name, mode in modes(root).items() if int(mode, 8) & 0o077}


def test_embedded_run_locks_sign_in_and_keeps_its_files_private(tmp_path):
    data = tmp_path / "data"
    # A data folder as an earlier version left it: everything readable by everyone.
    old = data / "media" / "raw" / "9" / "ab"
    old.mkdir(parents=True)
    (old / "ab12.eml.gz").write_bytes(b"old mail")
    (data / ".django_secret_key").write_text("an-old-generated-key-" * 3)
    for path in (data, data / "media", data / "media" / "raw", data / "media" / "raw" / "9", old):
        path.chmod(0o755)
    for path in (old / "ab12.eml.gz", data / ".django_secret_key"):
        path.chmod(0o644)
    env = embedded_env(data, tmp_path / "static")
    python = sys.executable

    # bin/run's first step: the whole folder is closed, to the last file.
    run([python, "manage.py", "secure_data_dir"], env)
    assert open_to_others(data) == {}

    run([python, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    result = run([python, "-c", SCRIPT], env)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "locked": True,
        "signed_in_while_locked": False,
        "signed_in_after_unlock": True,
    }

    found = modes(data)
    # What the real code paths wrote is there...
    assert found["relay.sqlite3"] == "0o600"
    assert found[".relay_encryption_keys"] == found[".relay_token_key"] == "0o600"
    assert any(name.startswith("media/raw/1/") and name.endswith(".pack.gz") for name in found)
    assert any(name.startswith("media/raw/2/") and name.endswith(".eml.gz") for name in found)
    assert any(name.startswith("media/blobs/") and len(name) > 20 for name in found)
    assert "media/outbox/1/upload.pdf" in found
    assert any(name.startswith("broker/in/") for name in found)  # the task message
    # ...and nothing in the data folder is open to anyone else.
    assert open_to_others(data) == {}
    assert found["."] == found["broker"] == found["media"] == "0o700"


def test_bin_run_makes_the_data_folder_private_before_it_writes_anything():
    """`make run` starts with manage.py secure_data_dir, before migrate or the demo data touch
    the folder (the test above runs that command as bin/run does)."""
    steps = [
        line.split("manage.py", 1)[1].split()[0]
        for line in (ROOT / "bin" / "run").read_text().splitlines()
        if line.startswith("$python manage.py")
    ]
    assert steps[0] == "secure_data_dir" and "migrate" in steps[1:]
