"""Connect with Google / Microsoft, and Reconnect: the two ends of the OAuth 2 authorisation-
code flow (docs/product.md §2.3). The pages around them (the connect wizard, the Reconnect button)
come with the mailbox settings pages.

- start: remembers a fresh state, PKCE verifier and nonce in the session (several sign-ins
  may be under way in several tabs: one entry per state) and sends the browser to the
  provider;
- callback: checks the state (CSRF, RFC 6749 10.12), has the connector exchange the code
  (inbox may not talk to the network itself: inbox/ports.py), then saves the tokens through
  inbox.services.mailboxes.mailbox_oauth_connected, which refuses a reconnect as another
  account.
The protocol details live in connector/transport/oauth.py.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from crm.debug import sensitive_get_parameters
from inbox import ports
from inbox.models import Mailbox
from inbox.permissions import can_manage_mailbox
from inbox.services.mailboxes import clean_shared_address, mailbox_oauth_connected

SESSION_KEY = "relay_oauth_flows"
FLOW_TTL = 15 * 60  # seconds a sign-in may take before its state is forgotten
MAX_FLOWS = 5
PROVIDERS = (Mailbox.ConnectionType.GOOGLE, Mailbox.ConnectionType.MICROSOFT)


def _done_url(mailbox: Mailbox | None) -> str:
    if mailbox is not None:
        try:
            return mailbox.get_absolute_url()
        except NoReverseMatch:  # the mailbox pages come with the settings pages issue
            return "/"
    return "/"


def _error(request, text: str, mailbox: Mailbox | None = None):
    messages.error(request, text)
    return redirect(_done_url(mailbox))


@require_POST
def oauth_start(request, provider: str):
    """POST (a button, so no link can start a sign-in behind the user's back), with an
    optional `mailbox` to reconnect."""
    if provider not in PROVIDERS:
        raise Http404("No such provider.")
    mailbox = None
    if request.POST.get("mailbox"):
        pk = request.POST["mailbox"]
        mailbox = Mailbox.objects.filter(pk=int(pk)).first() if pk.isdigit() else None
        # One 404 for "missing" and "not yours" (inbox/permissions.py).
        if mailbox is None or not can_manage_mailbox(request.user, mailbox):
            raise Http404("No such mailbox.")
        if mailbox.connection_type != provider:
            return _error(request, "This mailbox does not connect with that provider.", mailbox)
    shared = ""
    if mailbox is None and "shared_address" in request.POST:
        # An admin connects a shared mailbox (docs/product.md §2.9); anyone else gets the 404 of
        # a page that is not there for them.
        if not request.user.is_superuser:
            raise Http404("No such page.")
        try:
            shared = clean_shared_address(request.POST["shared_address"])
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect(reverse("inbox:mailbox_connect") + "?kind=shared")
    try:
        request_ = ports.mail().oauth_authorization(
            provider,
            redirect_uri=request.build_absolute_uri(reverse("inbox:oauth_callback")),
        )
    except ValidationError as exc:
        return _error(request, " ".join(exc.messages), mailbox)
    now = int(time.time())
    flows = {
        state: flow
        for state, flow in request.session.get(SESSION_KEY, {}).items()
        if now - flow["started"] < FLOW_TTL
    }
    # Keep the newest few: an abandoned sign-in must not grow the session for ever.
    while len(flows) >= MAX_FLOWS:
        flows.pop(min(flows, key=lambda s: flows[s]["started"]))
    flows[request_.state] = {
        "provider": provider,
        "verifier": request_.code_verifier,
        "nonce": request_.nonce,
        "mailbox": mailbox.pk if mailbox else None,
        "shared": shared,
        "started": now,
    }
    request.session[SESSION_KEY] = flows
    return redirect(request_.url)


# The code, and the tokens it is exchanged for (held by every frame below: the grant, the
# service's arguments), never reach an error report (docs/reliability.md C-23).
@sensitive_get_parameters("code")
@sensitive_variables()
@require_GET
def oauth_callback(request):
    """Where the provider sends the browser back, with `code` and `state` (or `error`)."""
    state = request.GET.get("state", "")
    flows = request.session.get(SESSION_KEY, {})
    flow = flows.pop(state, None) if state else None
    request.session[SESSION_KEY] = flows
    if flow is None or time.time() - flow["started"] > FLOW_TTL:
        # Not a sign-in this browser started (or an old one): never exchange its code.
        return HttpResponseBadRequest("This sign-in was not started here, or took too long.")
    mailbox = Mailbox.objects.filter(pk=flow["mailbox"]).first() if flow["mailbox"] else None
    if flow["mailbox"] and (mailbox is None or not can_manage_mailbox(request.user, mailbox)):
        raise Http404("No such mailbox.")
    if request.GET.get("error") or not request.GET.get("code"):
        return _error(
            request, "The sign-in was cancelled or refused; nothing was changed.", mailbox
        )
    try:
        grant = ports.mail().oauth_exchange(
            flow["provider"],
            code=request.GET["code"],
            code_verifier=flow["verifier"],
            redirect_uri=request.build_absolute_uri(reverse("inbox:oauth_callback")),
            nonce=flow["nonce"],
        )
        mailbox = mailbox_oauth_connected(
            user=request.user,
            provider=flow["provider"],
            email=grant.email,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at,
            grant_expires_at=grant.grant_expires_at,
            mailbox=mailbox,
            shared_address=flow.get("shared", ""),
        )
    except ValidationError as exc:
        if flow.get("shared") and flow["mailbox"] is None:
            messages.error(request, " ".join(exc.messages))
            return redirect(reverse("inbox:mailbox_connect") + "?kind=shared")
        return _error(request, " ".join(exc.messages), mailbox)
    except PermissionDenied as exc:
        raise Http404("No such mailbox.") from exc
    messages.success(request, f"{mailbox.email_address} is connected.")
    return redirect(_done_url(mailbox))
