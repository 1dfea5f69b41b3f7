"""The admin site: shared mailboxes with grants; secrets write-only."""

from __future__ import annotations

import base64
import json

import pytest
from django.urls import reverse

from connector.outbound import outbox
from connector.sync import mailbox as sync
from inbox.models import EmailApiRequest, Mailbox, PrimaryMailbox
from inbox.services.composing import outbox_compose
from tests import factories as f
from tests.connector.synckit import make_mailbox
from tests.inbox import mailkit
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
    # Its creator reads it too (docs/product.md §2.7).
    assert set(mailbox.granted_users.all()) == {teammate, admin_user}
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
    assert list(mailbox.granted_users.all()) == [teammate]


@pytest.mark.django_db
def test_admin_revoking_a_grant_clears_that_users_primary_choice(
    client, admin_user, teammate, owner, shared_mailbox
):
    """docs/product.md §2.7 item 2: a revoked grant also clears the user's primary choice; one who
    still reads it through a group keeps it."""
    group = f.GroupFactory(name="Support team")
    owner.groups.add(group)
    shared_mailbox.granted_groups.add(group)
    PrimaryMailbox.objects.create(user=teammate, mailbox=shared_mailbox)
    PrimaryMailbox.objects.create(user=owner, mailbox=shared_mailbox)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:inbox_mailbox_change", args=[shared_mailbox.pk]),
        change_form(shared_mailbox, granted_groups=[group.pk]),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not shared_mailbox.granted_users.exists()
    assert list(PrimaryMailbox.objects.values_list("user__username", flat=True)) == ["owner"]


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


# --- an admin cannot redirect a personal mailbox to collect its password (docs/reliability.md C-21)


def change_form(mailbox, **overrides):
    """The admin's change form for `mailbox` as the browser would post it back unchanged, then
    `overrides` (fields the admin shows read-only are simply ignored by Django)."""
    data = {
        "kind": mailbox.kind,
        "owner": mailbox.owner_id or "",
        "email_address": mailbox.email_address,
        "display_name": mailbox.display_name,
        "connection_type": mailbox.connection_type,
        "login": mailbox.login,
        "new_password": "",
        "imap_host": mailbox.imap_host,
        "imap_port": str(mailbox.imap_port),
        "imap_security": mailbox.imap_security,
        "smtp_host": mailbox.smtp_host,
        "smtp_port": str(mailbox.smtp_port),
        "smtp_security": mailbox.smtp_security,
        "active_folders": json.dumps(mailbox.active_folders),
        "sync_from": mailbox.sync_from.isoformat() if mailbox.sync_from else "",
        "refresh_interval": str(mailbox.refresh_interval),
        "forward_unplaced_to": mailbox.forward_unplaced_to,
        "signature": mailbox.signature,
        "privacy": mailbox.privacy,
        "folders-TOTAL_FORMS": "0",
        "folders-INITIAL_FORMS": "0",
        "folders-MIN_NUM_FORMS": "0",
        "folders-MAX_NUM_FORMS": "1000",
    }
    for flag in ("allow_insecure_cert", "create_contacts", "create_tickets"):
        if getattr(mailbox, flag):
            data[flag] = "on"
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def carries(data: bytes, secret: str) -> bool:
    """Does `data` (what a client sent) hold `secret`, in clear or base64 (SMTP AUTH)?"""
    if secret.encode() in data:
        return True
    for token in data.split():
        try:
            if secret.encode() in base64.b64decode(token + b"==", validate=False):
                return True
        except ValueError:
            continue
    return False


@pytest.fixture
def owners_mailbox(owner, imap_user, smtp_server):
    """Olivia's personal mailbox on the real Dovecot, its password the canary."""
    imap_user.server.set_password(imap_user, CANARY)
    return make_mailbox(
        imap_user,
        owner=owner,
        password=CANARY,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        active_folders=["INBOX"],
    )


