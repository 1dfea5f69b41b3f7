"""Reading one message: the header partial, the sandboxed body, attachments, inline images,
the remote-image proxy and the raw source (docs/product.md §7.3).

Every view starts at the one permission gate, ``permissions.get_message_or_404``: someone
who may not read the message gets the same 404 as for a message that does not exist
(docs/reliability.md C-11, A-05 OWASP IDOR).

Two views are fetched by the sandboxed frame itself (inline ``cid:`` images and proxied
remote images). A frame sandboxed without ``allow-same-origin`` has an opaque origin, so the
browser treats its requests as cross-site and does not send our SameSite=Lax session cookie.
Those URLs therefore carry a short-lived signed token naming the reader, the message and
the part or remote URL; the view still runs the permission gate for that reader, so a
revoked grant takes effect at once (C-12), and a token for one message opens nothing in
another (X-12).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from inbox import ports, rawsource
from inbox.models import Attachment, Message, MessageAddress
from inbox.permissions import get_message_or_404
from inbox.ports import RemoteImageUnavailable
from inbox.rendering import (
    RenderedBody,
    ascii_filename,
    clean_display,
    clean_filename,
    frame_document,
    normalise_content_id,
    render_html_body,
    render_text_body,
    sniff_raster_image,
)

INLINE_SALT = "inbox.reading.inline-image"
PROXY_SALT = "inbox.reading.image-proxy"
# Long enough for a reader who leaves the message open all day, short enough that a leaked
# frame URL does not stay useful (and the gate re-checks the grant anyway).
TOKEN_MAX_AGE = 12 * 3600
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
# The frame's height, worked out here from the sanitised body: the frame runs no script and has
# an opaque origin, so neither it nor the page can measure it (docs/product.md §7.3, §7.12). A
# body longer than the estimate scrolls inside the frame; a short one no longer sits in 560px.
FRAME_MIN_HEIGHT = 96
FRAME_MAX_HEIGHT = 2400
_FRAME_LINE = 21  # FRAME_STYLE: 14px text, line-height 1.5
_FRAME_CHARS_PER_LINE = 72
_BLOCK_TAG = re.compile(r"<(?:br|p|div|tr|li|h[1-6]|blockquote|hr|table)\b", re.IGNORECASE)
_IMG_TAG = re.compile(r"<img\b", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")
STREAM_CHUNK = 64 * 1024


# --- Tokens for the frame's own requests ------------------------------------------------------


def _sign(salt: str, **payload) -> str:
    return signing.dumps(payload, salt=salt, compress=True)


def _token_payload(request, salt: str) -> dict | None:
    token = request.GET.get("t", "")
    if not token:
        return None
    try:
        payload = signing.loads(token, salt=salt, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    return payload if isinstance(payload, dict) else None


def _reader(request, payload: dict | None, **expected):
    """The user a frame request acts for: the token's user when the token was made for
    exactly this message and part, else the session's user (anonymous outside a session)."""
    if payload is not None and all(payload.get(k) == v for k, v in expected.items()):
        user = get_user_model().objects.filter(pk=payload.get("u"), is_active=True).first()
        if user is not None:
            return user
    return request.user if request.user.is_authenticated else AnonymousUser()


def _message_prefix(message_pk: int) -> str:
    # "/inbox/messages/<pk>/": every URL the frame may load starts here (reading_urls).
    return reverse("inbox:message_body", args=[message_pk]).removesuffix("body/")


def inline_image_url(*, user, message_pk: int, attachment_pk: int) -> str:
    token = _sign(INLINE_SALT, u=user.pk, m=message_pk, a=attachment_pk)
    return reverse("inbox:message_inline", args=[message_pk, attachment_pk]) + f"?t={token}"


def image_proxy_url(*, user, message_pk: int, url: str) -> str:
    # HMAC-signed (django.core.signing): the proxy only fetches URLs our renderer put in a
    # message this reader may read, so it is not an open proxy (docs/reliability.md X-11, camo).
    token = _sign(PROXY_SALT, u=user.pk, m=message_pk, url=url)
    return reverse("inbox:image_proxy", args=[message_pk]) + f"?t={quote(token, safe='')}"


# --- Response hardening -----------------------------------------------------------------------


