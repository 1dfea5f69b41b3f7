"""Settings for Relay CRM, read from the environment (django-environ).

Embedded defaults (no variable set) give a one-machine install: SQLite in WAL mode and the kombu
filesystem broker under RELAY_DATA_DIR. DATABASE_URL and REDIS_URL switch to PostgreSQL and
Redis. RELAY_PRODUCTION=true turns on the deployment hardening that `check --deploy` wants.
"""

import os
import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet

from crm.datadir import private_dir, private_file, write_private

BASE_DIR = Path(__file__).resolve().parent.parent
# Where local files go by default: the checkout when running from one (manage.py beside the
# packages), else the working directory (an installed package: pip install .).
PROJECT_DIR = BASE_DIR if (BASE_DIR / "manage.py").exists() else Path.cwd()

env = environ.Env()
if (PROJECT_DIR / ".env").exists():
    environ.Env.read_env(PROJECT_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("RELAY_DATA_DIR", default=str(PROJECT_DIR / "data"))).resolve()
PRODUCTION = env.bool("RELAY_PRODUCTION", default=False)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Readable by the user Relay runs as only (docs/reliability.md C-29): made so, or tightened if
# an earlier version left it open, at every start. Production creates no folder of its own.
private_dir(DATA_DIR, create=not PRODUCTION)


def _local_secret(name: str, make) -> str:
    """A secret kept in a file under DATA_DIR, made on first use. Only for the embedded,
    one-machine run: production must set the variable (we refuse to invent one there)."""
    if PRODUCTION:
        raise environ.ImproperlyConfigured(f"Set the {name} environment variable in production.")
    private_dir(DATA_DIR)
    path = DATA_DIR / f".{name.lower()}"
    if not path.exists():
        write_private(path, make())
    private_file(path)  # tightens a key file an earlier version left readable
    return path.read_text().strip()


SECRET_KEY = env("DJANGO_SECRET_KEY", default=None) or _local_secret(
    "DJANGO_SECRET_KEY", lambda: secrets.token_urlsafe(64)
)

# Keys for mail credentials at rest (MultiFernet): comma-separated, newest first. Separate from
# SECRET_KEY so rotating one never makes stored passwords unreadable (docs/reliability.md C-03).
RELAY_ENCRYPTION_KEYS = env.list("RELAY_ENCRYPTION_KEYS", default=[]) or [
    _local_secret("RELAY_ENCRYPTION_KEYS", lambda: Fernet.generate_key().decode())
]
# Key for the HMAC in our own Message-IDs (record tokens); separate for the same reason.
RELAY_TOKEN_KEY = env("RELAY_TOKEN_KEY", default=None) or _local_secret(
    "RELAY_TOKEN_KEY", lambda: secrets.token_urlsafe(32)
)

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_htmx",
    "crm",
    "inbox",
    "connector",
    "notifications",
    "notes",
    "demo",
]

MIDDLEWARE = [
    # First, so that it sees every streamed response, whitenoise's too: under uvicorn they are
    # streamed in threads instead of read whole into memory (crm/streaming.py).
    "crm.streaming.AsyncStreamingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "crm.urls"

# Error pages and mailed reports never show a password or token a view marked as sensitive,
# DEBUG or not (docs/reliability.md C-23).
DEFAULT_EXCEPTION_REPORTER = "crm.debug.RelayExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "crm.debug.RelayExceptionReporterFilter"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,  # crm/templates (base.html, crm/, registration/), inbox/templates
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "inbox.context_processors.reconnect_banner",
            ],
        },
    },
]

