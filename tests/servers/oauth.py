"""A small OAuth 2 / OpenID Connect server for the tests, and a Dovecot that checks XOAUTH2
bearer tokens against it.

What is faked, and why: Google's and Microsoft's endpoints cannot be reached from the test
machines (no network, no test tenants), so this server plays both. It speaks the parts of the
protocols the CRM relies on, as the providers document them:
- ``/authorize``: the authorisation-code request (RFC 6749 4.1) with PKCE (RFC 7636, S256 only)
  and a nonce; the "user" who signs in is ``sign_in_as`` (a test sets it) and consent is
  given at once: the browser is redirected back with ``code`` and ``state``;
- ``/token``: ``authorization_code`` (checks client, redirect URI and the PKCE verifier;
  returns an access token, a refresh token and an id_token) and ``refresh_token`` (rotates
  the refresh token as Microsoft does: the old one is dead as soon as the new one is issued;
  a revoked grant or a dead refresh token gets ``invalid_grant``, RFC 6749 5.2);
- ``/userinfo``: the signed-in address for a bearer token;
- ``/introspect``: token introspection (RFC 7662), which Dovecot's ``oauth2`` passdb calls
  to validate the bearer token of an XOAUTH2 login, so IMAP logins with our tokens are checked
  by the REAL Dovecot against this server.
The id_token is a JWT signed with HS256 and a throwaway key; the CRM does not check its
signature (OpenID Connect Core 3.1.3.7: received straight from the token endpoint over TLS).

``dovecot_oauth`` starts a second Dovecot (the helpers of tests/servers/dovecot.py, one more
passdb): XOAUTH2/OAUTHBEARER logins go to the ``oauth2`` passdb, password logins to the usual
passwd-file.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from . import dovecot as dovecot_module
from .dovecot import Dovecot

CLIENT_ID = "relay-test-client"
CLIENT_SECRET = "relay-test-secret"
ID_TOKEN_KEY = b"throwaway-test-signing-key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Grant:
    """One user's consent: its current refresh token and access tokens."""

    email: str
    refresh_token: str
    revoked: bool = False


