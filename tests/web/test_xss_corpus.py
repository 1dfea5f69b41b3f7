"""A corpus of hostile messages of our own (tests/fixtures/xss/corpus.json) rendered in real
headless Chromium, with a beacon HTTP server on loopback counting what gets through
(docs/reliability.md X-01..X-14, figures of §8.3).

Every payload that runs script calls ``{beacon}/x/<id>``; every payload that loads something
remote asks for ``{beacon}/r/<id>``. The figures:

- protected (the real message page: escaped metadata, sanitised body in the sandboxed frame
  with its own CSP; and the record's Email tab): 0 executions, 0 remote requests;
- each layer alone: only the sanitiser (its output on a page with neither sandbox nor CSP),
  only the sandboxed frame + CSP (the raw HTML served by the real body view): 0 and 0;
- the control: the same corpus rendered without protection must fire the beacon for at
  least 40 % of the payloads, or the harness could not see an execution at all;
- after the reader's consent, remote images reach the sender's host only through our proxy.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from playwright.sync_api import expect

from connector.transport.images import USER_AGENT as PROXY_AGENT
from inbox.rendering import RenderedBody, frame_document, render_html_body, render_text_body
from inbox.views import reading as reading_views
from tests import factories as f
from tests.inbox.test_reading_views import PNG
from tests.web.helpers import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CORPUS = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "xss" / "corpus.json").read_text(encoding="utf-8")
)["entries"]
BODY_FIELDS = ("html_body", "text_body")
BODIES = [e for e in CORPUS if e["field"] in BODY_FIELDS]
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Run in the last page opened before the beacon is read (instead of sleeping 1.5 s): two
# rendering updates and a task, where late payloads fire (autofocus, ontoggle, SVG animation
# begin, marquee start, a 0-second meta refresh, onerror of an image that failed after load).
DRAIN = """() => new Promise(done =>
    requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 0))))"""


class Beacon:
    """Loopback HTTP server: records every request (path, user agent) and serves the pages
    of the unprotected and sanitiser-only runs from its own origin."""

    def __init__(self):
        self.hits: list[tuple[str, str]] = []
        self.pages: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/page/"):
                    data = outer.pages.get(self.path[len("/page/") :], "").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                else:
                    outer.hits.append((self.path, self.headers.get("User-Agent", "")))
                    data = GIF
                    self.send_response(200)
                    self.send_header("Content-Type", "image/gif")
                    self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the browser drops connections when a payload navigates away: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        self.hits.clear()

    def by_id(self, *, from_browser: bool = True) -> dict[str, set[str]]:
        """{"x": ids that executed, "r": ids that fetched} from the browser (or the proxy)."""
        seen: dict[str, set[str]] = defaultdict(set)
        for path, agent in list(self.hits):
            parts = path.split("/")
            if len(parts) < 3 or parts[1] not in ("x", "r"):
                continue
            if (PROXY_AGENT in agent) != (not from_browser):
                continue
            seen[parts[1]].add(parts[2].split("?")[0].split("#")[0])
        return seen


@pytest.fixture(scope="module")
def beacon():
    server = Beacon()
    yield server
    server.server.shutdown()
    server.server.server_close()


def fill(entry: dict, base: str) -> str:
    ident = entry["id"]
    script = f"<script>fetch('{base}/x/{ident}')</script>"
    data_html = "data:text/html;base64," + base64.b64encode(script.encode()).decode()
    return (
        entry["payload"]
        .replace("{DATAHTML}", data_html)
        .replace("{JSNS}", f"fetch(`{base}/x/{ident}`)")
        .replace("{JS}", f"fetch('{base}/x/{ident}')")
        .replace("{R}", f"{base}/r/{ident}")
        .replace("{B}", base)
        .replace("{ID}", ident)
    )


def unprotected(entry: dict, payload: str) -> str:
    """What a careless app would produce: the payload pasted into the page as it came."""
    field = entry["field"]
    if field in ("subject", "from_name"):
        return f"<!doctype html><title>{payload}</title><h1>{payload}</h1>"
    if field == "attachment":
        return f'<!doctype html><a href="/download" title="{payload}">{payload}</a>'
    if field == "folder":
        return f"<!doctype html><span class=folder>{payload}</span>"
    return payload


class InFlight:
    """The requests of a browser context that have started and not yet ended (answered,
    refused by the CSP, or dropped when their page went away)."""

    def __init__(self, context):
        self.requests: set = set()
        context.on("request", lambda request: self.requests.add(request))
        context.on("requestfinished", lambda request: self.requests.discard(request))
        context.on("requestfailed", lambda request: self.requests.discard(request))

    def wait_until_none(self, page, timeout: float = 10.0) -> None:
        """Until every request has ended: each one that reached the beacon is recorded."""
        deadline = time.monotonic() + timeout
        while self.requests:
            assert time.monotonic() < deadline, f"still in flight: {self.requests}"
            page.wait_for_timeout(20)  # Playwright delivers the browser's events meanwhile


def open_all(page, urls: list[str], wait_until: str = "load") -> None:
    """Open each URL in a navigation of its own; then let the last page run what it queued
    (DRAIN) and wait until every request the pages made has ended, so that the beacon has
    recorded each one it will ever see."""
    in_flight = InFlight(page.context)
    for url in urls:
        try:
            page.goto(url, wait_until=wait_until, timeout=10_000)
        except Exception:
            # A payload that navigates away or never finishes loading still counted what it
            # did through the beacon; the next payload gets a fresh navigation.
            _blank(page)
    try:
        page.evaluate(DRAIN)
    except Exception:
        pass  # the last payload navigated its page away: nothing is left to run there
    in_flight.wait_until_none(page)  # the last page's own requests too, before it is left
    _blank(page)
    in_flight.wait_until_none(page)


def open_in_the_frame(page, page_url: str, body_urls: list[str]) -> set[str]:
    """Each body in turn in the real sandboxed frame of the message page at page_url: the page
    is opened once, then its frame is sent to each body URL and loads it (the frame keeps the
    page's sandbox attribute; each body comes with the body view's own CSP). A tenth of the
    work of opening the whole message page around each body. Returns the body URLs the frame
    was served."""
    in_flight = InFlight(page.context)
    served: set[str] = set()
    page.context.on(
        "response",
        lambda r: served.add(r.url) if r.url in body_urls and r.status == 200 else None,
    )
    page.goto(page_url)
    frame = page.locator("iframe.relay-message-frame")
    # The frame loads lazily, so its own first body can still be on its way after the page's
    # "load": a src set meanwhile raced with it, and a body went unserved. It starts from a
    # blank document instead, and every body is a navigation of its own.
    blank = """frame => new Promise(loaded => {
        frame.removeAttribute("loading");
        frame.addEventListener("load", loaded, {once: true});
        frame.src = "about:blank";
    })"""
    frame.evaluate(blank, timeout=10_000)
    for url in body_urls:
        try:
            frame.evaluate(
                """(frame, url) => new Promise(loaded => {
                    frame.addEventListener("load", loaded, {once: true});
                    frame.src = url;
                })""",
                url,
                timeout=10_000,
            )
        except Exception:
            # Only a payload that got out of the frame could have moved the page: the beacon
            # has it. The next body gets a fresh page.
            page.goto(page_url)
    page.evaluate(DRAIN)
    in_flight.wait_until_none(page)
    _blank(page)
    in_flight.wait_until_none(page)
    return served


def _blank(page) -> None:
    """Leave for about:blank; a payload that navigates at that moment interrupts the first try
    ("interrupted by another navigation"), so leave again once it has."""
    for attempt in range(3):
        try:
            page.goto("about:blank")
            return
        except Exception:
            # Interrupted by a navigation to about:blank itself (a payload leaving too): there.
            page.wait_for_load_state("load")
            if page.url == "about:blank":
                return
            if attempt == 2:
                raise


def make_messages(owner, mailbox, base: str, entries: list[dict]) -> dict[str, object]:
    messages = {}
    for entry in entries:
        payload = fill(entry, base)
        # The snippet too: the Email tab and lists show it (docs/reliability.md X-08).
        fields = {
            "subject": f"Corpus {entry['id']}",
            "text_body": "",
            "html_body": "",
            "snippet": payload[:300],
        }
        if entry["field"] in ("subject", "from_name", "html_body", "text_body"):
            fields[entry["field"]] = payload
        message = f.MessageFactory(mailbox=mailbox, from_address="x@sender.example", **fields)
        if entry["field"] == "attachment":
            f.AttachmentFactory(message=message, filename=payload)
        if entry["field"] == "folder":
            f.LocationFactory(
                message=message, folder=f.FolderFactory(mailbox=mailbox, name=payload)
            )
        messages[entry["id"]] = message
    return messages


def remote_requests(page, live_server) -> list[str]:
    """Every request that reached a server other than ours. (Playwright also reports the
    requests the frame's CSP refuses before they leave the browser: those end in
    "requestfailed", never "requestfinished".)"""
    seen: list[str] = []

    def record(request):
        url = request.url
        if not url.startswith((live_server.url, "data:", "about:", "blob:")):
            seen.append(url)

    page.on("requestfinished", record)
    return seen


def open_pages(page, base: str, messages: dict[str, object], page_url) -> None:
    """Every message of the corpus on the page ``page_url(message)`` (a message page, a
    conversation page): each payload in the page's own markup (subject, sender name,
    attachment, folder) on a page of its own; each body payload in that page's sandboxed frame,
    the page opened once and its frame sent to each body (open_in_the_frame). The rest of a
    body message's page holds nothing of the payload, so opening a whole page around each of
    the 137 bodies cost ~1 s of CPU apiece and tested nothing more."""
    by_field = {entry["id"]: entry["field"] for entry in CORPUS}
    markup = [m for ident, m in messages.items() if by_field[ident] not in BODY_FIELDS]
    bodies = [m for ident, m in messages.items() if by_field[ident] in BODY_FIELDS]
    open_all(page, [base + page_url(m) for m in markup])
    if bodies:
        urls = [f"{base}/inbox/messages/{m.pk}/body/" for m in bodies]
        served = open_in_the_frame(page, base + page_url(bodies[0]), urls)
        assert served == set(urls)  # the page's frame really loaded every one of them


# --- The corpus itself ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_corpus_covers_the_catalogue():
    assert len(CORPUS) >= 150  # docs/reliability.md §8.3: K >= 150
    assert len({e["id"] for e in CORPUS}) == len(CORPUS)
    fields = {e["field"] for e in CORPUS}
    assert fields == {"html_body", "text_body", "subject", "from_name", "attachment", "folder"}
    vectors = {e["vector"] for e in CORPUS}
    assert {"X-01", "X-02", "X-03", "X-05", "X-06", "X-07", "X-08", "X-11", "X-14"} <= vectors
    tracking = [e for e in CORPUS if "{R}" in e["payload"]]
    assert len(tracking) >= 20  # docs/reliability.md §8.3: T >= 20


# --- The control: without protection the harness sees executions ----------------------------


def test_unprotected_control_fires_the_beacon(page, beacon):
    beacon.reset()
    urls = []
    for entry in CORPUS:
        beacon.pages[entry["id"]] = unprotected(entry, fill(entry, beacon.url))
        urls.append(f"{beacon.url}/page/{entry['id']}")
    open_all(page, urls)
    seen = beacon.by_id()
    fired = seen["x"] | seen["r"]
    ratio = len(fired) / len(CORPUS)
    print(
        f"\nunprotected: {len(seen['x'])} executions, {len(seen['r'])} remote loads, "
        f"{len(fired)}/{len(CORPUS)} payloads fired ({ratio:.0%})"
    )
    assert ratio >= 0.40, "the harness cannot see executions: fix it before trusting a 0"
    assert len(seen["x"]) >= 20


# --- Each layer alone ---------------------------------------------------------------------


def test_sanitiser_alone_stops_every_payload(page, beacon):
    """The body through rendering.py only, on a page with no sandbox and no CSP."""
    beacon.reset()
    urls = []
    for entry in BODIES:
        payload = fill(entry, beacon.url)
        if entry["field"] == "html_body":
            html = render_html_body(
                payload, cid_urls={}, proxy_url=None, own_prefixes=("/inbox/messages/1/",)
            ).html
        else:
            html = render_text_body(payload)
        beacon.pages[entry["id"]] = frame_document(html)
        urls.append(f"{beacon.url}/page/{entry['id']}")
    open_all(page, urls)
    seen = beacon.by_id()
    print(f"\nsanitiser only: {len(seen['x'])} executions, {len(seen['r'])} remote loads")
    assert seen["x"] == set() and seen["r"] == set()


def test_sandboxed_frame_and_csp_alone_stop_every_payload(
    page, live_server, beacon, owner, personal_mailbox, monkeypatch
):
    """The raw, unsanitised HTML served by the real body view into the real sandboxed frame."""

    def raw_body(*, user, message, images):
        return RenderedBody(
            html=message.html_body or message.text_body, remote_images=0, images_blocked=False
        )

    monkeypatch.setattr(reading_views, "render_body", raw_body)
    messages = make_messages(owner, personal_mailbox, beacon.url, BODIES)
    sign_in(page, live_server, owner.get_username())
    elsewhere = remote_requests(page, live_server)
    beacon.reset()
    first = next(iter(messages.values()))
    bodies = [f"{live_server.url}/inbox/messages/{m.pk}/body/" for m in messages.values()]
    served = open_in_the_frame(page, f"{live_server.url}/inbox/messages/{first.pk}/", bodies)
    assert served == set(bodies)  # the frame really loaded every one of them
    seen = beacon.by_id()
    print(
        f"\nsandbox+CSP only: {len(seen['x'])} executions, {len(seen['r'])} remote loads, "
        f"{len(elsewhere)} requests off our origin"
    )
    assert seen["x"] == set() and seen["r"] == set()
    assert elsewhere == []


# --- Everything together -----------------------------------------------------------------------


def test_protected_message_view_and_email_tab(
    page, live_server, beacon, owner, personal_mailbox, settings, console_messages
):
    settings.RELAY_PAGE_SIZE = 500
    messages = make_messages(owner, personal_mailbox, beacon.url, CORPUS)
    contact = f.ContactFactory(first_name="Xss", last_name="Corpus")
    for message in messages.values():
        f.FilingFactory(message=message, contact=contact)
    sign_in(page, live_server, owner.get_username())
    elsewhere = remote_requests(page, live_server)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    beacon.reset()
    open_pages(page, live_server.url, messages, lambda m: f"/inbox/messages/{m.pk}/")

    # The record's Email tab lists every one of them (subjects, names, snippets).
    in_flight = InFlight(page.context)
    page.goto(f"{live_server.url}{contact.get_absolute_url()}")
    with page.expect_response(lambda r: "/inbox/records/contact/" in r.url) as tab:
        page.get_by_role("tab", name="Email").click()
    assert tab.value.status == 200
    expect(page.locator("#email-pane .relay-message").first).to_be_visible()
    page.evaluate(DRAIN)
    in_flight.wait_until_none(page)

    seen = beacon.by_id()
    print(
        f"\nprotected: {len(seen['x'])} executions, {len(seen['r'])} remote loads, "
        f"{len(elsewhere)} requests off our origin, {len(dialogs)} dialogs "
        f"over {len(CORPUS)} messages"
    )
    assert seen["x"] == set() and seen["r"] == set()
    assert elsewhere == [] and dialogs == []


def test_after_consent_remote_images_come_only_through_the_proxy(
    page, live_server, beacon, owner, personal_mailbox, internet
):
    # The beacon plays the sender's public web server: the proxy fetches from public hosts on
    # port 80 or 443 only (docs/reliability.md C-27), so it is published under a public name
    # (tests/servers/internet.py). The browser cannot resolve that name: any attempt of its
    # own to load from it is caught as a request, finished or not.
    origin = internet.publish("pixels.sender.test", beacon.server.server_port)
    pixels = [e for e in CORPUS if e["field"] == "html_body" and e["vector"] == "X-11"]
    messages = make_messages(owner, personal_mailbox, origin, pixels)
    sign_in(page, live_server, owner.get_username())
    elsewhere = remote_requests(page, live_server)
    attempts: list[str] = []
    page.on("request", lambda r: attempts.append(r.url) if "sender.test" in r.url else None)
    proxied_images: list[str] = []
    page.on(
        "response",
        lambda r: (
            proxied_images.append(r.url)
            if "/image/?t=" in r.url
            and r.status == 200
            and r.header_value("content-type") == "image/gif"
            else None
        ),
    )
    beacon.reset()
    # networkidle: each proxied image has answered before the next message is opened.
    open_all(
        page,
        [f"{live_server.url}/inbox/messages/{m.pk}/?images=1" for m in messages.values()],
        wait_until="networkidle",
    )
    direct = beacon.by_id(from_browser=True)
    via_proxy = beacon.by_id(from_browser=False)
    print(
        f"\nafter consent: {len(via_proxy['r'])} fetched via the proxy, "
        f"{len(direct['r'])} directly by the browser"
    )
    assert direct["x"] == set() and direct["r"] == set() and elsewhere == []
    assert attempts == []
    assert via_proxy["r"] and len(proxied_images) == len(via_proxy["r"])


def test_show_images_button_and_cid_image(
    page, live_server, owner, personal_mailbox, settings, tmp_path, output_path
):
    settings.MEDIA_ROOT = tmp_path
    message = f.MessageFactory(
        mailbox=personal_mailbox,
        subject="Logo inside",
        from_name='"PayPal <service@paypal.com>"',
        from_address="evil@attacker.example",
        html_body='<p>Logo: <img src="cid:logo@x" alt="logo"> and <img src="https://t.example/p">',
    )
    path = default_storage.save("blobs/test-logo.png", ContentFile(PNG))
    blob = f.AttachmentBlobFactory(file=path, size=len(PNG))
    f.AttachmentFactory(
        message=message, blob=blob, filename="logo.png", content_id="<logo@x>", is_inline=True
    )
    sign_in(page, live_server, owner.get_username())
    # Waits for the frame's cid image itself: the page's "load" can come before it when the
    # opened message is re-rendered as read and its frame replaced.
    with page.expect_response(lambda r: "/inline/" in r.url) as inline:
        page.goto(f"{live_server.url}/inbox/messages/{message.pk}/")
    # The frame's cid image loaded without the session cookie.
    assert inline.value.status == 200
    assert inline.value.header_value("content-type") == "image/png"
    expect(page.get_by_role("heading", name="Logo inside")).to_be_visible()
    expect(page.get_by_role("link", name="Show images")).to_be_visible()
    shot(page, output_path, "message-images-hidden.png")
    page.get_by_role("link", name="Show images").click()
    expect(page.locator("iframe.relay-message-frame")).to_have_attribute(
        "src", f"/inbox/messages/{message.pk}/body/?images=1"
    )
    expect(page.get_by_role("link", name="Show images")).to_have_count(0)
    shot(page, output_path, "message-images-shown.png")