def _lock_down(response):
    # docs/reliability.md A-03: nothing we serve from mail may be sniffed into HTML or run as a
    # document, even if opened directly in a tab (CSP sandbox: opaque origin, no scripts).
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266 §4.3 with both forms: an ASCII ``filename=`` fallback and the UTF-8
    ``filename*=``, both built from the cleaned name, so no quote, semicolon, CR or LF from the
    sender reaches the header (docs/reliability.md A-02, CVE-2022-36359)."""
    cleaned = clean_filename(filename)
    return (
        f'{kind}; filename="{ascii_filename(filename)}"; '
        f"filename*=UTF-8''{quote(cleaned, safe='')}"
    )


def _open_blob(attachment: Attachment):
    try:
        return default_storage.open(attachment.blob.file, "rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404("No such attachment.") from exc


def _get_attachment(message: Message, attachment_pk: int) -> Attachment:
    # Looked up among THIS message's attachments only: another message's id is a 404
    # (docs/reliability.md A-05).
    try:
        return message.attachments.select_related("blob").get(pk=attachment_pk)
    except Attachment.DoesNotExist as exc:
        raise Http404("No such attachment.") from exc


# --- The body ---------------------------------------------------------------------------------


def render_body(*, user, message: Message, images: bool) -> RenderedBody:
    """The message body as sanitised HTML with this reader's URLs for its images."""
    if not message.html_body:
        return RenderedBody(
            html=render_text_body(message.text_body), remote_images=0, images_blocked=False
        )
    cid_urls = {}
    for attachment in message.attachments.all():
        key = normalise_content_id(attachment.content_id)
        if key and key not in cid_urls:
            cid_urls[key] = inline_image_url(
                user=user, message_pk=message.pk, attachment_pk=attachment.pk
            )
    prefix = _message_prefix(message.pk)
    return render_html_body(
        message.html_body,
        cid_urls=cid_urls,
        proxy_url=(
            (lambda url: image_proxy_url(user=user, message_pk=message.pk, url=url))
            if images
            else None
        ),
        own_prefixes=(prefix + "inline/", prefix + "image/"),
    )