WSGI_APPLICATION = "crm.wsgi.application"

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'relay.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Created 0600 before SQLite opens it: its -wal and -shm files take the database's mode.
    if str(DATABASES["default"]["NAME"]) not in ("", ":memory:"):
        for _suffix in ("", "-wal", "-shm", "-journal"):
            if _suffix == "" or Path(f"{DATABASES['default']['NAME']}{_suffix}").exists():
                private_file(f"{DATABASES['default']['NAME']}{_suffix}")
    # WAL lets the web server read while the worker writes; IMMEDIATE avoids "database is
    # locked" on lock upgrades; a busy timeout covers the rest.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The first backend refuses every sign-in to a locked account or from a locked address
# (crm/signin.py, docs/reliability.md C-26); Django's checks the password.
AUTHENTICATION_BACKENDS = [
    "crm.signin.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Reverse proxies in front of the web server that append to X-Forwarded-For (a TLS proxy: 1).
# The sign-in lock per address needs the client's address, not the proxy's.
RELAY_PROXY_COUNT = env.int("RELAY_PROXY_COUNT", default=0)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TZ_NAME", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
# Each app's static/ folder (crm/static: Bootstrap, htmx, the app's CSS and JS; inbox/static).
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(PROJECT_DIR / "staticfiles")))
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(DATA_DIR / "media")))
# Raw mail and attachments: owner only (docs/reliability.md C-29).
private_dir(MEDIA_ROOT, create=not PRODUCTION)
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# Raw messages and attachment blobs are never served from MEDIA_URL: every download goes
# through a view with a permission check (docs/reliability.md ).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Outside production, serve static files straight from the finders (no collectstatic needed).
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Security -------------------------------------------------------------------------------
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "frame-src": [CSP.SELF],
    "frame-ancestors": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
}
# No page is framed, except the sandboxed HTML-mail view, which opts in with
# @xframe_options_sameorigin (check --deploy: security.W019).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Cache (rate limits on Test connection and Reconnect, presence on conversations) --------
# Shared by every process: the presence marks of a conversation (docs/product.md §5.4) written by
# one web process must be read by the next, and `make run`'s runserver and worker are separate
# processes. RELAY_CACHE_URL (e.g. redis://redis:6379/1) for Redis; by default a file cache
# under the data folder (created on first use), never per-process memory.
if env("RELAY_CACHE_URL", default=""):
    CACHES = {"default": env.cache("RELAY_CACHE_URL")}
