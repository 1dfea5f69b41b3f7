"""Reading one message: permissions (docs/reliability.md C-11, C-12, A-05), the frame's headers
(docs/product.md §7.3), downloads (A-01..A-06), inline cid: images (X-12) and the image proxy (X-11,
C-07)."""

from __future__ import annotations

import datetime as dt
import gzip
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse
from django.urls import reverse
from django.utils import timezone

from inbox import ports
from inbox.views.reading import content_disposition, image_proxy_url, inline_image_url
from tests import factories as f

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"  # noqa: E501
HTML = b"<html><script>alert(document.cookie)</script></html>"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def attach(message, data: bytes, **kwargs):
    path = default_storage.save(f"blobs/{uuid.uuid4().hex}", ContentFile(data))
    blob = f.AttachmentBlobFactory(file=path, size=len(data))
    return f.AttachmentFactory(message=message, blob=blob, **kwargs)


def with_raw(message, raw: bytes = b"Subject: hi\r\n\r\nbody\r\n"):
    message.raw_file = default_storage.save(
        f"raw/{message.mailbox_id}/{uuid.uuid4().hex}.eml.gz", ContentFile(gzip.compress(raw))
    )
    message.save(update_fields=["raw_file"])
    return message


def body(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


# --- Who may read: the permission matrix -------------------------------------------------------


@pytest.fixture
def world(owner, teammate, outsider, admin_user, personal_mailbox, shared_mailbox):
    personal = with_raw(f.MessageFactory(mailbox=personal_mailbox, html_body="<p>hello</p>"))
    shared = with_raw(f.MessageFactory(mailbox=shared_mailbox, html_body="<p>support</p>"))
    for message in (personal, shared):
        attach(message, PNG, filename="logo.png", content_type="image/png", content_id="<logo>")
    revoked = f.UserFactory(username="revoked")
    shared_mailbox.granted_users.add(revoked)
    shared_mailbox.granted_users.remove(revoked)
    group = f.GroupFactory()
    group_member = f.UserFactory(username="grouped")
    group_member.groups.add(group)
    shared_mailbox.granted_groups.add(group)
    return {
        "personal": personal,
        "shared": shared,
        "users": {
            "owner": owner,
            "teammate": teammate,
            "outsider": outsider,
            "admin": admin_user,
            "revoked": revoked,
            "grouped": group_member,
        },
    }


def urls_for(message):
    attachment = message.attachments.get()
    return [
        reverse("inbox:message_read", args=[message.pk]),
        reverse("inbox:message_body", args=[message.pk]),
        reverse("inbox:message_raw", args=[message.pk]),
        reverse("inbox:attachment_download", args=[message.pk, attachment.pk]),
        reverse("inbox:message_inline", args=[message.pk, attachment.pk]),
    ]


MISSING = 987654321

# Who reads what: (user, message) -> allowed. Everyone else gets the 404 of a missing message.
ALLOWED = {
    ("owner", "personal"),
    ("teammate", "shared"),
    ("grouped", "shared"),
}


def not_found_body(client, url: str, message_pk: int) -> bytes:
    """The 404 of the same URL with a message id that does not exist."""
    missing_url = url.replace(f"/messages/{message_pk}/", f"/messages/{MISSING}/", 1)
    response = client.get(missing_url)
    assert response.status_code == 404
    return masked(body(response), MISSING)


def masked(content: bytes, message_pk: int) -> bytes:
    """The page with the message's id in its URLs written as ID: only there, so that a page
    compared for message 1 does not lose every other "1" it holds."""
    return content.replace(f"/messages/{message_pk}/".encode(), b"/messages/ID/")


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["owner", "teammate", "outsider", "admin", "revoked", "grouped"])
@pytest.mark.parametrize("which", ["personal", "shared"])
def test_permission_matrix(client, world, who, which):
    """docs/reliability.md C-11/C-12/A-05: owner, grantee (direct and by group) read; a teammate
    without grant, a revoked grantee and an admin without grant get exactly the 404 of a missing
    message."""
    client.force_login(world["users"][who])
    message = world[which]
    for url in urls_for(message):
        response = client.get(url)
        if (who, which) in ALLOWED:
            assert response.status_code == 200, url
        else:
            assert response.status_code == 404, url
            missing = not_found_body(client, url, message.pk)
            assert masked(body(response), message.pk) == missing, url


