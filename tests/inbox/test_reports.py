"""The Reports page (docs/product.md §7.11): its figures on conversations with known times,
the same number of queries for 3 and 3,000 conversations, the CSV, and who sees what."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inbox.models import Message, Thread, ThreadEvent
from inbox.selectors.reports import build_report, percentile
from tests import factories as f

pytestmark = pytest.mark.django_db

UTC = dt.UTC
T = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def _msg(thread, when, *, ours=False, **fields):
    fields.setdefault("from_address", "ana@customer.example")
    return f.MessageFactory(
        mailbox=thread.mailbox, thread=thread, date=when, is_outgoing=ours, **fields
    )


def _done(thread, when, actor):
    ThreadEvent.objects.create(
        thread=thread, actor=actor, kind="status", data={"status": "done"}, created_at=when
    )


@pytest.fixture
def known(shared_mailbox, teammate, admin_user):
    """Conversations with known times in the week of Monday 2 March 2026 (UTC)."""
    box = shared_mailbox
    f.StaffEmailFactory(user=teammate, email="tom@relay.test", confirmed_at=T - 30 * D)
    thread = lambda **kw: f.ThreadFactory(mailbox=box, **kw)  # noqa: E731
    # A: answered in 1 h (our sent mail), Done, reopened, Done again at 2 h by Tom.
    a = thread(assignee=teammate, status="done")
    _msg(a, T)
    _msg(a, T + H, ours=True)
    _done(a, T + 1.5 * H, teammate)
    _done(a, T + 2 * H, teammate)
    # B: answered in 3 h from the mailbox's own address, Done at 5 h by Ada.
    b = thread(status="done")
    _msg(b, T + D)
    _msg(b, T + D + 3 * H, from_address="support@relay.test")
    _done(b, T + D + 5 * H, admin_user)
    # C: an out-of-office first (not the customer writing), answered in 10 h by staff mail.
    c = thread(assignee=teammate)
    _msg(c, T + 2 * D - H, is_auto_reply=True)
    _msg(c, T + 2 * D)
    _msg(c, T + 2 * D + 10 * H, from_address="tom@relay.test")
    # D: a snooze that has ended, the customer wrote on Sunday evening; no answer yet.
    d = thread(status="snoozed", snoozed_until=T + 6 * D)
    _msg(d, T + 6 * D + 12 * H)
    # E: asked before the week, answered in it (replied, not received); Waiting.
    e = thread(status="waiting")
    _msg(e, T - 5 * D)
    _msg(e, T + 0.5 * H, ours=True)
    # G: open for weeks; H: still snoozed; a bounce alone is nobody writing.
    g = thread()
    _msg(g, T - 40 * D)
    h = thread(status="snoozed", snoozed_until=T + 8 * D)
    _msg(h, T + 3 * D)
    bounce = thread(status="done")
    _msg(bounce, T + 4 * D, is_bounce=True, from_address="mailer-daemon@customer.example")
    return box


def _report(box, **kw):
    return build_report(
        mailbox_ids=[box.pk],
        start=T.date(),
        end=(T + 6 * D).date(),
        tz=UTC,
        now=T + 7 * D,
        **kw,
    )


def test_percentile_interpolates_as_percentile_cont():
    assert percentile([3600, 10800, 36000], 0.5) == 10800
    assert percentile([3600, 10800, 36000], 0.9) == pytest.approx(30960)
    assert percentile([5], 0.9) == 5
    assert percentile([], 0.5) is None


def test_figures_on_known_conversations(known):
    report = _report(known)
    # Received: A Mon, B Tue, C Wed, H Thu, D Sun (E asked before the range, G long ago).
    assert report.received_total == 5
    assert [report.received[d] for d in report.days] == [1, 1, 1, 1, 0, 0, 1]
    # Replied: A and E on Monday, B Tuesday, C Wednesday.
    assert report.replied_total == 4
    assert [report.replied[d] for d in report.days] == [2, 1, 1, 0, 0, 0, 0]
    # Closed: A (twice, counted once at its last Done) and B.
    assert report.closed_total == 2
    assert [report.closed[d] for d in report.days] == [1, 1, 0, 0, 0, 0, 0]
    assert sorted(report.first_response.values) == [3600, 10800, 36000]
    assert report.first_response.median == 10800
    assert report.first_response.p90 == pytest.approx(30960)
    assert sorted(report.time_to_close.values) == [7200, 18000]
    assert report.time_to_close.median == 12600
    assert report.time_to_close.p90 == pytest.approx(16920)
    # Backlog at Monday 9 March 09:00: D (snooze over, 12 h), C (5 days), G (47 days).
    assert report.backlog == [
        ("< 1 day", 1),
        ("1-3 days", 0),
        ("3-7 days", 1),
        ("7-30 days", 0),
        ("> 30 days", 1),
    ]
    # Customer messages: Mon, Tue, Wed, Thu at 09:00, Sunday 21:00; not the auto-reply.
    assert report.hours[0][9] == report.hours[1][9] == report.hours[2][9] == 1
    assert report.hours[3][9] == 1 and report.hours[6][21] == 1
    assert sum(map(sum, report.hours)) == 5


def test_per_person_is_the_assignee_and_for_closing_who_closed(known, teammate, admin_user):
    tom = _report(known, person_id=teammate.pk)
    assert (tom.received_total, tom.replied_total, tom.closed_total) == (2, 2, 1)
    assert tom.time_to_close.values == [7200]
    assert [count for _, count in tom.backlog] == [0, 0, 1, 0, 0]
    ada = _report(known, person_id=admin_user.pk)
    assert (ada.received_total, ada.closed_total) == (0, 1)
    assert ada.time_to_close.values == [18000]


def test_days_and_hours_follow_the_time_zone(known):
    """Sunday 21:00 UTC is Monday 06:00 in Tokyo: outside the week, and Monday's early hours."""
    tokyo = __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    report = build_report(
        mailbox_ids=[known.pk], start=T.date(), end=(T + 6 * D).date(), tz=tokyo, now=T + 7 * D
    )
    assert report.hours[0][18] == 1  # Monday 09:00 UTC is 18:00 in Tokyo
    assert report.hours[6][21] == 0


