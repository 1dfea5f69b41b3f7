"""The hostile corpus through the Inbox's own views: the conversation list with search
results (subjects, sender names, snippets, folder names in the sidebar) and the
conversation page (each payload of its markup on a page of its own, each body in the page's
sandboxed frame). Same beacon, same figures as tests/web/test_xss_corpus.py: 0 executions,
0 remote requests (docs/reliability.md X-08, §8.3)."""

from __future__ import annotations

import pytest

from inbox.models import Folder, Message, Thread, UserPreferences
from tests import factories as f
from tests.web.helpers import sign_in
from tests.web.test_xss_corpus import (  # noqa: F401  (beacon is a fixture)
    CORPUS,
    DRAIN,
    InFlight,
    beacon,
    make_messages,
    open_pages,
    remote_requests,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_search_results_and_conversations_run_nothing(
    page,
    live_server,
    beacon,  # noqa: F811  (the fixture imported above)
    owner,
    personal_mailbox,
):
    messages = make_messages(owner, personal_mailbox, beacon.url, CORPUS)
    inbox = f.FolderFactory(mailbox=personal_mailbox, name="INBOX", special_use="inbox")
    for message in messages.values():
        thread = Thread.objects.create(
            mailbox=personal_mailbox,
            subject=message.subject[:500],
            message_count=1,
            last_message_at=message.date,
        )
        Message.objects.filter(pk=message.pk).update(thread=thread)
        f.LocationFactory(message=message, folder=inbox)
    assert Folder.objects.filter(mailbox=personal_mailbox).count() > 5  # hostile names too
    UserPreferences.objects.update_or_create(user=owner, defaults={"emails_per_page": 200})

    sign_in(page, live_server, owner.get_username())
    elsewhere = remote_requests(page, live_server)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    beacon.reset()
    in_flight = InFlight(page.context)

    # Search results: every message matches its sender's address.
    page.goto(f"{live_server.url}/inbox/?q=x%40sender.example", wait_until="load")
    # Every message matched the search and is listed (the payloads sit in those rows).
    assert page.locator("li.inbox-thread").count() == len(CORPUS)
    page.evaluate(DRAIN)
    in_flight.wait_until_none(page)
    # Each conversation page shows the list beside it: the rows were all seen above, so five
    # of them here, not the 200 (137 pages x 137 rows cost ~190 s of CPU).
    UserPreferences.objects.filter(user=owner).update(emails_per_page=5)
    open_pages(page, live_server.url, messages, lambda m: f"/inbox/conversations/{m.pk}/")

    seen = beacon.by_id()
    print(
        f"\ninbox views: {len(seen['x'])} executions, {len(seen['r'])} remote loads, "
        f"{len(elsewhere)} requests off our origin over {len(CORPUS)} messages"
    )
    assert seen["x"] == set() and seen["r"] == set()
    assert elsewhere == [] and dialogs == []
