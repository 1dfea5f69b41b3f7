"""The Reports page's figures (docs/product.md §7.11): received, replied and closed
conversations per day, first-response time and time-to-close (median and 90th percentile),
the open backlog by age and the busiest hours.

Each figure is one query whatever the number of conversations (tests/inbox/test_reports.py
counts them): the database gives the moments, Python buckets them by day and hour in the
site's time zone and takes the percentiles, so the same code runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field

from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from crm.models import StaffEmail
from inbox.models import Message, Thread, ThreadEvent
from inbox.selectors.conversations import open_now

# Backlog buckets: (label, upper bound of the age in days; None: no bound).
BACKLOG_BUCKETS: list[tuple[str, float | None]] = [
    ("< 1 day", 1),
    ("1-3 days", 3),
    ("3-7 days", 7),
    ("7-30 days", 30),
    ("> 30 days", None),
]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def ours_q() -> Q:
    """A message of ours: sent by Relay or found in Sent (`is_outgoing`), from the mailbox's
    own address or from a confirmed staff address (as inbox/services/conversations.py)."""
    staff = StaffEmail.objects.filter(confirmed_at__isnull=False).values("email")
    return (
        Q(is_outgoing=True)
        | Q(from_address=F("mailbox__email_address"))
        | Q(from_address__in=Subquery(staff))
    )


def customer_q() -> Q:
    """A customer's message: not ours, and neither an out-of-office answer nor a bounce."""
    return ~ours_q() & Q(is_auto_reply=False, is_bounce=False, date__isnull=False)


def _first_customer(outer: str) -> Subquery:
    return Subquery(
        Message.objects.filter(customer_q(), thread_id=OuterRef(outer))
        .order_by("date", "pk")
        .values("date")[:1]
    )


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Durations:
    """Seconds, one per conversation."""

    values: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return percentile(self.values, 0.5)

    @property
    def p90(self) -> float | None:
        return percentile(self.values, 0.9)


@dataclass
class Report:
    start: dt.date
    end: dt.date
    days: list[dt.date]
    received: Counter = field(default_factory=Counter)  # day -> conversations
    replied: Counter = field(default_factory=Counter)
    closed: Counter = field(default_factory=Counter)
    received_total: int = 0
    replied_total: int = 0
    closed_total: int = 0
    first_response: Durations = field(default_factory=Durations)
    time_to_close: Durations = field(default_factory=Durations)
    backlog: list[tuple[str, int]] = field(default_factory=list)
    # hours[weekday][hour]: customer messages (weekday 0 = Monday).
    hours: list[list[int]] = field(default_factory=lambda: [[0] * 24 for _ in range(7)])

    @property
    def per_day(self) -> list[tuple[dt.date, int, int, int]]:
        return [(d, self.received[d], self.replied[d], self.closed[d]) for d in self.days]

    @property
    def per_hour(self) -> list[int]:
        return [sum(day[h] for day in self.hours) for h in range(24)]

    @property
    def per_weekday(self) -> list[tuple[str, int]]:
        return [(WEEKDAYS[i], sum(self.hours[i])) for i in range(7)]


