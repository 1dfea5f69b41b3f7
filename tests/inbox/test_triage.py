"""Triage (docs/product.md §4.7): newest mail first with its snippet and To line, Dismiss,
"always ignore this sender/domain" after its dry run, and a refused bulk action that keeps
what was ticked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inbox.models import ExclusionPattern, Filing, TriageEntry
from tests import factories as f
from tests.inbox import mailkit

pytestmark = pytest.mark.django_db


@pytest.fixture
def support(shared_mailbox, admin_user):
    shared_mailbox.granted_users.add(admin_user)
    return mailkit.folders(shared_mailbox)


@pytest.fixture
def ada(client, admin_user):
    client.force_login(admin_user)
    return client


def _entry(folder, **fields):
    (message,) = mailkit.conversation(folder, **fields)
    f.TriageEntryFactory(message=message, reason="unfiled")
    return message


def _open(message) -> bool:
    return TriageEntry.objects.filter(message=message, resolved_at=None).exists()


def test_newest_mail_first_with_snippet_and_to_line(ada, support):
    old = _entry(support["inbox"], subject="Older question", day=1, to="billing@relay.test")
    new = _entry(support["inbox"], subject="Newer question", day=9)
    # The older message reached triage last (re-filed later): the list still goes by the mail.
    TriageEntry.objects.filter(message=old).update(created_at=new.date)
    html = ada.get(reverse("inbox:triage")).content.decode()
    assert html.index("Newer question") < html.index("Older question")
    assert new.snippet in html
    assert "To billing@relay.test" in html
    assert "To support@relay.test" in html


def test_triage_page_queries_do_not_grow_with_rows(ada, support):
    for _ in range(2):
        _entry(support["inbox"])
    url = reverse("inbox:triage")
    ada.get(url)
    with CaptureQueriesContext(connection) as few:
        ada.get(url)
    for _ in range(8):
        _entry(support["inbox"])
    with CaptureQueriesContext(connection) as many:
        ada.get(url)
    assert len(many) == len(few)


def test_dismiss_one_or_the_ticked_ones(teammate, client, support):
    client.force_login(teammate)
    one = _entry(support["inbox"], subject="Newsletter one")
    two = _entry(support["inbox"], subject="Newsletter two")
    three = _entry(support["inbox"], subject="Real question")
    html = client.get(reverse("inbox:triage")).content.decode()
    assert f'name="only" value="{one.pk}"' in html
    # Teammates may dismiss, but ignoring a sender is for the mailbox's administrators.
    assert "Always ignore" not in html

    response = client.post(reverse("inbox:triage_dismiss"), {"only": one.pk, "message": [three.pk]})
    assert response.status_code == 302
    assert not _open(one) and _open(two) and _open(three)

    response = client.post(reverse("inbox:triage_dismiss"), {"message": [two.pk]}, follow=True)
    assert "Dismissed 1 message" in response.content.decode()
    assert not _open(two) and _open(three)
    assert not Filing.objects.exists()  # dismissed mail stays unfiled


def test_a_refused_bulk_action_keeps_the_ticked_messages(ada, support):
    one = _entry(support["inbox"], subject="First")
    two = _entry(support["inbox"], subject="Second")
    response = ada.post(reverse("inbox:triage_qualify"), {"message": [one.pk, two.pk], "q": "acme"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Pick the record" in html
    assert f'value="{one.pk}" id="t-' in html
    for message in (one, two):
        assert f'value="{message.pk}" id="t-{message.triage_entries.get().pk}" checked' in html
    assert 'value="acme"' in html  # the search typed is still there
    assert _open(one) and _open(two)


def test_always_ignore_shows_its_dry_run_before_saving(ada, support):
    spam = _entry(support["inbox"], subject="Buy now", sender="deals@promo.example")
    again = _entry(support["inbox"], subject="Buy more", sender="offers@promo.example")
    keep = _entry(support["inbox"], subject="Help", sender="ana@customer.example")
    html = ada.get(reverse("inbox:triage")).content.decode()
    url = reverse("inbox:triage_ignore", args=[spam.pk])
    assert f'href="{url}"' in html

    page = ada.get(url).content.decode()
    assert "This sender, deals@promo.example" in page and "Everyone at promo.example" in page

    # Saving without a dry run of that very pattern only shows the dry run.
    response = ada.post(url, {"pattern": "promo.example"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "would have excluded 2 of the last 100 messages" in page
    assert "2 messages in triage would leave it now" in page
    assert not ExclusionPattern.objects.exists()

    response = ada.post(url, {"pattern": "promo.example", "checked": "promo.example"}, follow=True)
    assert "promo.example is ignored from now on" in response.content.decode()
    assert ExclusionPattern.objects.filter(pattern="promo.example").exists()
    assert not _open(spam) and not _open(again) and _open(keep)


def test_always_ignore_never_offers_a_free_mail_domain_nor_a_made_up_pattern(ada, support):
    message = _entry(support["inbox"], sender="someone@gmail.com")
    url = reverse("inbox:triage_ignore", args=[message.pk])
    page = ada.get(url).content.decode()
    assert "someone@gmail.com" in page and "Everyone at gmail.com" not in page
    response = ada.post(url, {"pattern": "*", "checked": "*"})
    assert response.status_code == 400
    assert "Pick the sender" in response.content.decode()
    assert not ExclusionPattern.objects.exists()


@pytest.mark.parametrize("persona", ["teammate", "outsider", "owner"])
def test_always_ignore_is_the_same_404_for_everyone_but_the_mailbox_administrators(
    client, request, support, persona
):
    message = _entry(support["inbox"], sender="deals@promo.example")
    client.force_login(request.getfixturevalue(persona))
    url = reverse("inbox:triage_ignore", args=[message.pk])
    assert client.get(url).status_code == 404
    data = {"pattern": "promo.example", "checked": "promo.example"}
    assert client.post(url, data).status_code == 404
    assert not ExclusionPattern.objects.exists() and _open(message)


def test_always_ignore_is_not_offered_on_a_personal_mailbox(client, owner, personal_mailbox):
    folders = mailkit.folders(personal_mailbox)
    message = _entry(folders["inbox"], sender="deals@promo.example")
    client.force_login(owner)
    assert "Always ignore" not in client.get(reverse("inbox:triage")).content.decode()
    assert client.get(reverse("inbox:triage_ignore", args=[message.pk])).status_code == 404