def frame_height(html: str) -> int:
    """Pixels the frame needs for `html` (a body from render_html_body/render_text_body) at
    the reading pane's width: its lines of text, its blocks and its images."""
    text = _ANY_TAG.sub("", html)
    lines = sum(1 + len(line) // _FRAME_CHARS_PER_LINE for line in text.splitlines())
    lines += len(_BLOCK_TAG.findall(html)) // 2
    height = 24 + _FRAME_LINE * lines + 160 * len(_IMG_TAG.findall(html))
    return max(FRAME_MIN_HEIGHT, min(FRAME_MAX_HEIGHT, height))


def frame_policy(request, *, message_pk: int, images: bool) -> str:
    """The frame's own CSP: stops scripts, forms, base tags, fonts, CSS imports and every
    remote fetch even if the sanitiser missed something (docs/product.md §7.3: either layer alone).
    Images only from this message's inline-part path, plus its proxy path after consent
    (docs/reliability.md X-11, X-12)."""
    origin = f"{request.scheme}://{request.get_host()}"
    prefix = origin + _message_prefix(message_pk)
    img = [prefix + "inline/"] + ([prefix + "image/"] if images else [])
    return "; ".join(
        [
            "default-src 'none'",
            "img-src " + " ".join(img),
            # Our own <style> and the sanitised style attributes; url(), @import and
            # @font-face are still refused by img-src/default-src (docs/reliability.md X-06).
            "style-src 'unsafe-inline'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
            "sandbox " + FRAME_SANDBOX,
        ]
    )


@require_GET
@xframe_options_sameorigin
def message_body(request, pk: int):
    """The document inside ``<iframe sandbox>``: the sanitised body, never the app's chrome.
    ``?images=1`` is the reader's consent to remote images for this message
    (docs/reliability.md X-11)."""
    message = get_message_or_404(request.user, pk)
    images = request.GET.get("images") == "1"
    rendered = render_body(user=request.user, message=message, images=images)
    response = HttpResponse(frame_document(rendered.html), content_type="text/html; charset=utf-8")
    # Set here, so CSP middleware leaves it alone (it never overwrites a view's header).
    response.headers["Content-Security-Policy"] = frame_policy(
        request, message_pk=message.pk, images=images
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- The message partial ----------------------------------------------------------------------


def _person(name: str, address: str) -> dict:
    # docs/reliability.md X-14: the display name is shown, but always beside the real address, so
    # '"PayPal <service@paypal.com>" <evil@x>' cannot pass for PayPal.
    return {"name": clean_display(name, limit=200), "address": clean_display(address, limit=320)}


def message_context(
    request, message: Message, *, images: bool, compact: bool = False, in_thread: bool = False
) -> dict:
    rendered = render_body(user=request.user, message=message, images=images)
    recipients: dict[str, list[dict]] = {"to": [], "cc": []}
    for row in message.addresses.filter(
        role__in=[MessageAddress.Role.TO, MessageAddress.Role.CC]
    ).order_by("role", "position"):
        recipients[row.role].append(_person(row.name, row.address))
    attachments = [
        {
            "name": clean_filename(a.filename),
            "content_type": clean_display(a.content_type, limit=100),
            "size": a.blob.size,
            "is_inline": a.is_inline,
            "url": reverse("inbox:attachment_download", args=[message.pk, a.pk]),
        }
        for a in message.attachments.select_related("blob")
    ]
    folders = sorted(
        {
            clean_display(name, limit=200)
            for name in message.locations.values_list("folder__name", flat=True)
        }
    )
    read_url = reverse("inbox:message_read", args=[message.pk])
    body_url = reverse("inbox:message_body", args=[message.pk])
    return {
        "message": message,
        "subject": clean_display(message.subject, limit=1000),
        "sender": _person(message.from_name, message.from_address),
        "to": recipients["to"],
        "cc": recipients["cc"],
        "folders": folders,
        "attachments": attachments,
        "images": images,
        "images_blocked": rendered.images_blocked,
        "compact": compact,
        "in_thread": in_thread,
        # The consent link keeps the caller's layout (compact, or inside a conversation).
        "show_images_url": read_url
        + "?images=1"
        + ("&compact=1" if compact else "")
        + ("&in=thread" if in_thread else ""),
        "body_url": body_url + ("?images=1" if images else ""),
        "raw_url": reverse("inbox:message_raw", args=[message.pk]) if message.raw_file else "",
        "frame_sandbox": FRAME_SANDBOX,
        "frame_height": frame_height(rendered.html),
    }


@require_GET
def message_read(request, pk: int):
    """One message: to htmx the partial ``inbox/_message.html``; opened directly, a page.
    ``?compact=1`` leaves out the subject and people (a conversation view shows them already):
    then the partial is the images notice, the sandboxed body and the attachments.
    ``?in=thread`` is a message opened in a conversation, whose line shows the sender and the
    date already: the partial leaves out the subject, the sender and the date (each once on
    the screen), and keeps the recipients, folders and Source."""
    message = get_message_or_404(request.user, pk)
    context = message_context(
        request,
        message,
        images=request.GET.get("images") == "1",
        compact=request.GET.get("compact") == "1" and bool(request.htmx),
        in_thread=request.GET.get("in") == "thread" and bool(request.htmx),
    )
    template = "inbox/_message.html" if request.htmx else "inbox/message_page.html"
    return render(request, template, context)


# --- Attachments, inline images, proxy, raw source -------------------------------------------


@require_GET
def attachment_download(request, pk: int, attachment_pk: int):
    """Always a download (docs/reliability.md A-03): octet-stream, ``attachment``, nosniff, CSP
    sandbox; streamed from storage in blocks by FileResponse (A-04); the URL names the attachment by
    id, so two parts with the same file name have distinct URLs (A-06)."""
    message = get_message_or_404(request.user, pk)
    attachment = _get_attachment(message, attachment_pk)
    response = FileResponse(_open_blob(attachment), content_type="application/octet-stream")
    response.headers["Content-Disposition"] = content_disposition("attachment", attachment.filename)
    return _lock_down(response)


@login_not_required
@require_GET
def message_inline(request, pk: int, attachment_pk: int):
    """A part of this message shown as an image (``cid:`` references, previews): only a PNG,
    JPEG, GIF or WebP by its magic bytes, with that type, never the sender's
    (docs/reliability.md A-03, X-12)."""
    user = _reader(request, _token_payload(request, INLINE_SALT), m=pk, a=attachment_pk)
    message = get_message_or_404(user, pk)
    attachment = _get_attachment(message, attachment_pk)
    handle = _open_blob(attachment)
    content_type = sniff_raster_image(handle.read(16))
    if content_type is None:
        handle.close()
        raise Http404("Not an image.")
    handle.seek(0)
    response = FileResponse(handle, content_type=content_type)
    response.headers["Content-Disposition"] = content_disposition("inline", attachment.filename)
    return _lock_down(response)


@login_not_required
@require_GET
def image_proxy(request, pk: int):
    """A remote image fetched by the server for a reader who consented (docs/reliability.md X-11):
    the sender sees the CRM's address, not the reader's; the fetch applies the mail connection's
    SSRF checks (connector/transport/images.py, through inbox/ports.py); only raster images by magic
    bytes come back."""
    payload = _token_payload(request, PROXY_SALT)
    if payload is None or payload.get("m") != pk:
        raise Http404("No such image.")
    message = get_message_or_404(_reader(request, payload, m=pk), pk)
    try:
        image = ports.mail().fetch_remote_image(str(payload.get("url", "")))
    except RemoteImageUnavailable as exc:
        raise Http404("Image unavailable.") from exc
    content_type = sniff_raster_image(image.content[:16])
    if content_type is None:
        raise Http404("Not an image.")
    response = HttpResponse(image.content, content_type=content_type)
    response.headers["Content-Disposition"] = content_disposition("inline", f"image-{message.pk}")
    return _lock_down(response)


@require_GET
def message_raw(request, pk: int):
    """The message as received (.eml), for people who may read it; a download, streamed
    while it is decompressed (docs/reliability.md A-04)."""
    message = get_message_or_404(request.user, pk)
    if not rawsource.exists(message.raw_file):
        raise Http404("No raw source kept.")
    response = StreamingHttpResponse(
        rawsource.iter_chunks(message.raw_file, STREAM_CHUNK), content_type="message/rfc822"
    )
    response.headers["Content-Disposition"] = content_disposition(
        "attachment", f"message-{message.pk}.eml"
    )
    return _lock_down(response)