@pytest.mark.django_db
def test_admin_redirecting_a_personal_mailbox_never_sends_its_password_to_the_new_server(
    client, admin_user, owner, owners_mailbox, imap_user, smtp_server, fault_proxy_factory
):
    mailbox = owners_mailbox
    assert sync.sync_mailbox(mailbox.pk).completed  # it works, with the owner's password
    # The admin's own servers: real ones behind proxies that record what clients send them.
    new_imap = fault_proxy_factory(imap_user.server.host, imap_user.server.port)
    new_smtp = fault_proxy_factory(smtp_server.host, smtp_server.port)
    mailbox.refresh_from_db()
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:inbox_mailbox_change", args=[mailbox.pk]),
        change_form(
            mailbox,
            imap_host="localhost",
            imap_port=str(new_imap.port),
            smtp_host="localhost",
            smtp_port=str(new_smtp.port),
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    mailbox.refresh_from_db()
    assert (mailbox.imap_host, mailbox.imap_port) == ("localhost", new_imap.port)

    # Everything that would log in: the beat's sync, mail the owner queues, the owner's Test
    # SMTP connection; and again after a sync that was running when the admin saved marks the
    # mailbox active at its end.
    sync.sync_mailbox(mailbox.pk)
    outbox_entry = outbox_compose(
        user=owner, mailbox=mailbox, to="ana@customer.example", subject="Hi", text_body="Hi"
    )
    outbox.process_entry(outbox_entry.pk)
    client.force_login(owner)
    client.post(reverse("inbox:mailbox_smtp_test", args=[mailbox.pk]))
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
    assert sync.sync_mailbox(mailbox.pk).outcome == "needs_reconnect"
    Mailbox.objects.filter(pk=mailbox.pk).update(state=Mailbox.State.ACTIVE)
    assert outbox.process_entry(outbox_entry.pk).state != "sent"
    assert new_imap.connections == 0 and new_smtp.connections == 0
    for proxy in (new_imap, new_smtp):
        assert not carries(bytes(proxy.from_clients), CANARY), bytes(proxy.from_clients)[:500]

    # The secret is gone, and the owner is told who changed what.
    mailbox.refresh_from_db()
    assert raw_column(mailbox.pk) == "" and not mailbox.password
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    settings_page = client.get(reverse("inbox:mailbox_settings", args=[mailbox.pk]))
    notice = settings_page.content.decode()
    assert "Ada Admin changed" in notice and "IMAP server" in notice and "SMTP server" in notice
    assert "localhost" in notice
    banner = client.get(reverse("crm:contact_list")).content.decode()
    assert 'id="reconnect-banner"' in banner and "Ada Admin changed" in banner

    # The owner, having read the notice, reconnects: the notice goes, syncing resumes.
    response = client.post(
        reverse("inbox:mailbox_reconnect", args=[mailbox.pk]),
        {"password": CANARY, "folders_shown": "1", "active_folders": ["INBOX"]},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    mailbox.refresh_from_db()
    assert mailbox.reconnect_reason == "" and mailbox.state == Mailbox.State.ACTIVE
    assert "Ada Admin changed" not in client.get(reverse("crm:contact_list")).content.decode()


@pytest.mark.django_db
def test_admin_cannot_type_a_password_for_someone_elses_redirected_mailbox(
    client, admin_user, personal_mailbox
):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:inbox_mailbox_change", args=[personal_mailbox.pk]),
        change_form(personal_mailbox, imap_host="imap.elsewhere.example", new_password="mine"),
    )
    assert response.status_code == 200
    assert "Only the owner enters this mailbox" in response.content.decode()
    personal_mailbox.refresh_from_db()
    assert personal_mailbox.imap_host == "127.0.0.1"
    assert personal_mailbox.password.reveal() == "mail-password"


@pytest.mark.django_db
def test_admin_moving_a_shared_mailbox_gives_the_new_password_or_is_asked_to_reconnect(
    client, admin_user, shared_mailbox
):
    client.force_login(admin_user)
    url = reverse("admin:inbox_mailbox_change", args=[shared_mailbox.pk])
    moved = client.post(
        url, change_form(shared_mailbox, imap_host="imap.new.example", new_password="new-pw")
    )
    assert moved.status_code == 302
    shared_mailbox.refresh_from_db()
    assert shared_mailbox.password.reveal() == "new-pw"
    assert shared_mailbox.state == Mailbox.State.ACTIVE

    moved = client.post(url, change_form(shared_mailbox, smtp_port="587"))
    assert moved.status_code == 302
    shared_mailbox.refresh_from_db()
    assert not shared_mailbox.password and shared_mailbox.state == Mailbox.State.NEEDS_RECONNECT
    banner = client.get(reverse("crm:contact_list")).content.decode()
    assert (
        "You changed" not in banner and "Ada Admin changed the SMTP port from 465 to 587" in banner
    )


@pytest.mark.django_db
def test_oauth_tokens_never_outlive_a_change_of_account_and_its_servers_are_the_providers(
    client, admin_user, owner
):
    mailbox = f.MailboxFactory(
        owner=owner,
        email_address="olivia@gmail.example",
        connection_type="google",
        imap_host="imap.gmail.com",
        smtp_host="smtp.gmail.com",
    )
    mailbox.set_oauth_tokens(access_token="ya29.canary", refresh_token="1//canary", expires_at=None)
    mailbox.save()
    client.force_login(admin_user)
    url = reverse("admin:inbox_mailbox_change", args=[mailbox.pk])
    form = client.get(url).content.decode()
    assert 'name="imap_host"' not in form  # shown, not editable: the provider's server
    response = client.post(
        url,
        change_form(mailbox, imap_host="imap.evil.example", email_address="other@gmail.example"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    mailbox.refresh_from_db()
    assert mailbox.imap_host == "imap.gmail.com"
    assert mailbox.email_address == "other@gmail.example"
    assert not mailbox.oauth_access_token_encrypted and not mailbox.oauth_refresh_token_encrypted
    assert mailbox.state == Mailbox.State.NEEDS_RECONNECT
    assert "stored sign-in was removed" in mailbox.reconnect_reason


# --- personal mail stays its owner's in the admin too (docs/reliability.md C-22) ----------


@pytest.mark.django_db
def test_admin_cannot_take_over_or_open_up_a_personal_mailbox(
    client, admin_user, owner, personal_mailbox
):
    Mailbox.objects.filter(pk=personal_mailbox.pk).update(privacy=Mailbox.Privacy.NOTHING)
    personal_mailbox.refresh_from_db()
    (message,) = mailkit.conversation(
        mailkit.folders(personal_mailbox)["inbox"], subject="Private matter"
    )
    client.force_login(admin_user)
    url = reverse("admin:inbox_mailbox_change", args=[personal_mailbox.pk])
    assert client.get(url).status_code == 200
    for attempt in (
        {
            "owner": admin_user.pk,
            "privacy": "full",
            "create_tickets": "on",
            "forward_unplaced_to": "ada@relay.test",
        },
        {"kind": "shared", "owner": ""},  # then grant it to themselves
    ):
        response = client.post(url, change_form(personal_mailbox, **attempt))
        assert response.status_code == 302, response.content.decode()[:3000]
    personal_mailbox.refresh_from_db()
    assert (personal_mailbox.kind, personal_mailbox.owner) == ("personal", owner)
    assert personal_mailbox.privacy == Mailbox.Privacy.NOTHING
    assert not personal_mailbox.create_tickets and personal_mailbox.forward_unplaced_to == ""
    assert personal_mailbox.password.reveal() == "mail-password"  # nothing about the server
    opened = client.get(reverse("inbox:conversation", args=[message.pk]))
    assert opened.status_code == 404


@pytest.mark.django_db
def test_admin_lists_show_no_one_elses_personal_mail(
    client, admin_user, owner, personal_mailbox, shared_mailbox
):
    own = f.MailboxFactory(owner=admin_user, email_address="ada@relay.test")
    rows = {}
    for name, mailbox in (("olivia", personal_mailbox), ("shared", shared_mailbox), ("ada", own)):
        (message,) = mailkit.conversation(
            mailkit.folders(mailbox)["inbox"], subject=f"Subject of {name}"
        )
        entry = f.OutboxEntryFactory(
            mailbox=mailbox, subject=f"Outgoing of {name}", to=[f"to-{name}@customer.example"]
        )
        ledger = f.LedgerEntryFactory(
            folder=mailbox.folders.get(name="INBOX"), message=message, uid=900
        )
        request = EmailApiRequest.objects.create(
            message=message,
            mailbox=mailbox,
            sender=f"api-{name}@customer.example",
            outcome=EmailApiRequest.Outcome.APPLIED,
        )
        rows[name] = (entry, ledger, request)
    client.force_login(admin_user)
    pages = {
        "outboxentry": lambda r: r[0],
        "ledgerentry": lambda r: r[1],
        "emailapirequest": lambda r: r[2],
    }
    for model, row in pages.items():
        listing = client.get(reverse(f"admin:inbox_{model}_changelist")).content.decode()

        def link(name, model=model, row=row):
            return reverse(f"admin:inbox_{model}_change", args=[row(rows[name]).pk])

        assert link("olivia") not in listing, model
        assert link("shared") in listing and link("ada") in listing, model
        assert "of olivia" not in listing and "-olivia@" not in listing, model
        hidden = client.get(link("olivia"))
        assert hidden.status_code == 302 and "of olivia" not in hidden.content.decode(), model
        assert client.get(link("shared")).status_code == 200, model
