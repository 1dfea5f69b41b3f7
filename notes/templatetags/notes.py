"""Showing a note: its text escaped in full, web links made clickable, @names highlighted
(docs/product.md §7.9). Nothing a note's author types becomes markup."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from ..access import Target

register = template.Library()

# A web address, or a mention (the same pattern notes/services.py resolves).
_TOKENS = re.compile(r"(?P<url>https?://[^\s<>\"'`]+)|(?<![\w@.+-])@(?P<name>[\w.+-]*[\w+-])")
_TRAILING = ".,;:!?)]}’”"


@register.filter
def render_note(body: str):
    out = []
    pos = 0
    for match in _TOKENS.finditer(body):
        out.append(escape(body[pos : match.start()]))
        if match.group("url"):
            url = match.group("url")
            tail = ""
            while url and url[-1] in _TRAILING:
                url, tail = url[:-1], url[-1] + tail
            out.append(
                format_html(
                    '<a href="{0}" rel="nofollow noopener noreferrer" target="_blank">{0}</a>',
                    url,
                )
            )
            out.append(escape(tail))
        else:
            out.append(format_html('<span class="note-mention">@{}</span>', match.group("name")))
        pos = match.end()
    out.append(escape(body[pos:]))
    return mark_safe("".join(str(part) for part in out).replace("\n", "<br>"))


@register.filter
def note_target(note) -> Target:
    return Target(note.target_type, getattr(note, note.target_type))
