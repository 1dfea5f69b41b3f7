"""Reports: how a team's mailboxes are doing (docs/product.md §7.11), as a page of charts with
their tables and as CSV. Only mailboxes the user may read; asking for another answers the
same 404 as a mailbox that does not exist."""

from __future__ import annotations

import csv
import datetime as dt

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from inbox import charts
from inbox.models import Mailbox
from inbox.permissions import get_mailbox_or_404, readable_mailboxes
from inbox.selectors.reports import (
    WEEKDAYS,
    Report,
    build_report,
    format_duration,
    latest_customer_message,
)

PRESETS = [("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days")]
MAX_DAYS = 366


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _filters(request) -> dict:
    """The mailboxes, person and days asked for, checked."""
    mailboxes = list(readable_mailboxes(request.user).order_by("email_address"))
    chosen = request.GET.get("mailbox", "")
    if chosen:
        if not chosen.isdigit():
            chosen = "0"
        selected = [get_mailbox_or_404(request.user, int(chosen))]
    else:
        selected = mailboxes
    ids = [m.pk for m in selected]
    people = list(
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(personal_mailboxes__in=ids, personal_mailboxes__kind=Mailbox.Kind.PERSONAL)
            | Q(granted_mailboxes__in=ids)
            | Q(groups__granted_mailboxes__in=ids)
        )
        .distinct()
        .order_by("first_name", "last_name", "username")
    )
    person = request.GET.get("person", "")
    person_id = int(person) if person.isdigit() and int(person) in {p.pk for p in people} else None

    today = timezone.localdate()
    preset = request.GET.get("range", "30")
    start, end = _date(request.GET.get("start")), _date(request.GET.get("end"))
    if preset == "custom" and start and end:
        start, end = min(start, end), max(start, end)
        start = max(start, end - dt.timedelta(days=MAX_DAYS - 1))
    else:
        preset = preset if preset in dict(PRESETS) else "30"
        end, start = today, today - dt.timedelta(days=int(preset) - 1)
    return {
        "mailboxes": mailboxes,
        "chosen": chosen,
        "selected": selected,
        "ids": ids,
        "people": people,
        "person_id": person_id,
        "preset": preset,
        "start": start,
        "end": end,
    }


def _filtered_report(request) -> tuple[dict, Report]:
    """The filters the request asks for (404 for a mailbox it may not read) and their report:
    the page and the CSV show the same figures."""
    filters = _filters(request)
    report = build_report(
        mailbox_ids=filters["ids"],
        start=filters["start"],
        end=filters["end"],
        person_id=filters["person_id"],
    )
    return filters, report


@require_GET
def reports_page(request):
    filters, report = _filtered_report(request)
    short = "%d %b"
    day_labels = [d.strftime(short) for d in report.days]
    per_day = charts.grouped_bars(
        label=(
            f"Conversations per day from {report.start:%d %b %Y} to {report.end:%d %b %Y}: "
            f"{report.received_total} received, {report.replied_total} replied, "
            f"{report.closed_total} closed"
        ),
        categories=day_labels,
        series=[
            ("Received", [report.received[d] for d in report.days]),
            ("Replied", [report.replied[d] for d in report.days]),
            ("Closed", [report.closed[d] for d in report.days]),
        ],
        width=1080,
        height=280,
        tick_every=max(1, len(report.days) // 10),
    )
    backlog = charts.grouped_bars(
        label="Open conversations by age of the last customer message: "
        + ", ".join(f"{label} {count}" for label, count in report.backlog),
        categories=[label for label, _ in report.backlog],
        series=[("Open", [count for _, count in report.backlog])],
        width=480,
        height=200,
    )
    hours = charts.heat_grid(
        label="Customer messages by weekday and hour of day", rows=WEEKDAYS, grid=report.hours
    )
    query = request.GET.copy()
    query.pop("format", None)
    earlier = None
    if not report.received_total:
        # Nothing came in these days: offer the 90 days up to the newest customer message.
        latest = latest_customer_message(mailbox_ids=filters["ids"], person_id=filters["person_id"])
        if latest is not None and timezone.localdate(latest) < filters["start"]:
            last = timezone.localdate(latest)
            older = query.copy()
            older["range"] = "custom"
            older["start"] = (last - dt.timedelta(days=89)).isoformat()
            older["end"] = last.isoformat()
            earlier = {"date": last, "url": reverse("inbox:reports") + "?" + older.urlencode()}
    return render(
        request,
        "inbox/reports.html",
        {
            **filters,
            "presets": PRESETS,
            "report": report,
            "charts": {"per_day": per_day, "backlog": backlog, "hours": hours},
            "durations": _durations(report),
            "earlier": earlier,
            "csv_url": reverse("inbox:reports_csv") + ("?" + query.urlencode() if query else ""),
            "hour_rows": list(zip(WEEKDAYS, report.hours, strict=True)),
            "hour_totals": report.per_hour,
        },
    )


def _durations(report) -> list[dict]:
    return [
        {
            "name": name,
            "count": d.count,
            "median": format_duration(d.median),
            "p90": format_duration(d.p90),
            "median_s": d.median,
            "p90_s": d.p90,
        }
        for name, d in (
            ("First response", report.first_response),
            ("Time to close", report.time_to_close),
        )
    ]


@require_GET
def reports_csv(request):
    """The page's figures as one CSV: a section column says which figure each row is of."""
    filters, report = _filtered_report(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="relay-report-{report.start}-{report.end}.csv"'
    )
    out = csv.writer(response)
    out.writerow(["section", "key", "received", "replied", "closed"])
    for d, received, replied, closed in report.per_day:
        out.writerow(["day", d.isoformat(), received, replied, closed])
    out.writerow(["total", "", report.received_total, report.replied_total, report.closed_total])
    out.writerow([])
    out.writerow(["section", "key", "conversations", "median_seconds", "p90_seconds"])
    for row in _durations(report):
        out.writerow(
            [
                "duration",
                row["name"],
                row["count"],
                "" if row["median_s"] is None else round(row["median_s"]),
                "" if row["p90_s"] is None else round(row["p90_s"]),
            ]
        )
    out.writerow([])
    out.writerow(["section", "key", "open_conversations"])
    for label, count in report.backlog:
        out.writerow(["backlog", label, count])
    out.writerow([])
    out.writerow(["section", "weekday", *[f"{h:02d}" for h in range(24)]])
    for name, row in zip(WEEKDAYS, report.hours, strict=True):
        out.writerow(["hours", name, *row])
    return response
