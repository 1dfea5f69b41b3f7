"""The web server's own lines in the app's log format (crm/settings.py LOGGING, crm/logs.py):
uvicorn started as `make run` starts it (bin/web) and gunicorn with uvicorn workers as
docker-compose's web service runs it (its command, read from docker-compose.yml). A request
gives one logfmt access line with the method, the path and the status, and nothing the
server prints is in uvicorn's or gunicorn's default format."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers.certs import free_port

ROOT = Path(__file__).resolve().parents[2]
LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def compose_web_command(port: int) -> list[str]:
    """docker-compose.yml's web command, bound to `port` instead of the container's 8000."""
    text = (ROOT / "docker-compose.yml").read_text()
    web = text[text.index("\n  web:\n") :]
    block = web[web.index("    command:\n") + len("    command:\n") :]
    command = []
    for line in block.splitlines():
        if line.strip().startswith("#"):
            continue
        item = re.match(r"\s+- (.*)$", line)
        if not item:
            break
        command.append(item.group(1).strip().strip('"'))
    assert command[0] == "gunicorn", command
    command = [f"--bind=127.0.0.1:{port}" if arg.startswith("--bind=") else arg for arg in command]
    return [str(ROOT / ".venv/bin/gunicorn"), *command[1:], "--workers=1"]


def parse_logfmt(line: str) -> dict[str, str]:
    fields = {key: value.strip('"') for key, value in LOGFMT_PAIR.findall(line)}
    assert line.startswith("ts=") and {"ts", "level", "logger", "event"} <= set(fields), line
    return fields


def serve_one_request(command: list[str], port: int) -> tuple[int, list[str]]:
    env = {**os.environ, "PORT": str(port), "RELAY_HOST": "127.0.0.1", "LOG_FORMAT": "logfmt"}
    env.pop("PYTHONWARNINGS", None)
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web server did not start"
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/healthz?from=test")
        response = conn.getresponse()
        response.read()
        status = response.status
        conn.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    return status, [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("server", ["bin/web", "compose"])
def test_a_request_gives_one_logfmt_access_line_and_nothing_in_another_format(server):
    port = free_port()
    command = [str(ROOT / "bin/web")] if server == "bin/web" else compose_web_command(port)
    status, lines = serve_one_request(command, port)

    records = [parse_logfmt(line) for line in lines]  # every line: no default format
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert len(access) == 1, lines
    line = access[0]
    assert (line["method"], line["path"], line["status"]) == (
        "GET",
        "/healthz?from=test",
        str(status),
    )
    assert line["event"] == f"GET /healthz?from=test {status}"
    assert "color_message" not in line
    # uvicorn's start-up line, through the same formatter.
    assert any(r["logger"] in ("uvicorn.error", "gunicorn.error") for r in records), lines