else:
    CACHES = {
        "default": {
            "BACKEND": "crm.cache.LazyFileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    # The embedded run: kombu writes each task message as a file with the process's umask,
    # and SQLite, beat's schedule and Django write theirs; on one machine nobody but Relay's
    # user has any business reading them (docs/reliability.md C-29).
    os.umask(0o077)
    _broker = DATA_DIR / "broker"
    for _sub in ("", "in", "processed", "control"):
        private_dir(_broker / _sub)
    CELERY_BROKER_URL = "filesystem://"
    # kombu's filesystem transport, writing each message whole before a worker can see it
    # (crm/broker.py).
    CELERY_BROKER_TRANSPORT = "crm.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu's filesystem transport needs its folders made first; "in" and "out" are the
        # same folder so one machine's producer and consumer meet.
        "data_folder_in": str(_broker / "in"),
        "data_folder_out": str(_broker / "in"),
        "processed_folder": str(_broker / "processed"),
        # Broadcast (control) messages: without this kombu writes ./control in the cwd.
        "control_folder": str(_broker / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
# --- Live updates (docs/product.md §7.14) -----------------------------------------------------
# Open pages hear of new mail, team changes and notifications through a stream of server-sent
# events fed by Redis pub/sub (inbox/live.py, inbox/views/events.py). Without Redis (the embedded
# default) there is no stream and the pages poll as before; RELAY_LIVE_URL="" turns it off too.
RELAY_LIVE_URL = env("RELAY_LIVE_URL", default=REDIS_URL)
# Seconds between heartbeats of a stream; access is checked again at each one, so a revoked
# grant stops a mailbox's events within this (docs/reliability.md P-23).
RELAY_LIVE_HEARTBEAT = env.float("RELAY_LIVE_HEARTBEAT", default=15.0)
# Streams one person may hold open at once (tabs, devices); the next one is refused with 429
# and that page polls (docs/reliability.md P-25).
RELAY_LIVE_MAX_STREAMS = env.int("RELAY_LIVE_MAX_STREAMS", default=8)

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# The push gateway's targeted syncs have a queue of their own, so they never wait behind first
# syncs (docs/product.md §3.11); every worker consumes it unless told otherwise.
CELERY_TASK_ROUTES = {"relay.push_sync": {"queue": "push"}}
# Plain data: task names as strings (docs/architecture.md). One tick dispatches every due mailbox.
RELAY_BEAT_INTERVAL = env.float("RELAY_BEAT_INTERVAL", default=10.0)
CELERY_BEAT_SCHEDULE: dict = {
    "dispatch-due-mailboxes": {"task": "relay.beat_tick", "schedule": RELAY_BEAT_INTERVAL},
    "file-messages-whose-task-was-lost": {"task": "relay.file_pending", "schedule": 60.0},
    # Outbox entries whose signal was lost, retries that are due, APPENDs to Sent still to do.
    "dispatch-due-outbox": {"task": "relay.outbox_tick", "schedule": RELAY_BEAT_INTERVAL},
    # Completed job records and old ledger entries, after RELAY_PURGE_AFTER_DAYS (see
    # docs/product.md §8).
    "purge-completed-jobs": {"task": "relay.purge", "schedule": 24 * 3600.0},
    # A week before a Google or Microsoft sign-in dies, whoever must reconnect it is told.
    "warn-expiring-sign-ins": {"task": "relay.warn_expiring_grants", "schedule": 3600.0},
    # Notification mail: one mail per person per batch (notifications/services.py).
    "send-notification-digests": {"task": "relay.send_notification_digests", "schedule": 60.0},
    # Snoozed conversations whose time came back to Open (docs/product.md §7.8); the lists
    # count them as Open on time even when this runs late.
    "wake-snoozed-conversations": {"task": "relay.wake_snoozed", "schedule": 60.0},
}
# Workers log through LOGGING below (one structured line per event, secrets redacted) instead
# of Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Relay ----------------------------------------------------------------------------------
# Mail hosts that may resolve to internal addresses (comma-separated names, IPs or CIDRs).
RELAY_ALLOWED_MAIL_HOSTS = env.list("RELAY_ALLOWED_MAIL_HOSTS", default=[])
RELAY_DEFAULT_FROM_EMAIL = env("RELAY_DEFAULT_FROM_EMAIL", default="relay@localhost")
DEFAULT_FROM_EMAIL = RELAY_DEFAULT_FROM_EMAIL
# The system mailer (Django's default mailer): mail Relay sends as itself rather than from a
# mailbox, such as the link that confirms a staff address (crm/services.py,
# docs/reliability.md C-19). Read from EMAIL_* variables; the OPTIONS are the SMTP backend's.
_EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": (
            {
                "host": env("EMAIL_HOST", default="localhost"),
                "port": env.int("EMAIL_PORT", default=25),
                "username": env("EMAIL_HOST_USER", default=""),
                "password": env("EMAIL_HOST_PASSWORD", default=""),
                "use_tls": env.bool("EMAIL_USE_TLS", default=False),
                "use_ssl": env.bool("EMAIL_USE_SSL", default=False),
                "timeout": env.float("EMAIL_TIMEOUT", default=30.0),
            }
            if _EMAIL_BACKEND.endswith(".smtp.EmailBackend")
            else {}
        ),
    }
}
# Notification mail (docs/product.md §7.10): a person's pending notifications are mailed together
# once the oldest has waited this many minutes, so a burst of events is one mail.
RELAY_NOTIFY_EMAIL_AFTER_MINUTES = env.int("RELAY_NOTIFY_EMAIL_AFTER_MINUTES", default=5)
# This site's address, for links in mail Relay sends as itself (notification mail).
RELAY_SITE_URL = env("RELAY_SITE_URL", default="http://127.0.0.1:8000")
RELAY_PURGE_AFTER_DAYS = env.int("RELAY_PURGE_AFTER_DAYS", default=30)
# The site's mail switch (docs/product.md §8.1): off, no mailbox is synced or watched and
# nothing is sent through one; mail sent meanwhile waits in the outbox, and the mailboxes are
# synced as soon as it is on again. For a migration, a maintenance window or an incident.
RELAY_MAIL_ENABLED = env.bool("RELAY_MAIL_ENABLED", default=True)
# The global switch for ticket acknowledgements (docs/product.md §4.2): off, no mailbox sends
# any, whatever its own switch says. These four are defaults an administrator may override on
# the Site settings page (docs/product.md §8.1); read them through crm/selectors.py site_settings.
RELAY_SEND_ACKNOWLEDGEMENTS = env.bool("RELAY_SEND_ACKNOWLEDGEMENTS", default=True)
RELAY_PAGE_SIZE = 25
# Seconds before a silent mail server counts as down (docs/reliability.md S-12, I-08).
RELAY_IMAP_TIMEOUT = env.float("RELAY_IMAP_TIMEOUT", default=60.0)
# Processes of the parse pool in each sync (connector/ingest/pool.py); unset: one per core;
# 0 or 1 parses in the worker's own process.
RELAY_PARSE_WORKERS = env.int("RELAY_PARSE_WORKERS", default=None)
# The domain of Relay's own Message-IDs (connector/filing/tokens.py); empty: the sending
# mailbox's domain.
RELAY_MESSAGE_ID_DOMAIN = env("RELAY_MESSAGE_ID_DOMAIN", default="")
# The authserv-ids of our own receiving mail servers (RFC 8601): only an
# Authentication-Results header naming one of them is believed (connector/filing/
# authentication.py). Security-relevant: set it to what your MX writes.
RELAY_AUTHSERV_IDS = [s.lower() for s in env.list("RELAY_AUTHSERV_IDS", default=[])]
# The largest Email API document accepted, in bytes (connector/emailapi/document.py).
RELAY_EMAIL_API_MAX_BYTES = env.int("RELAY_EMAIL_API_MAX_BYTES", default=256 * 1024)
# Largest upload of .mbox/.eml files to import into a mailbox, all files together
# (docs/product.md §3.10); streamed to disk, never held in memory.
RELAY_IMPORT_MAX_BYTES = env.int("RELAY_IMPORT_MAX_BYTES", default=1024 * 1024 * 1024)

