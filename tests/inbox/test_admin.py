"""The admin site: shared mailboxes with grants; secrets write-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from inbox.models import Mailbox
from tests import factories as f
from tests.inbox.test_mailboxes import CANARY, raw_column


def mailbox_form(**overrides):
    data = {
        "kind": "shared",
        "owner": "",
        "email_address": "Support@Relay.test",
        "display_name": "Support",
        "connection_type": "imap",
        "login": "",
        "new_password": CANARY,
        "imap_host": "imap.relay.test",
        "imap_port": "993",
        "imap_security": "ssl",
        "smtp_host": "smtp.relay.test",
        "smtp_port": "465",
        "smtp_security": "ssl",
        "active_folders": '["INBOX", "Sent"]',
        "sync_from": "2026-01-01",
        "refresh_interval": "300",
        "forward_unplaced_to": "",
        "signature": "-- \nThe support team",
        "privacy": "full",
        "folders-TOTAL_FORMS": "0",
        "folders-INITIAL_FORMS": "0",
        "folders-MIN_NUM_FORMS": "0",
        "folders-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_admin_creates_shared_mailbox_with_grants(client, admin_user, teammate):
    group = f.GroupFactory(name="Support team")
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:inbox_mailbox_add"),
        mailbox_form(granted_users=[teammate.pk], granted_groups=[group.pk]),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    mailbox = Mailbox.objects.get()
    assert mailbox.email_address == "support@relay.test"
    assert list(mailbox.granted_users.all()) == [teammate]
    assert list(mailbox.granted_groups.all()) == [group]
    assert CANARY not in raw_column(mailbox.pk)
    assert mailbox.password.reveal() == CANARY

    page = client.get(reverse("admin:inbox_mailbox_change", args=[mailbox.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert CANARY not in body and raw_column(mailbox.pk) not in body

    # Saving again with the password left empty keeps it.
    response = client.post(
        reverse("admin:inbox_mailbox_change", args=[mailbox.pk]),
        mailbox_form(new_password="", granted_users=[teammate.pk]),
    )
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.password.reveal() == CANARY


@pytest.mark.django_db
def test_admin_refuses_a_shared_mailbox_with_an_owner(client, admin_user, owner):
    client.force_login(admin_user)
    response = client.post(reverse("admin:inbox_mailbox_add"), mailbox_form(owner=owner.pk))
    assert response.status_code == 200
    assert "A shared mailbox has no owner" in response.content.decode()
    assert not Mailbox.objects.exists()


@pytest.mark.django_db
def test_admin_refuses_a_bad_address(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:inbox_mailbox_add"), mailbox_form(email_address="not an address")
    )
    assert response.status_code == 200
    assert "is not an email address" in response.content.decode()
    assert not Mailbox.objects.exists()
