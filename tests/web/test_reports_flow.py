"""The Reports page in headless Chromium (docs/product.md §7.11): the charts and their tables
for a month of a support inbox, the filters, the CSV download; on a laptop (1440x900) and a
phone (390x844). Every step saves a screenshot (to RELAY_SCREENSHOTS when it is set) and the
console must show no CSP violation."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inbox.models import ThreadEvent
from tests import factories as f
from tests.web.helpers import csp_violations, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def shots(shots) -> str:
    """The shared screenshot folder (tests/web/conftest.py), in a folder of its own."""
    folder = Path(shots) / "reports"
    folder.mkdir(exist_ok=True)
    return str(folder)


@pytest.fixture
def month():
    """Tom and Sofia's support@: 60 conversations over the last 30 days, most answered within
    hours, most of the older ones closed, a few still open."""
    tom = f.UserFactory(username="tom", first_name="Tom", last_name="Teammate")
    sofia = f.UserFactory(username="sofia", first_name="Sofia", last_name="Silva")
    box = f.SharedMailboxFactory(email_address="support@relay.test", display_name="Support")
    box.granted_users.add(tom, sofia)
    now = timezone.now()
    # Two a day on each of the last 30 local days, at a time of day no later than now's: an
    # hour subtracted from just after midnight would move a conversation to a day outside.
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    for i in range(60):
        person = (tom, sofia)[i % 2]
        asked = today - dt.timedelta(days=i // 2) + (now - today) * (((i * 7) % 11) / 11)
        thread = f.ThreadFactory(mailbox=box, assignee=person, status="done" if i % 4 else "open")
        f.MessageFactory(
            mailbox=box, thread=thread, date=asked, from_address=f"c{i}@customer.example"
        )
        if i % 5:
            f.MessageFactory(
                mailbox=box,
                thread=thread,
                date=asked + dt.timedelta(minutes=20 + 37 * (i % 9)),
                is_outgoing=True,
                from_address="support@relay.test",
            )
        if i % 4:
            ThreadEvent.objects.create(
                thread=thread,
                actor=person,
                kind="status",
                data={"status": "done"},
                created_at=min(now, asked + dt.timedelta(hours=2 + i % 30)),
            )
    return {"tom": tom, "box": box}


def _sign_in(page, live_server):
    sign_in(page, live_server, "tom", "/inbox/reports/")
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()


def test_reports_on_a_laptop(page, live_server, shots, console_messages, month):
    page.set_viewport_size(LAPTOP)
    _sign_in(page, live_server)
    expect(page.get_by_role("link", name="Reports")).to_have_class("nav-link active")
    expect(page.locator('[data-figure="received"]')).to_have_text("60")
    per_day = page.get_by_role("img", name="Conversations per day")
    expect(per_day).to_be_visible()
    assert per_day.bounding_box()["width"] > 900
    expect(page.get_by_role("img", name="Customer messages by weekday and hour")).to_be_visible()
    expect(page.get_by_role("img", name="Open conversations by age")).to_be_visible()
    expect(page.locator("#table-durations")).to_contain_text("First response")
    shot(page, shots, "laptop-30-days.png")

    page.locator("summary", has_text="The numbers per day").click()
    expect(page.locator("#table-per-day tfoot")).to_contain_text("60")
    shot(page, shots, "laptop-table.png")

    page.get_by_label("Dates").select_option("7")
    page.get_by_label("Person").select_option(label="Tom Teammate")
    page.get_by_role("button", name="Show").click()
    expect(page.locator('[data-figure="received"]')).to_have_text("7")
    shot(page, shots, "laptop-7-days-tom.png")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == ["section", "key", "received", "replied", "closed"]
    assert [r for r in rows if r and r[0] == "total"][0][2] == "7"
    assert csp_violations(console_messages) == []


def test_reports_on_a_phone(page, live_server, shots, console_messages, month):
    page.set_viewport_size(PHONE)
    _sign_in(page, live_server)
    per_day = page.get_by_role("img", name="Conversations per day")
    expect(per_day).to_be_visible()
    # The bars keep readable labels: they scroll sideways in their own box, not the page.
    assert per_day.bounding_box()["width"] > PHONE["width"]
    assert page.locator(".reports-chart-wide").bounding_box()["width"] < PHONE["width"]
    shot(page, shots, "phone.png")
    # The page itself is no wider than the screen.
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > 391)"
        ".map(e => e.tagName + '.' + e.className).slice(0, 8)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], wide
    assert csp_violations(console_messages) == []
