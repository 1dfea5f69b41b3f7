"""The embedded broker (crm/broker.py): a worker never sees a task message before it is whole,
and a message file it cannot read is set aside with an error line instead of stopping it
(docs/reliability.md I-14). Real kombu connections on real folders; no Celery needed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from queue import Empty

import pytest
from kombu import Connection
from kombu.transport import filesystem

PAYLOAD_BYTES = 256 * 1024  # big enough that writing it takes a while


def _options(root):
    for sub in ("in", "processed", "control"):
        (root / sub).mkdir(exist_ok=True)
    return {
        "data_folder_in": str(root / "in"),
        "data_folder_out": str(root / "in"),
        "processed_folder": str(root / "processed"),
        "control_folder": str(root / "control"),
        "store_processed": False,
    }


def _channel(transport, root):
    connection = Connection("filesystem://", transport=transport, transport_options=_options(root))
    return connection, connection.default_channel


def _race(transport, root, count=60):
    """A producer and a consumer on one folder, as the web process and a worker are. Returns the
    messages the consumer got and the errors it met."""
    producer_conn, producer = _channel(transport, root)
    consumer_conn, consumer = _channel(transport, root)
    body = "x" * PAYLOAD_BYTES
    received, errors = [], []
    done = threading.Event()

    def consume():
        while not (done.is_set() and len(received) + len(errors) >= count):
            try:
                received.append(consumer._get("celery"))
            except Empty:
                if done.is_set() and not os.listdir(root / "in"):
                    return
            except Exception as exc:  # what stopped kombu's worker: the test's finding
                errors.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    for number in range(count):
        producer._put("celery", {"number": number, "body": body})
    done.set()
    thread.join(timeout=60)
    producer_conn.release()
    consumer_conn.release()
    return received, errors


def test_a_busy_consumer_gets_every_message_whole(tmp_path):
    received, errors = _race("crm.broker:Transport", tmp_path)
    assert errors == []
    assert sorted(m["number"] for m in received) == list(range(60))
    assert all(len(m["body"]) == PAYLOAD_BYTES for m in received)
    # Nothing left behind: no partial files, no taken copies.
    assert os.listdir(tmp_path / "in") == []
    assert os.listdir(tmp_path / "processed" / "taken") == []


def test_kombus_own_transport_shows_the_consumer_half_written_files(tmp_path, monkeypatch):
    """The control: kombu's transport creates the file under its final name and then writes it.
    A consumer that lists the folder in that moment meets an empty file. The moment is forced
    here (a pause between creating the file and writing it) instead of waited for."""
    real_lock = filesystem.lock
    listed = []

    def slow_lock(file, flags):
        # The file exists under its final name and is still empty: what a worker listing now sees.
        listed.extend(
            os.path.getsize(os.path.join(tmp_path / "in", name))
            for name in os.listdir(tmp_path / "in")
            if name.endswith(".celery.msg")
        )
        return real_lock(file, flags)

    monkeypatch.setattr(filesystem, "lock", slow_lock)
    connection, channel = _channel("filesystem", tmp_path)
    channel._put("celery", {"number": 1})
    connection.release()
    assert 0 in listed  # an empty message file was there for the taking

    ours = tmp_path / "ours"
    ours.mkdir()
    connection, channel = _channel("crm.broker:Transport", ours)
    seen = []
    real_replace = os.replace

    def watching_replace(source, target):
        # The last moment before the message appears: nothing a worker takes exists yet.
        seen.extend(n for n in os.listdir(ours / "in") if n.endswith(".celery.msg"))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", watching_replace)
    channel._put("celery", {"number": 1})
    assert seen == []
    assert channel._get("celery") == {"number": 1}
    connection.release()


def test_an_unreadable_message_is_set_aside_and_the_next_one_delivered(tmp_path, caplog):
    connection, channel = _channel("crm.broker:Transport", tmp_path)
    (tmp_path / "in" / "1_left-by-an-older-version.celery.msg").write_bytes(b"")
    channel._put("celery", {"number": 2})
    with caplog.at_level(logging.ERROR, logger="crm.broker"):
        assert channel._get("celery") == {"number": 2}
    with pytest.raises(Empty):
        channel._get("celery")
    connection.release()
    aside = tmp_path / "processed" / "unreadable" / "1_left-by-an-older-version.celery.msg"
    assert aside.exists()
    assert "broker message unreadable, set aside" in caplog.text
    assert "1_left-by-an-older-version.celery.msg" in caplog.text


def test_make_runs_worker_uses_it(tmp_path):
    """Without REDIS_URL (make run's embedded defaults) Celery connects through this transport."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["RELAY_DATA_DIR"] = str(tmp_path)
    script = (
        "import django; django.setup(); from crm.celery import app; "
        "print(type(app.connection_for_write().transport).__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split()[-1] == "crm.broker"