@pytest.mark.django_db
def test_anonymous_gets_the_same_answer_as_for_a_missing_message(client, world):
    for url in urls_for(world["personal"]):
        response = client.get(url)
        missing = client.get(url.replace(f"/{world['personal'].pk}/", f"/{MISSING}/", 1))
        if response.status_code == 302:  # the app's login wall, same for both
            assert response["Location"].startswith("/accounts/login/")
            assert missing.status_code == 302
        else:  # the frame's image views: no session needed, so the gate's 404
            assert response.status_code == missing.status_code == 404, url


@pytest.mark.django_db
def test_another_messages_attachment_is_a_404(client, world):
    """docs/reliability.md A-05/X-12: an attachment id of another message, even a readable one, is
    not found."""
    client.force_login(world["users"]["owner"])
    personal, shared = world["personal"], world["shared"]
    mine = personal.attachments.get()
    other = f.MessageFactory(mailbox=personal.mailbox)
    for name in ("inbox:attachment_download", "inbox:message_inline"):
        assert client.get(reverse(name, args=[other.pk, mine.pk])).status_code == 404
        assert (
            client.get(reverse(name, args=[personal.pk, shared.attachments.get().pk])).status_code
            == 404
        )


# --- The sandboxed body ------------------------------------------------------------------------