# --- The push gateway (`manage.py push_gateway`, docs/product.md §3.11) ----------------------
# Seconds a sync's lease on its mailbox lasts without renewal (renewed after every batch, and
# while a batch is still being fetched): a worker killed mid-sync holds its mailbox this long,
# then the next beat tick syncs it again (connector/sync/lease.py, docs/reliability.md I-03).
RELAY_SYNC_LEASE_TTL = env.float("RELAY_SYNC_LEASE_TTL", default=120.0)
# Seconds a gateway's lease lasts without renewal (renewed every third of it): a dead gateway's
# mailboxes fall back to polling within this plus one beat tick (docs/reliability.md P-14).
RELAY_PUSH_LEASE_TTL = env.float("RELAY_PUSH_LEASE_TTL", default=60.0)
# Seconds between two polls of a mailbox whose watch is live: only a safety net.
RELAY_PUSH_SAFETY_POLL = env.int("RELAY_PUSH_SAFETY_POLL", default=3600)
# Seconds an IDLE lasts before it is renewed (RFC 2177 asks for less than 29 minutes), and per
# host where a provider cuts sooner: "outlook.office365.com=300,imap.example.com=120".
RELAY_PUSH_REIDLE = env.float("RELAY_PUSH_REIDLE", default=600.0)
RELAY_PUSH_REIDLE_BY_HOST = {
    k.lower(): float(v) for k, v in env.dict("RELAY_PUSH_REIDLE_BY_HOST", default={}).items()
}
# Seconds of silence after which a watched connection is declared dead (docs/reliability.md P-13).
RELAY_PUSH_WATCHDOG = env.float("RELAY_PUSH_WATCHDOG", default=300.0)
# Seconds between two STATUS sweeps of the other folders where the server has no NOTIFY.
RELAY_PUSH_SWEEP = env.float("RELAY_PUSH_SWEEP", default=900.0)
# Milliseconds events of one mailbox are gathered into one targeted sync.
RELAY_PUSH_COALESCE_MS = env.int("RELAY_PUSH_COALESCE_MS", default=50)
# New connections per second, per gateway and per mail host (a reconnect storm is spread out).
RELAY_PUSH_CONNECT_RATE = env.float("RELAY_PUSH_CONNECT_RATE", default=50.0)
RELAY_PUSH_CONNECT_RATE_PER_HOST = env.float("RELAY_PUSH_CONNECT_RATE_PER_HOST", default=10.0)
# Seconds: the longest wait between two reconnection attempts (jittered exponential back-off).
RELAY_PUSH_BACKOFF_MAX = env.float("RELAY_PUSH_BACKOFF_MAX", default=300.0)
# Sessions one gateway holds at most; more mailboxes than that wait for another gateway.
RELAY_PUSH_MAX_SESSIONS = env.int("RELAY_PUSH_MAX_SESSIONS", default=10000)

