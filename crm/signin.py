"""Sign-in throttling (docs/reliability.md C-26, docs/product.md §7.6): failed sign-ins are
counted per account (the user name typed, whether or not it exists) and per client address.
Past ``ACCOUNT_LIMIT`` failures on one account, or ``ADDRESS_LIMIT`` from one address, that
account or address is locked for ``FIRST_LOCK``, twice as long at each lock in a row, up to
``LONGEST_LOCK``. While locked, even the right password is refused and the person is told
when to try again; attempts made during a lock do not count. A successful sign-in clears the
account's count (never the address's: an attacker's own account must not reset it).

The counts live in the database (``SignInThrottle``), so they hold across web processes and
restarts, on SQLite as on PostgreSQL, and an admin unlocks in the admin site or with
``manage.py unlock_signin``. The lock is enforced by ``LockoutBackend``, first in
AUTHENTICATION_BACKENDS, so every path that signs in through ``authenticate()`` (the sign-in
page, the admin's) is held by it; the forms only turn it into a clear message.
"""

from __future__ import annotations

import datetime as dt
import math

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.dispatch import receiver
from django.utils import timezone

from .models import SignInThrottle

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
FIRST_LOCK = dt.timedelta(minutes=5)
LONGEST_LOCK = dt.timedelta(hours=24)
# Failures and locks older than this are forgotten: "in a row" means within a day.
FORGET_AFTER = dt.timedelta(hours=24)

Kind = SignInThrottle.Kind


def client_address(request) -> str:
    """The client's IP address: REMOTE_ADDR, or behind ``RELAY_PROXY_COUNT`` reverse proxies
    the address the outermost of ours saw (counted from the right of X-Forwarded-For, whose
    left part the client can write)."""
    if request is None:
        return ""
    count = settings.RELAY_PROXY_COUNT
    if count > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= count:
            return forwarded[-count][:255]
    return request.META.get("REMOTE_ADDR", "")[:255]


def _keys(username: str | None, address: str) -> list[tuple[str, str]]:
    keys = []
    if username:
        keys.append((Kind.ACCOUNT, username.strip().lower()[:255]))
    if address:
        keys.append((Kind.ADDRESS, address))
    return keys


def _matching(keys):
    condition = Q(pk__in=[])
    for kind, key in keys:
        condition |= Q(kind=kind, key=key)
    return SignInThrottle.objects.filter(condition)


def locked_until(username: str | None, address: str) -> dt.datetime | None:
    """When the later of the account's and the address's locks ends, or None."""
    keys = _keys(username, address)
    if not keys:
        return None
    until = (
        _matching(keys)
        .filter(locked_until__gt=timezone.now())
        .aggregate(until=Max("locked_until"))["until"]
    )
    return until


def _lock_length(lockouts: int) -> dt.timedelta:
    return min(FIRST_LOCK * (2 ** min(lockouts - 1, 20)), LONGEST_LOCK)


def record_failure(username: str | None, address: str) -> None:
    now = timezone.now()
    for kind, key in _keys(username, address):
        limit = ACCOUNT_LIMIT if kind == Kind.ACCOUNT else ADDRESS_LIMIT
        with transaction.atomic():
            try:
                with transaction.atomic():
                    SignInThrottle.objects.get_or_create(kind=kind, key=key)
            except IntegrityError:  # created by a concurrent failure: use that row
                pass
            row = SignInThrottle.objects.select_for_update().get(kind=kind, key=key)
            if row.last_failure_at and now - row.last_failure_at > FORGET_AFTER:
                row.failures = row.lockouts = 0
            row.failures += 1
            row.last_failure_at = now
            if row.failures >= limit:
                row.lockouts += 1
                row.failures = 0
                row.locked_until = now + _lock_length(row.lockouts)
            row.save()
    # Rows of names that were tried once and forgotten since: do not keep them for ever.
    SignInThrottle.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=now),
        last_failure_at__lt=now - FORGET_AFTER,
    ).delete()


def unlock(*, usernames=(), addresses=(), everything: bool = False) -> int:
    """Forget the counts and locks of these accounts and addresses; returns the rows removed."""
    if everything:
        rows = SignInThrottle.objects.all()
    else:
        keys = [k for name in usernames for k in _keys(name, "")]
        keys += [(Kind.ADDRESS, address) for address in addresses]
        if not keys:
            return 0
        rows = _matching(keys)
    return rows.delete()[0]


def lock_message(until: dt.datetime) -> str:
    minutes = max(1, math.ceil((until - timezone.now()).total_seconds() / 60))
    local = timezone.localtime(until)
    when = (
        local.strftime("%H:%M")
        if local.date() == timezone.localdate()
        else (local.strftime("%d %b %H:%M"))
    )
    return (
        "Too many failed sign-ins. Signing in is locked for this account or from this "
        f"network until {when} ({timezone.get_current_timezone_name()}), in about {minutes} "
        f"minute{'s' if minutes != 1 else ''}. An administrator can unlock it sooner."
    )


class LockoutBackend:
    """First in AUTHENTICATION_BACKENDS: refuses every sign-in to a locked account or from a
    locked address, the right password included, before the next backend checks it."""

    def authenticate(self, request, username=None, **credentials):
        if locked_until(username, client_address(request)):
            raise PermissionDenied("sign-in locked")  # authenticate() stops here
        return None

    def get_user(self, user_id):
        # force_login() and sessions may name this backend (the first one): the user is
        # Django's, as ModelBackend finds it.
        return ModelBackend().get_user(user_id)


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    username = credentials.get("username")
    address = client_address(request)
    if locked_until(username, address):
        return  # attempts during a lock do not count (nor lengthen it)
    record_failure(username, address)


@receiver(user_logged_in)
def _clear_account(sender, request, user, **kwargs):
    unlock(usernames=[user.get_username()])


class _LockMessage:
    """Turns a lock into a message that says when to try again, before and after a failure."""

    def clean(self):
        username = self.cleaned_data.get("username")
        address = client_address(self.request)
        until = locked_until(username, address)
        if until:
            raise ValidationError(lock_message(until), code="locked")
        try:
            return super().clean()
        except ValidationError:
            until = locked_until(username, address)  # this failure may have locked it
            if until:
                raise ValidationError(lock_message(until), code="locked") from None
            raise


class SignInForm(_LockMessage, AuthenticationForm):
    pass


class AdminSignInForm(_LockMessage, AdminAuthenticationForm):
    pass