def build_report(
    *,
    mailbox_ids: list[int],
    start: dt.date,
    end: dt.date,
    person_id: int | None = None,
    tz: dt.tzinfo | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """The figures for conversations of `mailbox_ids` (already checked readable) from `start`
    to `end` inclusive, local days of `tz` (the site's time zone by default); `person_id`
    narrows to one person: the assignee, or for closed and time-to-close, who closed it.
    Five queries."""
    tz = tz or timezone.get_current_timezone()
    now = now or timezone.now()
    since = dt.datetime.combine(start, dt.time(), tzinfo=tz)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    report = Report(start=start, end=end, days=days)

    def day(moment: dt.datetime) -> dt.date:
        return timezone.localtime(moment, tz).date()

    threads = Thread.objects.filter(mailbox_id__in=mailbox_ids)
    if person_id:
        threads = threads.filter(assignee_id=person_id)

    # Received, and the first response to each of them.
    first_reply = Subquery(
        Message.objects.filter(ours_q(), thread_id=OuterRef("pk"), date__isnull=False)
        .filter(date__gte=OuterRef("first_customer"))
        .order_by("date", "pk")
        .values("date")[:1]
    )
    received = (
        threads.annotate(first_customer=_first_customer("pk"))
        .filter(first_customer__gte=since, first_customer__lt=until)
        .annotate(first_reply=first_reply)
        .values_list("first_customer", "first_reply")
    )
    for first_customer, reply in received:
        report.received[day(first_customer)] += 1
        report.received_total += 1
        if reply is not None:
            report.first_response.values.append((reply - first_customer).total_seconds())

    # Replied: conversations with a message of ours in the range (once per day, once overall).
    replies = Message.objects.filter(
        ours_q(), thread__in=threads.values("pk"), date__gte=since, date__lt=until
    ).values_list("thread_id", "date")
    seen_days: set[tuple[int, dt.date]] = set()
    seen_threads: set[int] = set()
    for thread_id, moment in replies:
        key = (thread_id, day(moment))
        if key not in seen_days:
            seen_days.add(key)
            report.replied[key[1]] += 1
        seen_threads.add(thread_id)
    report.replied_total = len(seen_threads)

    # Closed: a Done event in the range; a conversation closed twice counts once, at its last.
    events = ThreadEvent.objects.filter(
        kind=ThreadEvent.Kind.STATUS,
        data__status=Thread.Status.DONE,
        thread__mailbox_id__in=mailbox_ids,
        created_at__gte=since,
        created_at__lt=until,
    )
    if person_id:
        events = events.filter(actor_id=person_id)
    last_close: dict[int, tuple[dt.datetime, dt.datetime | None]] = {}
    for thread_id, closed_at, first_customer in events.annotate(
        first_customer=_first_customer("thread_id")
    ).values_list("thread_id", "created_at", "first_customer"):
        if thread_id not in last_close or closed_at > last_close[thread_id][0]:
            last_close[thread_id] = (closed_at, first_customer)
    for closed_at, first_customer in last_close.values():
        report.closed[day(closed_at)] += 1
        if first_customer is not None and first_customer <= closed_at:
            report.time_to_close.values.append((closed_at - first_customer).total_seconds())
    report.closed_total = len(last_close)

    # Backlog: Open now (a snooze that has ended counts), by age of the last customer message.
    last_customer = Subquery(
        Message.objects.filter(customer_q(), thread_id=OuterRef("pk"))
        .order_by("-date", "-pk")
        .values("date")[:1]
    )
    ages = Counter()
    for last, fallback in (
        threads.filter(open_now(now))
        .annotate(last_customer=last_customer)
        .values_list("last_customer", "last_message_at")
    ):
        moment = last or fallback or now
        age = (now - moment).total_seconds() / 86400
        for label, bound in BACKLOG_BUCKETS:
            if bound is None or age < bound:
                ages[label] += 1
                break
    report.backlog = [(label, ages[label]) for label, _ in BACKLOG_BUCKETS]

    # Busiest hours: customer messages by weekday and hour, local time.
    for moment in (
        Message.objects.filter(customer_q(), date__gte=since, date__lt=until)
        .filter(thread__in=threads.values("pk"))
        .values_list("date", flat=True)
    ):
        local = timezone.localtime(moment, tz)
        report.hours[local.weekday()][local.hour] += 1
    return report


def latest_customer_message(*, mailbox_ids: list[int], person_id: int | None = None):
    """When the newest customer message of these mailboxes came (None: never), so an empty
    range can point at the days that have mail. One query."""
    threads = Thread.objects.filter(mailbox_id__in=mailbox_ids)
    if person_id:
        threads = threads.filter(assignee_id=person_id)
    return (
        Message.objects.filter(customer_q(), thread__in=threads.values("pk"))
        .order_by("-date")
        .values_list("date", flat=True)
        .first()
    )


def format_duration(seconds: float | None) -> str:
    """ "2 h 05 min", "3 d 4 h", "12 min"; an em dash for no value."""
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