# OAuth 2 providers (docs/product.md §2.3): authorisation code with PKCE, offline access, XOAUTH2
# for IMAP and SMTP. The endpoints are settings so that the tests can point them at a local server.
# "saves_sent": the provider files mail sent through its SMTP server in Sent itself (Gmail
# does), so the CRM does not APPEND a second copy.
_MS_TENANT = env("RELAY_MICROSOFT_TENANT", default="common")
_MS_LOGIN = f"https://login.microsoftonline.com/{_MS_TENANT}/oauth2/v2.0"
RELAY_OAUTH_PROVIDERS = {
    "google": {
        "client_id": env("RELAY_GOOGLE_CLIENT_ID", default=""),
        "client_secret": env("RELAY_GOOGLE_CLIENT_SECRET", default=""),
        "authorize_url": env(
            "RELAY_GOOGLE_AUTHORIZE_URL", default="https://accounts.google.com/o/oauth2/v2/auth"
        ),
        "token_url": env("RELAY_GOOGLE_TOKEN_URL", default="https://oauth2.googleapis.com/token"),
        "userinfo_url": env(
            "RELAY_GOOGLE_USERINFO_URL",
            default="https://openidconnect.googleapis.com/v1/userinfo",
        ),
        # https://mail.google.com/ is the one scope Google grants for IMAP and SMTP.
        "scope": "openid email https://mail.google.com/",
        # Without access_type=offline Google issues no refresh token; prompt=consent makes it
        # issue one again on a reconnect.
        "authorize_params": {"access_type": "offline", "prompt": "consent"},
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "imap_security": "ssl",
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 465,
        "smtp_security": "ssl",
        "saves_sent": True,
    },
    "microsoft": {
        "client_id": env("RELAY_MICROSOFT_CLIENT_ID", default=""),
        "client_secret": env("RELAY_MICROSOFT_CLIENT_SECRET", default=""),
        "authorize_url": env("RELAY_MICROSOFT_AUTHORIZE_URL", default=f"{_MS_LOGIN}/authorize"),
        "token_url": env("RELAY_MICROSOFT_TOKEN_URL", default=f"{_MS_LOGIN}/token"),
        # A token for outlook.office.com cannot call Graph's userinfo: the address comes from
        # the id_token the token endpoint returns.
        "userinfo_url": env("RELAY_MICROSOFT_USERINFO_URL", default=""),
        # "profile" brings preferred_username, the verified sign-in name the mailbox's address
        # is taken from; the "email" claim is never believed (docs/reliability.md C-20).
        "scope": "openid email profile offline_access "
        "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send",
        "authorize_params": {"prompt": "select_account"},
        "imap_host": "outlook.office365.com",
        "imap_port": 993,
        "imap_security": "ssl",
        "smtp_host": "smtp.office365.com",
        "smtp_port": 587,
        "smtp_security": "starttls",
        "saves_sent": env.bool("RELAY_MICROSOFT_SAVES_SENT", default=False),
    },
}
# Refresh an access token this long before it expires (never use one about to die mid-sync).


