"""OAuth 2 for Google and Microsoft mailboxes: connect, refresh, and never die quietly
(docs/reliability.md C-10).

- Connect and Reconnect use the authorisation-code flow with PKCE (RFC 7636, S256) and offline
  access, through authlib. The provider endpoints come from settings.RELAY_OAUTH_PROVIDERS.
- The account's address comes from the id_token the token endpoint returns (OpenID Connect
  Core 3.1.3.7: received straight from the token endpoint over TLS, its signature need not be
  checked; audience and nonce are), or else from the provider's userinfo endpoint. Only a
  verified identity counts (docs/reliability.md C-20): Google's `email` with
  `email_verified`; for Microsoft never `email` (any tenant's administrator sets it to any
  address, and Microsoft does not verify it) but `preferred_username`, the account's sign-in
  name, whose domain the tenant had to prove it owns.
- An access token is refreshed before it expires, under a row lock on the mailbox
  (select_for_update): one refresh at a time per mailbox, whatever the number of workers, and
  the rotated refresh token is saved in the same transaction that read the old one, so the
  newest refresh token is never overwritten by an older one (single flight).
- invalid_grant (revoked, expired, password changed) puts the mailbox in "needs reconnect":
  syncing and sending stop until a person repeats the flow; no retry storm. A network error or
  a provider 5xx is only a temporary failure: nothing changes, the caller backs off.
- Tokens are never logged and never leave this module except into the encrypted fields.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connector.transport.errors import AuthenticationFailed, PermanentFailure, TemporaryFailure
from connector.transport.imap import open_session
from inbox.crypto import Secret
from inbox.models import Mailbox
from inbox.ports import AuthorizationRequest, OAuthGrant
from inbox.signals import mailbox_needs_reconnect

log = logging.getLogger(__name__)

OAUTH_TYPES = (Mailbox.ConnectionType.GOOGLE, Mailbox.ConnectionType.MICROSOFT)


def provider_config(provider: str) -> dict:
    providers = settings.RELAY_OAUTH_PROVIDERS
    config = providers.get(provider)
    if config is None:
        raise PermanentFailure(f"OAuth: unknown provider {provider!r}")
    if not config.get("client_id"):
        raise PermanentFailure(f"OAuth: no client id is configured for {provider}")
    return config


def _client(config: dict, *, redirect_uri: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=config["client_id"],
        client_secret=config.get("client_secret") or None,
        scope=config["scope"],
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post" if config.get("client_secret") else "none",
    )


def _timeout() -> float:
    return settings.RELAY_OAUTH_TIMEOUT


def authorization_request(provider: str, *, redirect_uri: str) -> AuthorizationRequest:
    """The provider's sign-in address with a fresh state, PKCE verifier and nonce."""
    config = provider_config(provider)
    verifier = generate_token(64)  # RFC 7636 4.1: 43 to 128 characters
    nonce = generate_token(32)
    url, state = _client(config, redirect_uri=redirect_uri).create_authorization_url(
        config["authorize_url"],
        state=generate_token(32),
        code_verifier=verifier,
        nonce=nonce,
        **config.get("authorize_params", {}),
    )
    return AuthorizationRequest(url=url, state=state, code_verifier=verifier, nonce=nonce)


def _token_call(action: str, call):
    """Run one token-endpoint request; map its failures to our errors by their meaning."""
    try:
        return call()
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            # RFC 6749 5.2: the grant or refresh token is invalid, expired or revoked.
            raise AuthenticationFailed(
                f"{action}: the provider refused the authorisation (invalid_grant)"
            ) from exc
        if exc.error in ("temporarily_unavailable", "server_error"):
            raise TemporaryFailure(f"{action}: {exc.error}") from exc
        raise PermanentFailure(f"{action}: {exc.error}") from exc
    except requests.RequestException as exc:
        # Network down, timeout, 5xx (authlib raises for status >= 500): try again later.
        raise TemporaryFailure(f"{action}: {type(exc).__name__}") from exc
    except ValueError as exc:  # not JSON
        raise TemporaryFailure(f"{action}: the provider's answer was not understood") from exc


def _expires_at(token: dict) -> dt.datetime | None:
    if token.get("expires_in") is not None:
        return timezone.now() + dt.timedelta(seconds=int(token["expires_in"]))
    if token.get("expires_at") is not None:
        return dt.datetime.fromtimestamp(int(token["expires_at"]), tz=dt.UTC)
    return None


