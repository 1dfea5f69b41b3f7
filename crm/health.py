"""/healthz: is this instance able to serve? Checks the database and the Celery broker.

Open to anonymous callers (load balancers, docker health checks) and cheap: one SELECT 1 and
one broker round trip with a short timeout. It names what failed, never why in detail (the
reason goes to the log: an error text could carry a host name or a credential).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

logger = logging.getLogger(__name__)

# A health check that hangs is worse than one that fails: the caller's own timeout would hide
# which dependency is down.
BROKER_TIMEOUT = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    """Connect to the broker the workers use. Redis: kombu's channel PINGs on creation.
    Filesystem (the embedded run): the shared folders must exist and be writable, since that is
    all "connected" means for it."""
    options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        options.update(
            socket_connect_timeout=BROKER_TIMEOUT,
            socket_timeout=BROKER_TIMEOUT,
            retry_on_timeout=False,
        )
    with Connection(url, connect_timeout=BROKER_TIMEOUT, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT)
        if conn.transport_cls == "filesystem":
            for key in ("data_folder_in", "data_folder_out"):
                folder = options.get(key)
                if not folder or not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
                    raise OSError(f"broker folder {key} is missing or not writable")
        else:
            conn.default_channel  # noqa: B018 - opening the channel is the round trip


CHECKS = {"database": check_database, "broker": check_broker}
# What other apps add to the answer, for operators, without deciding 200 or 503: the push
# gateways' heartbeats and the watches by state (inbox/apps.py registers "push"). crm imports
# no app above it, so they register here.
REPORTS: dict[str, Callable[[], object]] = {}


def mail_switch() -> str:
    """ "on", or "off" while the site's mail switch is off (docs/product.md §8.1): a monitor
    that sees no mail arriving learns why without signing in."""
    from .selectors import mail_on

    return "on" if mail_on() else "off"


REPORTS["mail"] = mail_switch


@login_not_required
@never_cache
@require_GET
def healthz(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception:
            logger.exception("health check failed: %s", name)
            results[name] = "failed"
        else:
            results[name] = "ok"
    healthy = all(value == "ok" for value in results.values())
    if results.get("database") == "ok":
        for name, report in REPORTS.items():
            try:
                results[name] = report()
            except Exception:
                logger.exception("health report failed: %s", name)
                results[name] = "failed"
    return JsonResponse(results, status=200 if healthy else 503)