def oauth_form_action(providers: dict) -> list[str]:
    """CSP form-action for the sign-in buttons: "Continue with Google/Microsoft" posts to
    inbox/views/oauth.py, which redirects to the provider, and Chromium holds a form's
    redirect to form-action too (docs/product.md §2.9). Only the providers' authorisation
    origins are added."""
    from urllib.parse import urlsplit

    origins = []
    for provider in providers.values():
        url = urlsplit(provider.get("authorize_url") or "")
        if url.scheme in ("https", "http") and url.netloc:
            origin = f"{url.scheme}://{url.netloc}"
            if origin not in origins:
                origins.append(origin)
    return [CSP.SELF, *origins]


SECURE_CSP["form-action"] = oauth_form_action(RELAY_OAUTH_PROVIDERS)
RELAY_OAUTH_REFRESH_MARGIN = env.int("RELAY_OAUTH_REFRESH_MARGIN", default=300)
RELAY_OAUTH_TIMEOUT = env.float("RELAY_OAUTH_TIMEOUT", default=20.0)
# Seconds an SMTP server may stay silent; after the message's final "." the outcome is then
# unknown and the outbox entry goes to "verify", never re-sent by itself (docs/reliability.md M-05).
RELAY_SMTP_TIMEOUT = env.float("RELAY_SMTP_TIMEOUT", default=60.0)
# Seconds a message a person sent is held ("scheduled") so that Undo can take it back to the
# editor; no worker sends it before (docs/product.md §5.5, docs/reliability.md M-12). 0: no undo.
RELAY_UNDO_SEND_SECONDS = env.int("RELAY_UNDO_SEND_SECONDS", default=10)

# --- Logging --------------------------------------------------------------------------------
# One line per event (logfmt, or JSON with LOG_FORMAT=json) with mailbox and message ids; the
# filter redacts anything that looks like a password or token first (crm/logs.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "crm.logs.RedactSecretsFilter"},
        "uvicorn_fields": {"()": "crm.logs.UvicornFields"},
    },
    "formatters": {
        "structured": {
            "()": "crm.logs.StructuredFormatter",
            "style": env("LOG_FORMAT", default="logfmt"),
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # The web server's own lines (uvicorn under bin/web and in docker-compose's gunicorn
    # workers), access lines included, in the same format: these replace the handlers uvicorn
    # and gunicorn installed before Django started (crm.asgi loads this).
    "loggers": {
        name: {
            "handlers": ["console"],
            "filters": ["uvicorn_fields"],
            "level": env("LOG_LEVEL", default="INFO"),
            "propagate": False,
        }
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error")
    },
}
# Celery workers and beat log at this level instead (crm/celery.py): at INFO they write a line
# per task and per tick, thousands an hour, and bury the errors someone must see.
RELAY_WORKER_LOG_LEVEL = env("RELAY_WORKER_LOG_LEVEL", default="WARNING").upper()
if CELERY_BROKER_URL == "filesystem://":
    # The embedded broker has no host by design; kombu warns "No hostname was supplied" at
    # every start, a line that would follow `make run`'s address and login.
    LOGGING["loggers"]["kombu.connection"] = {"level": "ERROR"}