def _bulk(box, n: int, teammate) -> None:
    """n conversations, each a customer message, our answer and a Done (bulk_create)."""
    threads = Thread.objects.bulk_create(
        [Thread(mailbox=box, status="done", assignee=teammate) for _ in range(n)]
    )
    messages = []
    for i, t in enumerate(threads):
        when = T + dt.timedelta(minutes=i % 5000)
        for ours, at in ((False, when), (True, when + H)):
            messages.append(
                Message(
                    mailbox=box,
                    thread=t,
                    sha256=f"{t.pk}-{ours}",
                    date=at,
                    is_outgoing=ours,
                    from_address="support@relay.test" if ours else f"c{i}@customer.example",
                )
            )
    Message.objects.bulk_create(messages, batch_size=1000)
    ThreadEvent.objects.bulk_create(
        [
            ThreadEvent(
                thread=t,
                actor=teammate,
                kind="status",
                data={"status": "done"},
                created_at=T + 2 * H,
            )
            for t in threads
        ],
        batch_size=1000,
    )


@pytest.mark.parametrize("person", [False, True])
def test_query_count_is_the_same_for_3_and_3000_conversations(shared_mailbox, teammate, person):
    counts = []
    for n in (3, 2997):
        _bulk(shared_mailbox, n, teammate)
        with CaptureQueriesContext(connection) as queries:
            report = _report(shared_mailbox, person_id=teammate.pk if person else None)
        counts.append(len(queries))
        assert report.received_total == Thread.objects.count()
        assert report.closed_total == Thread.objects.count()
        assert report.first_response.median == 3600
    assert counts[0] == counts[1] == 5


