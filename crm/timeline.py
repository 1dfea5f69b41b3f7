"""A record page's timeline (docs/product.md §7.4): the record's mail and notes, merged, newest
first, one page at a time ("Show older").

crm imports no app above it (pyproject.toml [tool.importlinter]), so the apps that own the
entries register a source here when they are ready: inbox its mail (inbox/timeline.py), notes
its notes (notes/timeline.py). Each source returns at most `limit` entries older than the
cursor, newest first, in a fixed number of queries; the merge keeps the newest `limit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils.dateparse import parse_datetime

# Entries of the same time are ordered by kind, then by id (both descending), so a page
# boundary never drops or repeats one.


@dataclass(frozen=True)
class Cursor:
    """The last entry shown: the next page holds what sorts after it."""

    at: datetime
    kind: str
    pk: int

    def __str__(self) -> str:
        return f"{self.at.isoformat()}~{self.kind}~{self.pk}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """None for a missing or malformed cursor (the page then starts from the newest)."""
        try:
            at_text, kind, pk_text = (text or "").split("~")
            at = parse_datetime(at_text)
            pk = int(pk_text)
        except ValueError:
            return None
        if at is None or at.tzinfo is None or not kind:
            return None
        return cls(at, kind, pk)

    def older(self, kind: str, at_field: str) -> Q:
        """The rows of a source of `kind` that sort after this cursor."""
        if kind < self.kind:
            same_time = Q(**{at_field: self.at})
        elif kind == self.kind:
            same_time = Q(**{at_field: self.at, "pk__lt": self.pk})
        else:
            same_time = Q(pk__in=[])
        return Q(**{f"{at_field}__lt": self.at}) | same_time


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # the source's name
    pk: int
    template: str  # rendered with `entry` and `item`
    item: object

    @property
    def sort_key(self):
        return (self.at, self.kind, self.pk)


# fn(user=, record_type=, record_id=, before: Cursor | None, limit: int) -> list[Entry]
Source = Callable[..., list[Entry]]
SOURCES: dict[str, Source] = {}


def register_source(kind: str, source: Source) -> None:
    SOURCES[kind] = source


@dataclass(frozen=True)
class TimelinePage:
    entries: list[Entry]
    older: Cursor | None  # where "Show older" starts, None on the last page
    is_first: bool


def timeline_for(*, user, record_type: str, record_id: int, before: Cursor | None, limit: int):
    entries: list[Entry] = []
    for source in SOURCES.values():
        entries.extend(
            source(
                user=user,
                record_type=record_type,
                record_id=record_id,
                before=before,
                limit=limit + 1,
            )
        )
    entries.sort(key=lambda e: e.sort_key, reverse=True)
    page = entries[:limit]
    older = None
    if len(entries) > limit:
        last = page[-1]
        older = Cursor(last.at, last.kind, last.pk)
    return TimelinePage(entries=page, older=older, is_first=before is None)
