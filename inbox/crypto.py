"""Mail credentials at rest: MultiFernet over RELAY_ENCRYPTION_KEYS (newest key first).

A separate key from SECRET_KEY, so that rotating Django's key never makes stored passwords
unreadable (docs/reliability.md C-03). Rotation: put a new key first, run
`manage.py rotate_encryption_keys`, then drop the old key (C-02).
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys opens: refuse to use it, never overwrite."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("RELAY_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "RELAY_ENCRYPTION_KEYS must hold Fernet keys (urlsafe base64, 32 bytes)."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.RELAY_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored credential cannot be decrypted with the configured RELAY_ENCRYPTION_KEYS."
        ) from exc


def rotate(token: str) -> str:
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise SecretUnreadable("A stored credential cannot be decrypted for rotation.") from exc


class Secret:
    """The decrypted value, kept out of repr() and str() so it never lands in a log or an error
    page by accident. Call .reveal() at the one place that needs it (the login)."""

    __slots__ = ("_token",)

    def __init__(self, token: str):
        self._token = token

    def reveal(self) -> str:
        return decrypt(self._token)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._token)


class EncryptedTextField(models.TextField):
    """Stores Fernet tokens. Reading gives the token string (still encrypted); write through
    `set_secret()` helpers on the model. Empty string means "no secret"."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        for key, value in (("blank", True), ("default", ""), ("editable", False)):
            if kwargs.get(key) == value:
                kwargs.pop(key, None)
        return name, path, args, kwargs