# How long a refresh token lives when the provider does not say (docs/product.md §2.9): Microsoft
# identity platform, "Refresh token lifetime": 90 days, renewed by each use; Google, "Refresh
# token expiration": revoked once unused for six months. Each refresh renews them.
GRANT_LIFETIME = {
    Mailbox.ConnectionType.MICROSOFT: dt.timedelta(days=90),
    Mailbox.ConnectionType.GOOGLE: dt.timedelta(days=182),
}


def grant_expires_at(provider: str, token: dict) -> dt.datetime | None:
    """When the grant dies unless renewed: the refresh token's own expiry when the provider
    says it (`refresh_token_expires_in`: Google, for an app still in "testing", 7 days), else
    its documented lifetime from now."""
    told = token.get("refresh_token_expires_in")
    if told is not None:
        try:
            return timezone.now() + dt.timedelta(seconds=int(told))
        except (TypeError, ValueError):
            pass
    lifetime = GRANT_LIFETIME.get(provider)
    return timezone.now() + lifetime if lifetime else None


def _id_token_claims(id_token: str) -> dict:
    try:
        payload = id_token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError) as exc:
        raise PermanentFailure("OAuth: the id_token is not readable") from exc


def _account_email(provider: str, config: dict, token: dict, *, nonce: str) -> str:
    if token.get("id_token"):
        claims = _id_token_claims(token["id_token"])
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if config["client_id"] not in audiences:
            raise PermanentFailure("OAuth: the id_token was issued to another application")
        if nonce and claims.get("nonce") not in (None, nonce):
            raise PermanentFailure("OAuth: the id_token does not answer this sign-in")
        if provider == Mailbox.ConnectionType.MICROSOFT:
            return _microsoft_address(claims)
        email = claims.get("email") or claims.get("preferred_username") or ""
        if email and claims.get("email_verified") is not False:
            return email
    if provider == Mailbox.ConnectionType.MICROSOFT:
        # Its userinfo answers the same unverified `email`: nothing but the id_token counts.
        raise PermanentFailure("OAuth: Microsoft gave no id_token naming the account")
    if config.get("userinfo_url"):
        try:
            answer = requests.get(
                config["userinfo_url"],
                headers={"Authorization": f"Bearer {token['access_token']}"},
                timeout=_timeout(),
            )
            if answer.status_code >= 500:
                raise TemporaryFailure(f"OAuth userinfo: HTTP {answer.status_code}")
            if answer.status_code != 200:
                raise PermanentFailure(f"OAuth userinfo: HTTP {answer.status_code}")
            email = answer.json().get("email") or ""
        except requests.RequestException as exc:
            raise TemporaryFailure(f"OAuth userinfo: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise PermanentFailure("OAuth userinfo: the answer was not understood") from exc
        if email:
            return email
    raise PermanentFailure("OAuth: the provider did not say which address signed in")


def _microsoft_address(claims: dict) -> str:
    """The account's sign-in name (docs/reliability.md C-20). For a work or school account
    `preferred_username` is its user principal name in its home tenant, whose domain that
    tenant verified (a tenant cannot give its users a name at someone else's domain); for a
    personal account, the address Microsoft verified when it was made. The `email` claim is
    neither: it is whatever the tenant's administrator typed, and is never read here."""
    address = (claims.get("preferred_username") or "").strip()
    if "@" not in address or " " in address:
        raise PermanentFailure(
            "OAuth: Microsoft did not give the account's sign-in address (preferred_username)"
        )
    return address


def exchange_code(
    provider: str, *, code: str, code_verifier: str, redirect_uri: str, nonce: str = ""
) -> OAuthGrant:
    """The callback's code for tokens (with the PKCE verifier) and the signed-in address."""
    config = provider_config(provider)
    client = _client(config, redirect_uri=redirect_uri)
    token = _token_call(
        "OAuth sign-in",
        lambda: client.fetch_token(
            config["token_url"],
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
            timeout=_timeout(),
        ),
    )
    if not token.get("refresh_token"):
        raise PermanentFailure(
            "OAuth: the provider gave no refresh token (offline access was not granted)"
        )
    return OAuthGrant(
        email=_account_email(provider, config, token, nonce=nonce),
        access_token=token["access_token"],
        refresh_token=token["refresh_token"],
        expires_at=_expires_at(token),
        grant_expires_at=grant_expires_at(provider, token),
    )


def _still_fresh(mailbox: Mailbox, rejected: str | None) -> bool:
    if not mailbox.oauth_access_token_encrypted or mailbox.oauth_expires_at is None:
        return False
    margin = dt.timedelta(seconds=settings.RELAY_OAUTH_REFRESH_MARGIN)
    if mailbox.oauth_expires_at <= timezone.now() + margin:
        return False
    if rejected is not None:
        # The server refused this very token: fresh only if someone has replaced it since.
        return Secret(mailbox.oauth_access_token_encrypted).reveal() != rejected
    return True


def ensure_access_token(mailbox_id: int, *, rejected: str | None = None) -> str:
    """A usable access token for the mailbox, refreshed first when it expires within
    RELAY_OAUTH_REFRESH_MARGIN (or when the server just refused `rejected`).

    Single flight: the refresh runs holding the mailbox row lock, and the check is repeated
    once the lock is held, so a worker that waited finds the token its neighbour just got and
    does not spend the (rotated, now invalid) refresh token a second time."""
    mailbox = Mailbox.objects.get(pk=mailbox_id)
    if _still_fresh(mailbox, rejected):
        return Secret(mailbox.oauth_access_token_encrypted).reveal()
    refused: AuthenticationFailed | None = None
    with transaction.atomic():
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox_id)
        if _still_fresh(mailbox, rejected):
            return Secret(mailbox.oauth_access_token_encrypted).reveal()
        if mailbox.state == Mailbox.State.NEEDS_RECONNECT:
            raise AuthenticationFailed("OAuth: the mailbox needs to be reconnected")
        if not mailbox.oauth_refresh_token_encrypted:
            refused = AuthenticationFailed("OAuth: no refresh token is stored")
        else:
            config = provider_config(mailbox.connection_type)
            refresh_token = Secret(mailbox.oauth_refresh_token_encrypted).reveal()
            client = _client(config)
            try:
                token = _token_call(
                    "OAuth refresh",
                    lambda: client.refresh_token(
                        config["token_url"], refresh_token=refresh_token, timeout=_timeout()
                    ),
                )
            except AuthenticationFailed as exc:
                refused = exc
            else:
                # Saved before anything uses the new access token; a provider that rotates
                # refresh tokens has just invalidated the old one (docs/reliability.md C-10).
                mailbox.set_oauth_tokens(
                    access_token=token["access_token"],
                    refresh_token=token.get("refresh_token"),
                    expires_at=_expires_at(token),
                )
                # Each use renews the grant (docs/product.md §2.9): its expiry moves on.
                mailbox.oauth_grant_expires_at = grant_expires_at(mailbox.connection_type, token)
                mailbox.save(
                    update_fields=[
                        "oauth_access_token_encrypted",
                        "oauth_refresh_token_encrypted",
                        "oauth_expires_at",
                        "oauth_grant_expires_at",
                        "updated_at",
                    ]
                )
                log.info("oauth mailbox=%s access token refreshed", mailbox_id)
                return token["access_token"]
        # The grant is gone: stop here until a person reconnects (committed with the lock).
        Mailbox.objects.filter(pk=mailbox_id).update(
            state=Mailbox.State.NEEDS_RECONNECT,
            last_error=(
                f"{mailbox.get_connection_type_display()} no longer accepts this mailbox's "
                "authorisation (revoked or expired). Reconnect it."
            ),
            next_sync_at=None,
            refused_by="",  # the grant covers both ways
        )
        mailbox_needs_reconnect.send(
            sender=Mailbox, mailbox_id=mailbox_id, reason="its sign-in was revoked or expired"
        )
    log.warning("oauth mailbox=%s needs reconnect: %s", mailbox_id, refused)
    raise refused


def connect_imap(mailbox: Mailbox):
    """The sync's and the sender's IMAP connect: a fresh token for OAuth mailboxes (and one
    more refresh if the server refuses a token we believed valid), a plain login otherwise."""
    timeout = settings.RELAY_IMAP_TIMEOUT
    if mailbox.connection_type not in OAUTH_TYPES:
        return open_session(mailbox, timeout=timeout)
    token = ensure_access_token(mailbox.pk)
    try:
        return open_session(Mailbox.objects.get(pk=mailbox.pk), timeout=timeout)
    except AuthenticationFailed:
        # Revoked early, or the clock is off: refresh once; a second refusal stands.
        ensure_access_token(mailbox.pk, rejected=token)
        return open_session(Mailbox.objects.get(pk=mailbox.pk), timeout=timeout)


__all__ = [
    "AuthorizationRequest",
    "OAuthGrant",
    "authorization_request",
    "connect_imap",
    "ensure_access_token",
    "exchange_code",
]
