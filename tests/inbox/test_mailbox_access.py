"""A shared mailbox administered from its settings page (docs/product.md §2.7): the admin
gives and takes access, turns tickets and forwarding on; a revoked grant clears the user's
primary choice; every change is audit-logged; bad input saves nothing."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from inbox.models import ExclusionPattern, Mailbox, PrimaryMailbox
from inbox.services import mailbox_access
from tests import factories as f

pytestmark = pytest.mark.django_db


def _settings(client, mailbox) -> str:
    return client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk])).content.decode()


def _access(html: str) -> str:
    return html.split('id="grants"')[1].split("</ul>")[0]


def test_admin_grants_a_teammate_and_a_group_then_revokes(
    client, admin_user, outsider, teammate, shared_mailbox, caplog
):
    group = f.GroupFactory(name="Support team")
    client.force_login(admin_user)
    html = _settings(client, shared_mailbox)
    assert "Tom Teammate" in _access(html) and "Oscar Outsider" not in _access(html)

    caplog.set_level(logging.WARNING, logger="relay.audit")
    grant = reverse("inbox:mailbox_grant", args=[shared_mailbox.pk])
    response = client.post(grant, {"user": outsider.pk, "group": group.pk}, follow=True)
    html = response.content.decode()
    assert "Oscar Outsider and the group Support team can now read support@relay.test" in html
    assert "Oscar Outsider" in _access(html) and "Group: Support team" in _access(html)
    assert set(shared_mailbox.granted_users.all()) == {teammate, outsider}
    assert f"granted to user={outsider.pk} by user={admin_user.pk}" in caplog.text

    # Oscar now reads it: its mail shows in his inbox.
    client.force_login(outsider)
    assert (
        client.get(reverse("inbox:inbox_page") + f"?mailbox={shared_mailbox.pk}").status_code == 200
    )

    client.force_login(admin_user)
    revoke = reverse("inbox:mailbox_revoke", args=[shared_mailbox.pk])
    html = client.post(revoke, {"user": outsider.pk}, follow=True).content.decode()
    assert "Oscar Outsider no longer reads support@relay.test" in html
    assert "Oscar Outsider" not in _access(html)
    client.post(revoke, {"group": group.pk})
    assert not shared_mailbox.granted_groups.exists()
    assert f"revoked from group={group.pk} by user={admin_user.pk}" in caplog.text

    client.force_login(outsider)
    assert (
        client.get(reverse("inbox:inbox_page") + f"?mailbox={shared_mailbox.pk}").status_code == 404
    )


def test_grant_without_anyone_or_a_stranger_saves_nothing(client, admin_user, shared_mailbox):
    client.force_login(admin_user)
    grant = reverse("inbox:mailbox_grant", args=[shared_mailbox.pk])
    response = client.post(grant, {})
    assert response.status_code == 400
    assert "Pick a person or a group." in response.content.decode()
    response = client.post(grant, {"user": 999_999})
    assert response.status_code == 400
    revoke = reverse("inbox:mailbox_revoke", args=[shared_mailbox.pk])
    assert client.post(revoke, {"user": admin_user.pk}).status_code == 404  # not a grantee
    assert [u.username for u in shared_mailbox.granted_users.all()] == ["teammate"]


def test_revoking_a_grant_clears_the_primary_choice_unless_a_group_still_grants_it(
    admin_user, owner, teammate, shared_mailbox, personal_mailbox
):
    group = f.GroupFactory()
    owner.groups.add(group)
    shared_mailbox.granted_users.add(owner)
    shared_mailbox.granted_groups.add(group)
    PrimaryMailbox.objects.update_or_create(user=owner, defaults={"mailbox": shared_mailbox})
    PrimaryMailbox.objects.create(user=teammate, mailbox=shared_mailbox)

    cleared = mailbox_access.mailbox_revoke(user=admin_user, mailbox=shared_mailbox, grantee=owner)
    assert cleared == 0  # Olivia still reads it through her group
    cleared = mailbox_access.mailbox_revoke(
        user=admin_user, mailbox=shared_mailbox, grantee=teammate
    )
    assert cleared == 1
    assert not PrimaryMailbox.objects.filter(user=teammate).exists()
    mailbox_access.mailbox_revoke(user=admin_user, mailbox=shared_mailbox, group=group)
    assert not PrimaryMailbox.objects.filter(user=owner).exists()


def test_revoke_on_the_page_clears_the_primary_choice(client, admin_user, teammate, shared_mailbox):
    PrimaryMailbox.objects.create(user=teammate, mailbox=shared_mailbox)
    client.force_login(admin_user)
    client.post(
        reverse("inbox:mailbox_revoke", args=[shared_mailbox.pk]),
        {"user": teammate.pk},
        follow=True,
    )
    assert not PrimaryMailbox.objects.filter(user=teammate).exists()
    client.force_login(teammate)
    listing = client.get(reverse("inbox:mailbox_list")).content.decode()
    assert "support@relay.test" not in listing


def test_tickets_and_forwarding_saved_and_bad_address_refused(
    client, admin_user, shared_mailbox, caplog
):
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_support", args=[shared_mailbox.pk])
    caplog.set_level(logging.WARNING, logger="relay.audit")
    response = client.post(
        url, {"create_tickets": "on", "forward_unplaced_to": " Team@Relay.test "}, follow=True
    )
    assert "Tickets and forwarding saved." in response.content.decode()
    shared_mailbox.refresh_from_db()
    assert shared_mailbox.create_tickets and shared_mailbox.forward_unplaced_to == "team@relay.test"
    assert "forward_unplaced_to=team@relay.test set by" in caplog.text
    html = _settings(client, shared_mailbox)
    assert 'value="team@relay.test"' in html

    for bad, error in (
        ("not-an-address", "Enter a valid email address"),
        ("support@relay.test", "would loop"),
    ):
        response = client.post(url, {"forward_unplaced_to": bad})
        assert response.status_code == 400
        assert error in response.content.decode()
    shared_mailbox.refresh_from_db()
    assert shared_mailbox.create_tickets and shared_mailbox.forward_unplaced_to == "team@relay.test"

    client.post(url, {"forward_unplaced_to": ""})
    shared_mailbox.refresh_from_db()
    assert not shared_mailbox.create_tickets and shared_mailbox.forward_unplaced_to == ""


def test_services_refuse_non_admins_and_personal_mailboxes(
    owner, teammate, shared_mailbox, personal_mailbox
):
    with pytest.raises(PermissionDenied):
        mailbox_access.mailbox_grant(user=teammate, mailbox=shared_mailbox, grantee=owner)
    with pytest.raises(PermissionDenied):
        mailbox_access.mailbox_revoke(user=teammate, mailbox=shared_mailbox, grantee=teammate)
    with pytest.raises(PermissionDenied):
        mailbox_access.mailbox_update_support(
            user=teammate, mailbox=shared_mailbox, create_tickets=True, forward_unplaced_to=""
        )
    with pytest.raises(ValidationError):
        mailbox_access.mailbox_grant(user=owner, mailbox=personal_mailbox, grantee=teammate)
    assert [u.username for u in shared_mailbox.granted_users.all()] == ["teammate"]
    assert not Mailbox.objects.filter(create_tickets=True).exists()


def test_a_grantee_sees_no_administration(client, teammate, shared_mailbox):
    client.force_login(teammate)
    html = _settings(client, shared_mailbox)
    assert 'id="grants"' not in html and "Give access" not in html
    assert reverse("inbox:mailbox_grant", args=[shared_mailbox.pk]) not in html


# --- exclusion patterns after a dry run on real stored messages ------------------------------


def _stored(mailbox, count: int, sender_of, start=None):
    from django.utils import timezone

    from tests.connector import filingkit

    start = start or timezone.now()
    return [
        filingkit.mail(
            mailbox,
            sender=sender_of(i),
            subject=f"Message {i}",
            date=start - dt.timedelta(minutes=i),
        )
        for i in range(count)
    ]


def _section(html: str) -> str:
    return html.split('id="exclusions"')[1].split("</section>")[0]


def test_dry_run_lists_what_the_last_100_messages_would_lose_then_save(
    client, admin_user, shared_mailbox, personal_mailbox, caplog
):
    # 101 messages in support@: every tenth from a no-reply sender, and the oldest (101st) too.
    _stored(
        shared_mailbox,
        101,
        lambda i: "alerts@noreply.example" if i % 10 == 0 or i == 100 else f"c{i}@client.example",
    )
    # Olivia's personal mail never shows to the admin, even in a dry run.
    _stored(personal_mailbox, 1, lambda i: "private@noreply.example")
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_exclusions", args=[shared_mailbox.pk])
    response = client.post(url, {"action": "dry_run", "pattern": " *@NoReply.example "})
    assert response.status_code == 200
    html = _section(response.content.decode())
    assert "would exclude 10 of the last 100 messages" in html
    assert "Message 0" in html and "Message 90" in html
    assert "Message 100" not in html  # the 101st most recent is not among the last 100
    assert "Message 1<" not in html and "private@" not in html
    assert 'name="checked" value="*@noreply.example"' in html
    assert not ExclusionPattern.objects.exists()  # a dry run saves nothing

    caplog.set_level(logging.WARNING, logger="relay.audit")
    response = client.post(
        url,
        {
            "action": "save",
            "pattern": "*@noreply.example",
            "note": "Monitoring alerts",
            "checked": "*@noreply.example",
        },
        follow=True,
    )
    html = response.content.decode()
    assert "*@noreply.example is excluded from now on, in every mailbox." in html
    assert "<code>*@noreply.example</code>" in _section(html) and "Monitoring alerts" in html
    assert list(ExclusionPattern.objects.values_list("pattern", "note")) == [
        ("*@noreply.example", "Monitoring alerts")
    ]
    assert f"exclusion pattern '*@noreply.example' added by user={admin_user.pk}" in caplog.text


def test_save_without_its_dry_run_only_runs_it(client, admin_user, shared_mailbox):
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_exclusions", args=[shared_mailbox.pk])
    # No dry run, or one of another pattern: the dry run is shown, nothing saved.
    for checked in ("", "*@other.example"):
        response = client.post(
            url, {"action": "save", "pattern": "*.example.org", "checked": checked}
        )
        assert "would exclude 0 of the last 100 messages" in response.content.decode()
    assert not ExclusionPattern.objects.exists()


@pytest.mark.parametrize(
    "pattern,error",
    [
        ("", "This field is required"),
        ("*", "would exclude every sender"),
        ("*@*", "would exclude every sender"),
        ("a b@example.com", "no spaces"),
        ("a@b@example.com", "One @ at most"),
    ],
)
def test_bad_patterns_are_refused_and_nothing_saved(
    client, admin_user, shared_mailbox, pattern, error
):
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_exclusions", args=[shared_mailbox.pk])
    for action in ("dry_run", "save"):
        response = client.post(url, {"action": action, "pattern": pattern, "checked": pattern})
        assert response.status_code == 400
        assert error in response.content.decode()
    assert not ExclusionPattern.objects.exists()


def test_htmx_swaps_the_section_and_remove_works(client, admin_user, shared_mailbox):
    ExclusionPattern.objects.create(pattern="mailer-daemon@*")
    saved = ExclusionPattern.objects.create(pattern="*@spam.example")
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_exclusions", args=[shared_mailbox.pk])
    response = client.post(
        url, {"action": "dry_run", "pattern": "*"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200  # htmx swaps only 2xx: the error shows in place
    assert "would exclude every sender" in _section(response.content.decode())
    response = client.post(
        url, {"action": "remove", "pattern_id": saved.pk}, headers={"HX-Request": "true"}
    )
    html = _section(response.content.decode())
    assert "*@spam.example is no longer excluded." in html
    assert "<code>*@spam.example</code>" not in html and "<code>mailer-daemon@*</code>" in html
    assert client.post(url, {"action": "remove", "pattern_id": saved.pk}).status_code == 404
    assert list(ExclusionPattern.objects.values_list("pattern", flat=True)) == ["mailer-daemon@*"]


def test_a_saved_pattern_keeps_the_next_mail_from_creating_a_contact(
    client, admin_user, shared_mailbox
):
    """The pattern saved on the page is the one filing uses: a sender it matches does not
    become a contact (docs/product.md §4.1 rule 5), another one does."""
    from crm.models import Contact
    from tests.connector import filingkit

    shared_mailbox.create_contacts = True
    shared_mailbox.save()
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_exclusions", args=[shared_mailbox.pk])
    client.post(
        url, {"action": "save", "pattern": "*.alerts.example", "checked": "*.alerts.example"}
    )
    for sender in ("bot@eu.alerts.example", "ana@client.example"):
        raw = (
            f"From: {sender}\r\nTo: support@relay.test\r\nSubject: Hi\r\n"
            f"Message-ID: <{sender}.x@mail.example>\r\n"
            "Date: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\nHello\r\n"
        ).encode()
        filingkit.receive(shared_mailbox, raw)
    emails = set(Contact.objects.values_list("emails__email", flat=True))
    assert "ana@client.example" in emails and "bot@eu.alerts.example" not in emails


# --- Email API senders ------------------------------------------------------------------------


def test_admin_adds_a_sender_sets_a_secret_shown_once_and_removes_it(
    client, admin_user, shared_mailbox, caplog, settings
):
    from django.contrib.auth.hashers import check_password

    from inbox.models import EmailApiSender

    settings.RELAY_AUTHSERV_IDS = ["mx.relay.test"]
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_api_senders", args=[shared_mailbox.pk])
    caplog.set_level(logging.WARNING, logger="relay.audit")
    response = client.post(
        url, {"action": "add", "address": " Forms@Web.Example ", "note": "Web form"}, follow=True
    )
    html = response.content.decode()
    assert "forms@web.example may now send Email API documents." in html
    section = html.split('id="api-senders"')[1].split("</ul>")[0]
    assert "forms@web.example" in section and "Secret: none" in section
    # support@ does not create tickets: the page says the sender cannot work today, and why.
    assert "Does not work" in section and "the mailbox does not create tickets" in section
    sender = EmailApiSender.objects.get(mailbox=shared_mailbox)
    assert f"Email API sender forms@web.example added by user={admin_user.pk}" in caplog.text

    for bad, error in (("forms@", "Enter a valid email address"), ("FORMS@web.example", "already")):
        response = client.post(url, {"action": "add", "address": bad})
        assert response.status_code == 400 and error in response.content.decode()
    assert EmailApiSender.objects.count() == 1

    response = client.post(url, {"action": "secret", "sender_id": sender.pk})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    html = response.content.decode()
    shown = html.split('id="new-secret"', 1)[1].split("</div>", 1)[0]
    assert "forms@web.example" in shown
    secret = shown.split('value="', 1)[1].split('"', 1)[0]
    assert len(secret) >= 32
    sender.refresh_from_db()
    assert check_password(secret, sender.secret_hash) and secret not in sender.secret_hash
    assert secret not in caplog.text
    page = _settings(client, shared_mailbox)  # shown once: never again
    assert secret not in page and "Secret: set" in page and 'id="new-secret"' not in page

    html = client.post(url, {"action": "remove", "sender_id": sender.pk}, follow=True)
    assert "forms@web.example may no longer send" in html.content.decode()
    assert not EmailApiSender.objects.exists()
    assert client.post(url, {"action": "remove", "sender_id": sender.pk}).status_code == 404


def test_a_sender_of_another_mailbox_is_not_found_here(client, admin_user, shared_mailbox):
    from inbox.models import EmailApiSender

    other = f.SharedMailboxFactory(email_address="sales@relay.test")
    theirs = EmailApiSender.objects.create(mailbox=other, address="x@web.example")
    client.force_login(admin_user)
    url = reverse("inbox:mailbox_api_senders", args=[shared_mailbox.pk])
    for action in ("secret", "remove"):
        assert client.post(url, {"action": action, "sender_id": theirs.pk}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.secret_hash == ""


def test_matching_precedence_from_the_page(client, admin_user, shared_mailbox, caplog):
    from inbox.models import MatchingSettings

    client.force_login(admin_user)
    url = reverse("inbox:mailbox_precedence", args=[shared_mailbox.pk])
    html = _settings(client, shared_mailbox)
    assert 'value="contact_first" checked' in html
    caplog.set_level(logging.WARNING, logger="relay.audit")
    html = client.post(url, {"precedence": "lead_first"}, follow=True).content.decode()
    assert "Matching: Lead first (as vtiger), in every mailbox." in html
    assert 'value="lead_first" checked' in html
    assert MatchingSettings.load().precedence == "lead_first"
    assert f"matching precedence set to lead_first by user={admin_user.pk}" in caplog.text
    html = client.post(url, {"precedence": "whatever"}, follow=True).content.decode()
    assert "Pick contact first or lead first." in html
    assert MatchingSettings.load().precedence == "lead_first"