def test_page_query_count_is_the_same_for_3_and_3000(client, shared_mailbox, teammate):
    client.force_login(teammate)
    url = reverse("inbox:reports") + f"?range=custom&start={T.date()}&end={(T + 6 * D).date()}"
    counts = []
    for n in (3, 2997):
        _bulk(shared_mailbox, n, teammate)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def _csv(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_csv_has_the_same_figures(client, known, teammate):
    client.force_login(teammate)
    query = f"?mailbox={known.pk}&range=custom&start={T.date()}&end={(T + 6 * D).date()}"
    rows = _csv(client.get(reverse("inbox:reports_csv") + query))
    assert ["day", "2026-03-02", "1", "2", "1"] in rows
    assert ["day", "2026-03-08", "1", "0", "0"] in rows
    assert ["total", "", "5", "4", "2"] in rows
    assert ["duration", "First response", "3", "10800", "30960"] in rows
    assert ["duration", "Time to close", "2", "12600", "16920"] in rows
    hours = {row[1]: row[2:] for row in rows if row and row[0] == "hours"}
    assert hours["Mon"][9] == "1" and hours["Sun"][21] == "1"
    assert len([r for r in rows if r and r[0] == "backlog"]) == 5
    page = client.get(reverse("inbox:reports") + query).content.decode()
    assert 'data-figure="received">5<' in page
    assert "3 h 00 min" in page  # the median first response
    assert 'role="img"' in page and "<svg" in page
    # The bars carry their numbers: Monday's received, replied and closed, and the backlog.
    assert "<title>02 Mar: 1</title>" in page and "<title>02 Mar: 2</title>" in page
    # C, D, G, and H whose snooze has ended since: months old by now.
    assert "<title>&gt; 30 days: 4</title>" in page
    assert "<title>Sun 21:00: 1</title>" in page


def test_outsider_sees_nothing_of_a_mailbox_they_cannot_read(client, known, outsider, owner):
    for user in (outsider, owner):
        client.force_login(user)
        for name in ("inbox:reports", "inbox:reports_csv"):
            assert client.get(reverse(name) + f"?mailbox={known.pk}").status_code == 404
            assert client.get(reverse(name) + "?mailbox=999999").status_code == 404
            assert client.get(reverse(name) + "?mailbox=x").status_code == 404
        # "All my mailboxes" covers only theirs: nothing of support@.
        query = f"?range=custom&start={T.date()}&end={(T + 6 * D).date()}"
        rows = _csv(client.get(reverse("inbox:reports_csv") + query))
        assert ["total", "", "0", "0", "0"] in rows


def test_all_my_mailboxes_adds_up_readable_ones(client, known, teammate):
    other = f.SharedMailboxFactory(email_address="sales@relay.test")
    other.granted_users.add(teammate)
    t = f.ThreadFactory(mailbox=other)
    _msg(t, T + 2 * H)
    client.force_login(teammate)
    query = f"?range=custom&start={T.date()}&end={(T + 6 * D).date()}"
    rows = _csv(client.get(reverse("inbox:reports_csv") + query))
    assert ["total", "", "6", "4", "2"] in rows
    html = client.get(reverse("inbox:reports")).content.decode()
    assert "sales@relay.test" in html and "All my mailboxes" in html
    assert timezone.localdate().strftime("%Y-%m-%d") in html  # the default: last 30 days


def test_an_empty_range_points_at_the_days_with_mail(client, known, teammate):
    """Mail from March, a report of the last 30 days: the page says so and links to the 90
    days up to the newest customer message (Sunday 8 March)."""
    client.force_login(teammate)
    html = client.get(reverse("inbox:reports") + f"?mailbox={known.pk}").content.decode()
    assert "The newest customer message is from 8 Mar 2026" in html
    assert "range=custom&amp;start=2025-12-09&amp;end=2026-03-08" in html
    response = client.get(
        reverse("inbox:reports")
        + f"?mailbox={known.pk}&range=custom&start=2025-12-09&end=2026-03-08"
    )
    assert 'data-figure="received">7<' in response.content.decode()  # with E and G
    assert "reports-earlier" not in response.content.decode()