@dataclass
class FakeOAuthServer:
    host: str = "127.0.0.1"
    port: int = 0
    sign_in_as: str = "someone@relay.test"
    access_lifetime: int = 3600
    rotate: bool = True
    refresh_delay: float = 0.0  # seconds: widens the window of the rotation race
    failing: bool = False  # every endpoint answers 503
    # Claims of the next id_tokens to change (None removes one): a tenant's own settings, e.g.
    # the unverified "email" a Microsoft tenant administrator may set to any address.
    id_token_claims: dict = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)  # by refresh token (current only)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # email, expiry
    codes: dict[str, dict] = field(default_factory=dict)
    refresh_calls: int = 0  # every refresh request, good or bad
    refreshes: int = 0  # refreshes that issued new tokens
    rejected_refreshes: int = 0
    introspections: list[str] = field(default_factory=list)
    authorize_requests: list[dict] = field(default_factory=list)
    pkce_checked: int = 0
    # Exchange's FullAccess on a shared mailbox: a token of this user opens that mailbox, and
    # XOAUTH2 names the shared mailbox as the user (docs/product.md §2.9). Dovecot's
    # introspection cannot say which mailbox a login names, so the answer names the shared one.
    full_access: dict[str, str] = field(default_factory=dict)
    # Seconds left of a refresh token, as Google says for an app in "testing" (None: not said).
    refresh_token_expires_in: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _httpd: ThreadingHTTPServer | None = field(default=None, repr=False)

    # --- for tests -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def provider_settings(self, **overrides) -> dict:
        config = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": f"{self.base_url}/authorize",
            "token_url": f"{self.base_url}/token",
            "userinfo_url": f"{self.base_url}/userinfo",
            "scope": "openid email https://mail.google.com/",
            "authorize_params": {"access_type": "offline", "prompt": "consent"},
            "imap_host": "127.0.0.1",
            "imap_port": 993,
            "imap_security": "ssl",
            "smtp_host": "127.0.0.1",
            "smtp_port": 465,
            "smtp_security": "ssl",
            "saves_sent": True,
        }
        config.update(overrides)
        return config

    def issue(self, email: str, *, lifetime: int | None = None) -> tuple[str, str]:
        """A grant for `email` as if the user had consented: (access token, refresh token)."""
        with self.lock:
            refresh = f"rt-{secrets.token_urlsafe(16)}"
            self.grants[refresh] = Grant(email=email, refresh_token=refresh)
            access = self._new_access(email, lifetime)
        return access, refresh

    def current_refresh_token(self, email: str) -> str:
        """The refresh token of the user's newest grant (a new sign-in is a new grant)."""
        with self.lock:
            live = [g for g in self.grants.values() if g.email == email and not g.revoked]
        assert live, f"no live grant for {email}"
        return live[-1].refresh_token

    def revoke(self, email: str) -> None:
        """The user revoked the app (or changed the password): every token is dead."""
        with self.lock:
            for grant in self.grants.values():
                if grant.email == email:
                    grant.revoked = True
            for token, (owner, _) in list(self.access_tokens.items()):
                if owner == email:
                    del self.access_tokens[token]

    # --- internals -------------------------------------------------------------------------
    def _new_access(self, email: str, lifetime: int | None = None) -> str:
        token = f"at-{secrets.token_urlsafe(16)}"
        self.access_tokens[token] = (email, time.time() + (lifetime or self.access_lifetime))
        return token

    def _id_token(self, email: str, nonce: str | None, scope: str = "") -> str:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "iss": self.base_url,
            "aud": CLIENT_ID,
            "sub": hashlib.sha256(email.encode()).hexdigest()[:20],
            "email": email,
            "email_verified": True,
            "iat": int(time.time()),
            "exp": int(time.time()) + 3600,
        }
        if nonce:
            claims["nonce"] = nonce
        if "profile" in scope.split():
            # Microsoft's v2.0 endpoint: the sign-in name comes with the profile scope.
            claims["preferred_username"] = email
        for name, value in self.id_token_claims.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        payload = _b64url(json.dumps(claims).encode())
        signature = hmac.new(ID_TOKEN_KEY, f"{header}.{payload}".encode(), "sha256").digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def valid_access(self, token: str) -> str | None:
        with self.lock:
            owner = self.access_tokens.get(token)
        if owner is None or owner[1] < time.time():
            return None
        return owner[0]

    def start(self) -> FakeOAuthServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: dict | None = None, headers=()):
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _form(self) -> dict[str, str]:
                length = int(self.headers.get("Content-Length") or 0)
                fields = parse_qs(self.rfile.read(length).decode())
                return {k: v[0] for k, v in fields.items()}

            def do_GET(self):
                if server.failing:
                    return self._send(503, {"error": "temporarily_unavailable"})
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/authorize":
                    return self._authorize(query)
                if url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    email = server.valid_access(token)
                    if email is None:
                        return self._send(401, {"error": "invalid_token"})
                    return self._send(200, {"email": email, "email_verified": True})
                return self._send(404, {"error": "not_found"})

            def _authorize(self, query):
                with server.lock:
                    server.authorize_requests.append(query)
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    return self._send(400, {"error": "invalid_request"})
                if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                    return self._send(400, {"error": "invalid_request", "detail": "PKCE"})
                code = secrets.token_urlsafe(16)
                with server.lock:
                    server.codes[code] = {
                        "redirect_uri": query["redirect_uri"],
                        "challenge": query["code_challenge"],
                        "email": server.sign_in_as,
                        "nonce": query.get("nonce"),
                        "scope": query.get("scope", ""),
                    }
                back = urlencode({"code": code, "state": query.get("state", "")})
                self.send_response(302)
                self.send_header("Location", f"{query['redirect_uri']}?{back}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                if server.failing:
                    return self._send(503, {"error": "temporarily_unavailable"})
                url = urlsplit(self.path)
                form = self._form()
                if url.path == "/token":
                    return self._token(form)
                if url.path == "/introspect":
                    token = form.get("token", "")
                    with server.lock:
                        server.introspections.append(token)
                    email = server.valid_access(token)
                    if email is None:
                        return self._send(200, {"active": False})
                    email = server.full_access.get(email, email)
                    return self._send(200, {"active": True, "email": email, "scope": "mail"})
                return self._send(404, {"error": "not_found"})

            def _token(self, form):
                if form.get("client_id") != CLIENT_ID or form.get("client_secret") != (
                    CLIENT_SECRET
                ):
                    return self._send(401, {"error": "invalid_client"})
                if form.get("grant_type") == "authorization_code":
                    with server.lock:
                        code = server.codes.pop(form.get("code", ""), None)
                    if code is None or code["redirect_uri"] != form.get("redirect_uri"):
                        return self._send(400, {"error": "invalid_grant"})
                    verifier = form.get("code_verifier", "")
                    if _b64url(hashlib.sha256(verifier.encode()).digest()) != code["challenge"]:
                        return self._send(400, {"error": "invalid_grant", "detail": "PKCE"})
                    with server.lock:
                        server.pkce_checked += 1
                    access, refresh = server.issue(code["email"])
                    body = {
                        "access_token": access,
                        "refresh_token": refresh,
                        "token_type": "Bearer",
                        "expires_in": server.access_lifetime,
                        "id_token": server._id_token(code["email"], code["nonce"], code["scope"]),
                    }
                    if server.refresh_token_expires_in is not None:
                        body["refresh_token_expires_in"] = server.refresh_token_expires_in
                    return self._send(200, body)
                if form.get("grant_type") == "refresh_token":
                    return self._refresh(form.get("refresh_token", ""))
                return self._send(400, {"error": "unsupported_grant_type"})

            def _refresh(self, refresh: str):
                with server.lock:
                    server.refresh_calls += 1
                if server.refresh_delay:
                    time.sleep(server.refresh_delay)
                with server.lock:
                    grant = server.grants.get(refresh)
                    if grant is None or grant.revoked:
                        server.rejected_refreshes += 1
                        return self._send(
                            400, {"error": "invalid_grant", "error_description": "Token revoked"}
                        )
                    body = {
                        "access_token": server._new_access(grant.email),
                        "token_type": "Bearer",
                        "expires_in": server.access_lifetime,
                    }
                    if server.refresh_token_expires_in is not None:
                        body["refresh_token_expires_in"] = server.refresh_token_expires_in
                    if server.rotate:
                        # Dict order is issue order: the rotated grant moves to the end only
                        # if it is the newest one anyway, so re-insert where it was.
                        new = f"rt-{secrets.token_urlsafe(16)}"
                        server.grants = {
                            (new if key == refresh else key): value
                            for key, value in server.grants.items()
                        }
                        grant.refresh_token = new
                        body["refresh_token"] = grant.refresh_token
                    server.refreshes += 1
                return self._send(200, body)

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def reset(self) -> None:
        with self.lock:
            self.sign_in_as = "someone@relay.test"
            self.rotate, self.refresh_delay, self.failing = True, 0.0, False
            self.id_token_claims = {}
            self.refresh_calls = self.refreshes = self.rejected_refreshes = 0
            self.pkce_checked = 0
            self.full_access = {}
            self.refresh_token_expires_in = None
            self.grants.clear()
            self.access_tokens.clear()
            self.codes.clear()
            self.introspections.clear()
            self.authorize_requests.clear()


# --- Dovecot with the oauth2 passdb ------------------------------------------------------------

_PASSWD_PASSDB = """passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}"""

# Dovecot 2.3 oauth2 passdb: bearer tokens of XOAUTH2/OAUTHBEARER logins are checked by RFC 7662
# introspection (POST token=...); the token's "email" must be the login name.
_OAUTH_PASSDBS = """passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}"""

OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}/introspect
force_introspection = yes
username_attribute = email
active_attribute = active
active_value = true
"""


class OAuthDovecot(Dovecot):
    """The test Dovecot with XOAUTH2 logins validated by the fake OAuth server."""

    def __init__(self, root: Path, certificate, *, oauth_url: str):
        super().__init__(root, certificate)
        self.oauth_url = oauth_url

    def start(self, attempts: int = 5) -> None:
        (self.root / "dovecot-oauth2.conf.ext").write_text(OAUTH2_CONF.format(url=self.oauth_url))
        # Dovecot.start() formats the module's CONFIG: give it ours for the length of the call
        # rather than copy its start-up logic (one session fixture starts it, in one thread).
        original = dovecot_module.CONFIG
        oauth_config = original.replace(_PASSWD_PASSDB, _OAUTH_PASSDBS)
        if oauth_config == original:
            raise RuntimeError("tests/servers/dovecot.py changed its passdb: update oauth.py")
        dovecot_module.CONFIG = oauth_config
        try:
            super().start(attempts)
        finally:
            dovecot_module.CONFIG = original


def start_oauth_dovecot(certificate, oauth_url: str) -> OAuthDovecot:
    root = Path(tempfile.mkdtemp(prefix="relay-dovecot-oauth-"))
    root.chmod(0o755)
    server = OAuthDovecot(root, certificate, oauth_url=oauth_url)
    atexit.register(lambda: server.process is not None and dovecot_module.stop_dovecot(server))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def oauth_server_session():
    server = FakeOAuthServer().start()
    yield server
    server.stop()


@pytest.fixture
def oauth_server(oauth_server_session, settings) -> FakeOAuthServer:
    """The fake provider, reset, with Google and Microsoft both pointed at it."""
    oauth_server_session.reset()
    settings.RELAY_OAUTH_PROVIDERS = {
        "google": oauth_server_session.provider_settings(),
        "microsoft": oauth_server_session.provider_settings(
            scope="openid email profile offline_access "
            "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send",
            authorize_params={"prompt": "select_account"},
            userinfo_url="",
            saves_sent=False,
        ),
    }
    # The sign-in buttons' redirect to the provider is allowed by form-action, as settings.py
    # computes it for the real providers.
    from crm.settings import oauth_form_action

    settings.SECURE_CSP = {
        **settings.SECURE_CSP,
        "form-action": oauth_form_action(settings.RELAY_OAUTH_PROVIDERS),
    }
    return oauth_server_session


@pytest.fixture(scope="session")
def dovecot_oauth(test_certificate, oauth_server_session):
    server = start_oauth_dovecot(test_certificate, oauth_server_session.base_url)
    yield server
    dovecot_module.stop_dovecot(server)
