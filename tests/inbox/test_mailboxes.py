"""Mailboxes: kinds, grants, primary, and credentials encrypted at rest."""

from __future__ import annotations

import io
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from inbox.crypto import SecretUnreadable
from inbox.models import Mailbox, PrimaryMailbox
from inbox.permissions import readable_mailboxes
from inbox.services.mailboxes import mailbox_set_primary, mailboxes_for_user
from tests import factories as f

CANARY = "canary-P4ssw0rd-7f3a91"


def raw_column(mailbox_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM inbox_mailbox WHERE id = %s", [mailbox_id])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_password_is_encrypted_at_rest_and_never_printed(owner, caplog):
    mailbox = f.MailboxFactory(owner=owner, password=CANARY)
    stored = raw_column(mailbox.pk)
    assert CANARY not in stored and stored.startswith("gAAAA")
    mailbox.refresh_from_db()
    assert mailbox.password.reveal() == CANARY
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("relay").info("mailbox %s password %s", mailbox, mailbox.password)
    assert CANARY not in caplog.text
    assert CANARY not in repr(mailbox.password) and CANARY not in str(mailbox.password)


@pytest.mark.django_db
def test_rotation_reencrypts_every_secret_and_old_key_can_go(owner, settings):
    old_key = settings.RELAY_ENCRYPTION_KEYS[0]
    mailboxes = [f.MailboxFactory(owner=owner, password=f"{CANARY}-{i}") for i in range(5)]
    before = {m.pk: raw_column(m.pk) for m in mailboxes}

    new_key = Fernet.generate_key().decode()
    settings.RELAY_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "Re-encrypted 5 secrets; 0 could not be decrypted." in out.getvalue()

    settings.RELAY_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    for i, mailbox in enumerate(mailboxes):
        assert raw_column(mailbox.pk) != before[mailbox.pk]
        mailbox.refresh_from_db()
        assert mailbox.password.reveal() == f"{CANARY}-{i}"


@pytest.mark.django_db
def test_wrong_key_refuses_clearly_and_overwrites_nothing(owner, settings):
    mailbox = f.MailboxFactory(owner=owner, password=CANARY)
    stored = raw_column(mailbox.pk)
    settings.RELAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    mailbox.refresh_from_db()
    with pytest.raises(SecretUnreadable, match="cannot be decrypted"):
        mailbox.password.reveal()
    with pytest.raises(CommandError):
        call_command("rotate_encryption_keys", stdout=io.StringIO(), stderr=io.StringIO())
    assert raw_column(mailbox.pk) == stored


@pytest.mark.django_db
def test_secret_key_rotation_does_not_touch_mail_credentials(owner, settings):
    mailbox = f.MailboxFactory(owner=owner, password=CANARY)
    settings.SECRET_KEY = "a-completely-different-django-secret-key-" + "x" * 30
    mailbox.refresh_from_db()
    assert mailbox.password.reveal() == CANARY


@pytest.mark.django_db
def test_personal_needs_owner_and_shared_has_none(owner):
    with pytest.raises(ValidationError):
        Mailbox(kind=Mailbox.Kind.PERSONAL, email_address="a@relay.test").full_clean()
    with pytest.raises(ValidationError):
        Mailbox(kind=Mailbox.Kind.SHARED, owner=owner, email_address="a@relay.test").full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        Mailbox.objects.create(kind=Mailbox.Kind.SHARED, owner=owner, email_address="x@relay.test")


@pytest.mark.django_db
def test_address_is_normalised_on_clean(owner):
    mailbox = Mailbox(kind=Mailbox.Kind.PERSONAL, owner=owner, email_address=" Ana@Exämple.COM ")
    mailbox.full_clean()
    assert mailbox.email_address == "ana@xn--exmple-cua.com"


@pytest.mark.django_db
def test_grants_through_users_and_groups(owner, teammate, outsider, admin_user):
    personal = f.MailboxFactory(owner=owner)
    shared = f.SharedMailboxFactory()
    group = f.GroupFactory()
    group.user_set.add(outsider)
    shared.granted_groups.add(group)
    shared.granted_users.add(teammate)

    assert set(readable_mailboxes(owner)) == {personal}
    assert set(readable_mailboxes(teammate)) == {shared}
    assert set(readable_mailboxes(outsider)) == {shared}
    # Admins manage mailboxes but do not read personal mail they were not granted.
    assert set(readable_mailboxes(admin_user)) == set()

    group.user_set.remove(outsider)
    assert set(readable_mailboxes(outsider)) == set()


@pytest.mark.django_db
def test_one_primary_per_user_and_it_comes_first(owner):
    first = f.MailboxFactory(owner=owner, email_address="a@relay.test")
    second = f.MailboxFactory(owner=owner, email_address="b@relay.test")
    shared = f.SharedMailboxFactory(email_address="0-support@relay.test")
    shared.granted_users.add(owner)

    mailbox_set_primary(user=owner, mailbox=second)
    assert [m.pk for m in mailboxes_for_user(user=owner)][0] == second.pk
    mailbox_set_primary(user=owner, mailbox=shared)
    assert PrimaryMailbox.objects.filter(user=owner).count() == 1
    assert mailboxes_for_user(user=owner)[0] == shared
    with pytest.raises(IntegrityError), transaction.atomic():
        PrimaryMailbox.objects.create(user=owner, mailbox=first)


@pytest.mark.django_db
def test_cannot_make_someone_elses_mailbox_primary(owner, outsider):
    mailbox = f.MailboxFactory(owner=owner)
    with pytest.raises(ValidationError):
        mailbox_set_primary(user=outsider, mailbox=mailbox)
    assert not PrimaryMailbox.objects.exists()