@pytest.mark.django_db
def test_body_frame_headers(client, owner, personal_mailbox):
    message = f.MessageFactory(
        mailbox=personal_mailbox,
        html_body='<p>Hi<img src="https://tracker.example/p.gif"><script>alert(1)</script></p>',
    )
    client.force_login(owner)
    response = client.get(reverse("inbox:message_body", args=[message.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"  # docs/reliability.md X-10
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Referrer-Policy"] == "no-referrer"
    csp = dict(
        (d.strip().split(" ", 1) + [""])[:2] for d in response["Content-Security-Policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    assert "script-src" not in csp
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
    assert csp["frame-ancestors"] == "'self'"
    assert csp["img-src"] == f"http://testserver/inbox/messages/{message.pk}/inline/"
    assert "allow-scripts" not in csp["sandbox"] and "allow-same-origin" not in csp["sandbox"]
    html = response.content.decode()
    assert "<script" not in html and "tracker.example" not in html

    consented = client.get(reverse("inbox:message_body", args=[message.pk]) + "?images=1")
    assert f"/inbox/messages/{message.pk}/image/" in consented["Content-Security-Policy"]
    assert "tracker.example" not in consented.content.decode().replace("%2F", "/").split("?t=")[0]
    assert f"/inbox/messages/{message.pk}/image/?t=" in consented.content.decode()


@pytest.mark.django_db
def test_partial_shows_people_with_real_addresses_and_escapes_metadata(
    client, owner, personal_mailbox
):
    message = f.MessageFactory(
        mailbox=personal_mailbox,
        subject="<img src=x onerror=alert(1)> Invoice\u202efdp.exe",
        from_name='"PayPal <service@paypal.com>"',
        from_address="evil@attacker.example",
        html_body='<p><img src="https://tracker.example/p.gif"></p>',
    )
    f.MessageAddressFactory(
        message=message, role="to", address="olivia@relay.test", name="<b>Olivia</b>"
    )
    folder = f.FolderFactory(mailbox=personal_mailbox, name="<svg onload=alert(1)>")
    f.LocationFactory(message=message, folder=folder)
    attach(message, b"%PDF-1.4", filename='"><script>alert(1)</script>.pdf')
    client.force_login(owner)
    response = client.get(reverse("inbox:message_read", args=[message.pk]), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<img src=x" not in html and "<svg onload" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\u202e" not in html  # docs/reliability.md X-14
    assert "&lt;evil@attacker.example&gt;" in html  # the real address beside the name
    assert "Show images" in html
    assert f'src="/inbox/messages/{message.pk}/body/"' in html
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in html
    assert "<html" not in html  # a partial for htmx
    page = client.get(reverse("inbox:message_read", args=[message.pk]))
    assert "<html" in page.content.decode() and "<title>&lt;img" in page.content.decode()
    consented = client.get(
        reverse("inbox:message_read", args=[message.pk]) + "?images=1", HTTP_HX_REQUEST="true"
    )
    assert "Show images" not in consented.content.decode()
    assert f"/inbox/messages/{message.pk}/body/?images=1" in consented.content.decode()


# --- Attachments (docs/reliability.md A-01..A-06) -------------------------------------------------

HOSTILE_NAMES = [
    ('quote".pdf', 'filename="quote_.pdf"'),
    ("semi;colon.pdf", 'filename="semi_colon.pdf"'),
    ("cr\rlf\n.pdf", 'filename="crlf.pdf"'),
    ("../../etc/passwd", 'filename="passwd"'),
    ("/etc/passwd", 'filename="passwd"'),
    ("..\\..\\boot.ini", 'filename="boot.ini"'),
    ("C:\\x", 'filename="x"'),
    ("invoice\u202efdp.exe", 'filename="invoicefdp.exe"'),
    ("CON", 'filename="_CON"'),
    ("", 'filename="attachment"'),
    ("...", 'filename="attachment"'),
    ("   ", 'filename="attachment"'),
    ("x" * 300 + ".pdf", 'filename="' + "x" * 147 + '.pdf"'),
    ("résumé 日本.pdf", 'filename="resume.pdf"'),
]


@pytest.mark.django_db
@pytest.mark.parametrize("name,expected", HOSTILE_NAMES)
def test_download_names_are_safe(client, owner, personal_mailbox, name, expected):
    message = f.MessageFactory(mailbox=personal_mailbox)
    attachment = attach(message, b"data", filename=name)
    client.force_login(owner)
    response = client.get(reverse("inbox:attachment_download", args=[message.pk, attachment.pk]))
    assert response.status_code == 200
    assert isinstance(response, FileResponse)  # streamed (docs/reliability.md)
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    assert expected in disposition
    assert not any(c in disposition for c in "\r\n\x00\u202e")
    assert disposition.count('"') == 2 and disposition.count(";") == 2
    star = disposition.split("filename*=UTF-8''", 1)[1]
    assert "/" not in unquote(star) and "\\" not in unquote(star) and ".." not in unquote(star)[:2]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["Content-Type"] == "application/octet-stream"
    assert body(response) == b"data"


def test_nul_in_a_name_never_reaches_the_header():
    """PostgreSQL cannot even store NUL (the parser drops it); the header builder drops it too."""
    disposition = content_disposition("attachment", "nul\x00byte.exe")
    assert disposition == "attachment; filename=\"nulbyte.exe\"; filename*=UTF-8''nulbyte.exe"


DANGEROUS = [
    ("page.html", "text/html", HTML),
    (
        "drawing.svg",
        "image/svg+xml",
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
    ),
    ("feed.xml", "text/xml", b"<?xml version='1.0'?><x/>"),
    ("page.xhtml", "application/xhtml+xml", HTML),
    ("fake.png", "image/png", HTML),  # a "PNG" whose bytes are HTML
]


@pytest.mark.django_db
@pytest.mark.parametrize("name,content_type,data", DANGEROUS)
def test_dangerous_types_never_inline(client, owner, personal_mailbox, name, content_type, data):
    """docs/reliability.md A-03: downloads are attachments; the inline view serves only raster
    images by their bytes, whatever the sender declared."""
    message = f.MessageFactory(mailbox=personal_mailbox)
    attachment = attach(message, data, filename=name, content_type=content_type, content_id="<x>")
    client.force_login(owner)
    download = client.get(reverse("inbox:attachment_download", args=[message.pk, attachment.pk]))
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["X-Content-Type-Options"] == "nosniff"
    inline = client.get(reverse("inbox:message_inline", args=[message.pk, attachment.pk]))
    assert inline.status_code == 404


@pytest.mark.django_db
def test_real_png_is_served_inline_with_the_sniffed_type(client, owner, personal_mailbox):
    message = f.MessageFactory(mailbox=personal_mailbox)
    attachment = attach(message, PNG, filename="a.png", content_type="text/html")
    client.force_login(owner)
    response = client.get(reverse("inbox:message_inline", args=[message.pk, attachment.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"
    assert body(response) == PNG


@pytest.mark.django_db
def test_same_name_twice_gives_two_urls(client, owner, personal_mailbox):
    """docs/reliability.md A-06."""
    message = f.MessageFactory(mailbox=personal_mailbox)
    first = attach(message, b"one", filename="report.pdf")
    second = attach(message, b"two", filename="report.pdf")
    client.force_login(owner)
    html = client.get(
        reverse("inbox:message_read", args=[message.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    urls = [reverse("inbox:attachment_download", args=[message.pk, a.pk]) for a in (first, second)]
    assert urls[0] != urls[1] and all(url in html for url in urls)
    assert [body(client.get(url)) for url in urls] == [b"one", b"two"]


@pytest.mark.django_db
def test_big_attachment_is_streamed(client, owner, personal_mailbox):
    """docs/reliability.md A-04: FileResponse reads the file in blocks; the whole body never sits in
    memory."""
    message = f.MessageFactory(mailbox=personal_mailbox)
    attachment = attach(message, b"\0" * (3 * 1024 * 1024), filename="big.bin")
    client.force_login(owner)
    response = client.get(reverse("inbox:attachment_download", args=[message.pk, attachment.pk]))
    chunks = list(response.streaming_content)
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 64 * 1024
    assert sum(len(c) for c in chunks) == 3 * 1024 * 1024


@pytest.mark.django_db
def test_raw_source_download(client, owner, personal_mailbox):
    message = with_raw(f.MessageFactory(mailbox=personal_mailbox), b"Subject: x\r\n\r\n<b>hi</b>")
    client.force_login(owner)
    response = client.get(reverse("inbox:message_raw", args=[message.pk]))
    assert body(response) == b"Subject: x\r\n\r\n<b>hi</b>"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="message-{message.pk}.eml"'
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    no_raw = f.MessageFactory(mailbox=personal_mailbox)
    assert client.get(reverse("inbox:message_raw", args=[no_raw.pk])).status_code == 404


# --- cid: images (docs/reliability.md X-12) -------------------------------------------------------


@pytest.mark.django_db
def test_cid_resolves_within_the_same_message_only(client, owner, personal_mailbox):
    other = f.MessageFactory(mailbox=personal_mailbox)
    attach(other, PNG, filename="theirs.png", content_id="<theirs@x>")
    message = f.MessageFactory(
        mailbox=personal_mailbox,
        html_body='<img src="cid:mine%40x"><img src="cid:theirs@x"><img src="cid:missing">',
    )
    mine = attach(message, PNG, filename="mine.png", content_id="<Mine@x>", is_inline=True)
    client.force_login(owner)
    html = client.get(reverse("inbox:message_body", args=[message.pk])).content.decode()
    assert html.count("<img") == 3
    assert html.count(f'src="/inbox/messages/{message.pk}/inline/{mine.pk}/?t=') == 1
    assert html.count("src=") == 1  # theirs@x and missing have no source at all


@pytest.mark.django_db
def test_inline_token_works_without_session_and_only_for_its_part(client, owner, personal_mailbox):
    """The sandboxed frame's requests carry no cookie: the token names reader, message and
    part; the permission gate still runs for that reader."""
    message = f.MessageFactory(mailbox=personal_mailbox)
    first = attach(message, PNG, filename="a.png", content_id="<a>")
    second = attach(message, PNG, filename="b.png", content_id="<b>")
    url = inline_image_url(user=owner, message_pk=message.pk, attachment_pk=first.pk)
    assert client.get(url).status_code == 200  # anonymous client, token only
    token = url.split("?", 1)[1]
    wrong_part = reverse("inbox:message_inline", args=[message.pk, second.pk]) + "?" + token
    assert client.get(wrong_part).status_code == 404
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert client.get(tampered).status_code == 404
    # The owner loses the mailbox: the token stops working at once (docs/reliability.md C-12).
    personal_mailbox.owner = f.UserFactory(username="new-owner")
    personal_mailbox.save()
    assert client.get(url).status_code == 404


# --- The image proxy (docs/reliability.md X-11, C-07) ---------------------------------------------


class _ImageServer:
    def __init__(self, payload: bytes, content_type: str, redirect: str = ""):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(
                    {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
                )
                if redirect:
                    self.send_response(302)
                    self.send_header("Location", redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_server():
    servers = []

    def make(payload=GIF, content_type="image/gif", redirect=""):
        servers.append(_ImageServer(payload, content_type, redirect))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.mark.django_db
def test_proxy_fetches_through_the_connector_without_cookies_or_referrer(
    client, owner, personal_mailbox, image_server, internet
):
    server = image_server()
    origin = internet.publish("images.sender.test", server.port)
    message = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    client.cookies["tracking"] = "reader-secret"
    url = image_proxy_url(user=owner, message_pk=message.pk, url=f"{origin}/pixel.gif?id=7")
    response = client.get(url, HTTP_REFERER="http://testserver/inbox/secret-page/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"
    assert body(response) == GIF
    [seen] = server.requests
    assert seen["path"] == "/pixel.gif?id=7"
    assert "cookie" not in seen and "referer" not in seen
    assert seen["user-agent"].startswith("RelayCRM-ImageProxy")


@pytest.mark.django_db
def test_proxy_refuses_internal_hosts_like_the_mail_connection(
    client, owner, personal_mailbox, image_server, settings
):
    settings.RELAY_ALLOWED_MAIL_HOSTS = []
    server = image_server()
    message = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    for target in (
        f"{server.url}/x.gif",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/x.gif",
        "http://2130706433/x.gif",
    ):
        url = image_proxy_url(user=owner, message_pk=message.pk, url=target)
        assert client.get(url).status_code == 404, target
    assert server.requests == []


@pytest.mark.django_db
def test_proxy_never_uses_the_mail_allow_list_and_fetches_from_ports_80_and_443_only(
    client, owner, personal_mailbox, image_server, internet, settings
):
    """docs/reliability.md C-27: the admin allowed loopback and the LAN for mail servers; any
    sender's image link to them, on any port, is still refused, and so is a public host on a
    port other than 80 and 443. Nothing connects anywhere."""
    settings.RELAY_ALLOWED_MAIL_HOSTS = ["127.0.0.1", "localhost", "10.0.0.0/8"]
    server = image_server()
    message = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    odd_port = internet.publish("admin-console.sender.test", server.port, port=8080)
    for target in (
        f"{server.url}/x.gif",
        f"http://localhost:{server.port}/x.gif",
        "http://127.0.0.1/x.gif",
        "https://10.1.2.3/x.gif",
        f"{odd_port}/x.gif",
        "https://images.sender.test:8443/x.gif",
    ):
        url = image_proxy_url(user=owner, message_pk=message.pk, url=target)
        assert client.get(url).status_code == 404, target
    assert server.requests == [] and internet.connections == []
    # The same server as a public host on port 80 is fetched: the refusals above were the
    # guard's, not an unreachable server.
    origin = internet.publish("images.sender.test", server.port)
    url = image_proxy_url(user=owner, message_pk=message.pk, url=f"{origin}/x.gif")
    assert client.get(url).status_code == 200
    assert [r["path"] for r in server.requests] == ["/x.gif"]


class _Trickler:
    """A web server misbehaving on purpose (so a stand-in): it answers a status line and
    headers one byte every 50 ms, for 20 s in all, and counts what it got out before the
    client hung up."""

    PAYLOAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nX-Slow: " + b"a" * 400

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.cut = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)  # the request
            for byte in self.PAYLOAD:
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    self.cut = True
                    return
                self.sent += 1
                time.sleep(0.05)


@pytest.mark.django_db
def test_proxy_gives_up_on_a_server_trickling_its_headers(
    client, owner, personal_mailbox, internet, monkeypatch
):
    """docs/reliability.md C-28: each byte arrives well within the socket timeout, so only
    one deadline over the whole fetch, headers included, lets the worker go. With the deadline
    at 1 s the server is cut off long before its 480 bytes are out."""
    from connector.transport import images

    monkeypatch.setattr(images, "TOTAL_SECONDS", 1.0)
    trickler = _Trickler()
    origin = internet.publish("slow.sender.test", trickler.port)
    message = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    url = image_proxy_url(user=owner, message_pk=message.pk, url=f"{origin}/pixel.gif")
    assert client.get(url).status_code == 404
    trickler.thread.join(timeout=60)
    trickler.listener.close()
    assert trickler.cut and trickler.sent < len(_Trickler.PAYLOAD) // 2


@pytest.mark.django_db
def test_proxy_serves_raster_images_only(client, owner, personal_mailbox, image_server, internet):
    message = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    for n, (payload, declared) in enumerate(
        (
            (HTML, "image/png"),
            (HTML, "text/html"),
            (b"<svg/>", "image/svg+xml"),
        )
    ):
        server = image_server(payload, declared)
        origin = internet.publish(f"images{n}.sender.test", server.port)
        url = image_proxy_url(user=owner, message_pk=message.pk, url=f"{origin}/i")
        assert client.get(url).status_code == 404
        assert len(server.requests) == 1  # fetched, then refused for what it is


@pytest.mark.django_db
def test_proxy_needs_a_signed_url_for_this_message(client, owner, personal_mailbox, monkeypatch):
    fetched = []
    monkeypatch.setattr(ports.mail(), "fetch_remote_image", lambda url: fetched.append(url))
    message = f.MessageFactory(mailbox=personal_mailbox)
    other = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    base = reverse("inbox:image_proxy", args=[message.pk])
    assert client.get(base + "?t=forged").status_code == 404
    assert client.get(base + "?url=http://example.com/x.png").status_code == 404
    for_other = image_proxy_url(user=owner, message_pk=other.pk, url="http://example.com/x.png")
    assert client.get(base + "?" + for_other.split("?", 1)[1]).status_code == 404
    # A reader who may not read the message cannot use a token minted for someone else.
    outsider_token = image_proxy_url(
        user=f.UserFactory(username="nosy"), message_pk=message.pk, url="http://example.com/x"
    )
    client.logout()
    assert client.get(outsider_token).status_code == 404
    assert fetched == []


@pytest.mark.django_db
def test_proxy_vets_every_redirect_target(client, owner, personal_mailbox, image_server, internet):
    """An image host that redirects to the metadata address is refused like a direct link
    would be (docs/reliability.md C-07): no connection is even attempted to the redirect
    target."""
    server = image_server(redirect="http://169.254.169.254/latest/meta-data/")
    origin = internet.publish("hop.sender.test", server.port)
    message = f.MessageFactory(mailbox=personal_mailbox)
    client.force_login(owner)
    url = image_proxy_url(user=owner, message_pk=message.pk, url=f"{origin}/start.gif")
    assert client.get(url).status_code == 404
    assert [r["path"] for r in server.requests] == ["/start.gif"]
    assert len(internet.connections) == 1  # the first host only
    # A redirect to another public host is followed.
    final = image_server()
    final_origin = internet.publish("final.sender.test", final.port)
    hop = image_server(redirect=f"{final_origin}/fine.gif")
    hop_origin = internet.publish("hop2.sender.test", hop.port)
    url = image_proxy_url(user=owner, message_pk=message.pk, url=f"{hop_origin}/start.gif")
    assert client.get(url).status_code == 200
    assert [r["path"] for r in final.requests] == ["/fine.gif"]


@pytest.mark.django_db
def test_compact_partial_for_a_conversation(client, owner, personal_mailbox):
    """?compact=1 (htmx only): the conversation shows subject and people itself, so the
    partial is the images notice, the frame and the attachments; consent keeps the layout."""
    message = f.MessageFactory(
        mailbox=personal_mailbox, subject="Quarterly", html_body='<img src="https://t.example/p">'
    )
    client.force_login(owner)
    url = reverse("inbox:message_read", args=[message.pk]) + "?compact=1"
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Quarterly" not in html and "<iframe" in html
    assert f"/inbox/messages/{message.pk}/?images=1&amp;compact=1" in html
    page = client.get(url).content.decode()  # opened directly: the whole page, header included
    assert "Quarterly" in page


@pytest.mark.django_db
def test_a_message_opened_in_its_conversation_shows_its_date_once(client, owner, personal_mailbox):
    """The expanded message's line shows sender and date; its body (in the conversation's page
    for the newest message, ?in=thread for an older one opened later) adds the recipients,
    folders and Source, not the date a second time."""
    message = f.MessageFactory(
        mailbox=personal_mailbox,
        subject="Quarterly figures",
        date=timezone.make_aware(dt.datetime(2026, 5, 2, 9, 1)),
    )
    client.force_login(owner)
    page = client.get(reverse("inbox:conversation", args=[message.pk])).content.decode()
    url = reverse("inbox:message_read", args=[message.pk]) + "?in=thread"
    assert f'hx-get="{url}"' not in page  # the newest message's body is in the page
    assert reverse("inbox:message_body", args=[message.pk]) in page
    body = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<iframe" in body and "Quarterly figures" not in body
    shown = "2 May 2026, 09:01"
    assert page.count(shown) == 1 and body.count(shown) == 0
    # Opened on its own, the message has its whole header, date included.
    assert client.get(url).content.decode().count(shown) == 1
