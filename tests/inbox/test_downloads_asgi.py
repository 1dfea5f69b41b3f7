"""Downloads under a real uvicorn (tests/servers/asgi.py), as `make run` and docker-compose
serve them: an attachment, a message's raw source and a static file arrive whole and right,
and Django never falls back to reading a synchronous iterator into memory first (its warning
"StreamingHttpResponse must consume synchronous iterators"; crm/streaming.py,
docs/reliability.md A-04)."""

from __future__ import annotations

import hashlib
import http.client
import os
import warnings

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from tests import factories as f
from tests.inbox.test_reading_views import attach, with_raw

pytestmark = pytest.mark.django_db(transaction=True)

SYNC_ITERATOR_WARNING = "must consume synchronous iterators"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def get(server, path: str, user=None) -> tuple[int, bytes]:
    headers = {}
    if user is not None:
        client = Client()
        client.force_login(user)
        headers["Cookie"] = f"sessionid={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_downloads_stream_under_uvicorn_without_the_sync_iterator_fallback(
    asgi_server, owner, personal_mailbox
):
    message = with_raw(
        f.MessageFactory(mailbox=personal_mailbox), b"Subject: x\r\n\r\n" + b"line\r\n" * 50_000
    )
    data = os.urandom(3 * 1024 * 1024 + 17)  # many blocks, not a whole number of them
    attachment = attach(message, data, filename="big.bin")
    static = finders.find("js/live.js")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the server's thread warns into this process
        status, got = get(
            asgi_server,
            reverse("inbox:attachment_download", args=[message.pk, attachment.pk]),
            owner,
        )
        assert status == 200
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()

        status, got = get(asgi_server, reverse("inbox:message_raw", args=[message.pk]), owner)
        assert status == 200
        assert got == b"Subject: x\r\n\r\n" + b"line\r\n" * 50_000

        status, got = get(asgi_server, f"{django_settings.STATIC_URL}js/live.js")
        assert status == 200
        with open(static, "rb") as file:
            assert got == file.read()

    assert [str(w.message) for w in caught if SYNC_ITERATOR_WARNING in str(w.message)] == []
