"""Error reports that never show a password or a token someone sent (docs/reliability.md C-23).

Django's technical 500 page (DEBUG on: a developer's machine, a staging server left so) and
the report mailed to ADMINS show the request's POST and GET data and the local variables of
every frame. Views that take a secret mark its parameters with Django's
`sensitive_post_parameters` (or `sensitive_get_parameters` below, for an OAuth callback's
code); these classes make the marks hold everywhere:

- `RelayExceptionReporterFilter` applies the marks with DEBUG on too (Django's own filter
  only does with DEBUG off), and replaces any frame variable whose value contains a marked
  secret: the password sits in a form's cleaned data, a service's arguments, the socket
  library's locals, under names nobody can list in advance;
- `RelayExceptionReporter` removes the marked values from the finished page, HTML or text,
  in every spelling a page could hold them (as typed, HTML-escaped, in a repr, URL-encoded).

Settings: DEFAULT_EXCEPTION_REPORTER and DEFAULT_EXCEPTION_REPORTER_FILTER (crm/settings.py).
"""

from __future__ import annotations

import contextlib
import functools
import pprint
from urllib.parse import quote, quote_plus

from django.utils.html import escape
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# Shorter values are left alone: scrubbing every "ab" from a page would make it unreadable,
# and no password or token is that short.
MIN_SECRET_LENGTH = 4


def sensitive_get_parameters(*names: str):
    """Like Django's sensitive_post_parameters, for query-string parameters: an OAuth
    provider sends its authorisation code back in the URL."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            request.sensitive_get_parameters = names
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def sensitive_values(request) -> list[str]:
    """The values of the request's marked parameters, longest first."""
    if request is None:
        return []
    values: list[str] = []
    # An unreadable body (too big, cut off) marks nothing: the report is still written.
    with contextlib.suppress(Exception):
        post_names = getattr(request, "sensitive_post_parameters", None) or ()
        if post_names == "__ALL__":
            post_names = list(request.POST)
        for name in post_names:
            values += request.POST.getlist(name)
        for name in getattr(request, "sensitive_get_parameters", None) or ():
            values += request.GET.getlist(name)
    found = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(found, key=len, reverse=True)


def _spellings(secret: str) -> set[str]:
    plain = {secret, repr(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
    return {s for value in plain for s in (value, escape(value))}


def scrub(text: str, secrets: list[str], substitute: str) -> str:
    for secret in secrets:
        for spelling in sorted(_spellings(secret), key=len, reverse=True):
            text = text.replace(spelling, substitute)
    return text


class RelayExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request):
        # Django turns its filter off with DEBUG on; a password is no less a password then.
        return True

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        secrets = sensitive_values(request)
        if not secrets:
            return variables
        cleaned = []
        for name, value in variables:
            try:
                shown = pprint.pformat(value)
            except Exception:  # the report shows the repr's error itself
                shown = ""
            if any(secret in shown for secret in secrets):
                value = self.cleansed_substitute
            cleaned.append((name, value))
        return cleaned


class RelayExceptionReporter(ExceptionReporter):
    def _scrubbed(self, text: str) -> str:
        secrets = sensitive_values(self.request)
        if not secrets:
            return text
        return scrub(text, secrets, self.filter.cleansed_substitute)

    def get_traceback_html(self):
        return self._scrubbed(str(super().get_traceback_html()))

    def get_traceback_text(self):
        return self._scrubbed(str(super().get_traceback_text()))
