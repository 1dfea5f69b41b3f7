"""The embedded default cache: Django's file cache, shared by every process on the machine
(runserver, the worker, several gunicorn processes), so presence on a conversation and the
rate limits hold across them (docs/product.md §5.4). The folder is created on the first
write, not at start-up: `manage.py check --deploy` must create nothing (tests/test_settings.py).
"""

from __future__ import annotations

import os

from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.filebased import FileBasedCache


class LazyFileBasedCache(FileBasedCache):
    def __init__(self, dir, params):
        BaseCache.__init__(self, params)
        self._dir = os.path.abspath(dir)
