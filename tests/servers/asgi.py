"""Relay itself under a real ASGI server (uvicorn, as `make run` and docker-compose run it), in a
thread of the test process, so that it shares the test database. pytest-django's live_server is
WSGI and cannot hold the live-update stream (inbox/views/events.py answers it 204).

Static files come through whitenoise with finders, as outside production."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class AsgiServer:
    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))  # a port the kernel picks (tests/conftest.py)
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        from crm.asgi import application

        config = uvicorn.Config(
            application,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> AsgiServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(5)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(5)
        self._socket.close()
        # Django's sync code under this server ran in threads of asgiref's, one per request
        # (ThreadSensitiveContext), gone now with their connections still open (CONN_MAX_AGE):
        # end those sessions, or the test database could not be dropped at the end.
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
