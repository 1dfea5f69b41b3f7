"""A shared mailbox administered from its settings page (docs/product.md §2.7): the admin
gives and takes access, turns tickets and forwarding on; a revoked grant clears the user's
primary choice; every change is audit-logged; bad input saves nothing."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from inbox.models import Mailbox, PrimaryMailbox
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
