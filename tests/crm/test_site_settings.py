"""The Site settings page (docs/product.md §8.1): the mail switch, purge days, the default From
address and the global acknowledgements switch. The environment (crm/settings.py) is the
default, a value saved on the page overrides it, the page shows which is in force and where it
comes from, and every reader goes through crm/selectors.py site_settings."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connector.scheduling.purge import purge
from crm import selectors, services
from crm.models import SiteSettings
from inbox.models import OutboxEntry
from tests import factories as f
from tests.connector.filingkit import eager_celery, file, mail  # noqa: F401
from tests.crm.test_my_addresses import system_mailer  # noqa: F401

pytestmark = pytest.mark.django_db

URL = "/site-settings/"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def rows(html: str) -> str:
    return html[html.index('id="in-force"') :]


def test_the_page_shows_the_environment_then_a_saved_override_and_back(admin_client, settings):
    settings.RELAY_PURGE_AFTER_DAYS = 30
    settings.RELAY_DEFAULT_FROM_EMAIL = "relay@env.example"
    settings.RELAY_SEND_ACKNOWLEDGEMENTS = True
    assert reverse("crm:site_settings") == URL
    html = rows(admin_client.get(URL).content.decode())
    assert html.count("Environment</span>") == 4
    assert "<code>RELAY_PURGE_AFTER_DAYS</code>" in html and "relay@env.example" in html

    response = admin_client.post(
        URL,
        {
            "purge_after_days": "90",
            "default_from_email": " CRM@Example.com ",
            "send_acknowledgements": "off",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "Site settings saved." in page
    html = rows(page)
    assert html.count("Saved here</span>") == 3
    assert ">90<" in html and "crm@example.com" in html and ">Off<" in html
    # Where the value came from, and what the environment says underneath.
    assert "Environment: <code>RELAY_PURGE_AFTER_DAYS</code> = 30" in html
    in_force = selectors.site_settings()
    assert in_force.purge_after_days.value == 90
    assert in_force.default_from_email.value == "crm@example.com"
    assert in_force.send_acknowledgements.value is False

    admin_client.post(
        URL, {"purge_after_days": "", "default_from_email": "", "send_acknowledgements": ""}
    )
    html = rows(admin_client.get(URL).content.decode())
    assert html.count("Environment</span>") == 4 and "relay@env.example" in html
    assert selectors.site_settings().purge_after_days.value == 30


def test_bad_input_saves_nothing_and_names_the_field(admin_client):
    for data, error in (
        ({"purge_after_days": "-1"}, "greater than or equal to 0"),
        ({"purge_after_days": "99999"}, "less than or equal to 3650"),
        ({"default_from_email": "not an address"}, "Enter a valid email address"),
        ({"send_acknowledgements": "maybe"}, "Select a valid choice"),
    ):
        response = admin_client.post(URL, data)
        assert response.status_code == 400, data
        assert error in response.content.decode(), data
    assert not SiteSettings.objects.exists()


def test_purge_follows_the_saved_days(admin_user, settings):
    settings.RELAY_PURGE_AFTER_DAYS = 30
    entry = f.OutboxEntryFactory(state="sent", sent_at=timezone.now() - dt.timedelta(days=10))
    OutboxEntry.objects.filter(pk=entry.pk).update(
        updated_at=timezone.now() - dt.timedelta(days=10)
    )
    assert purge().counts.get("outbox_sent", 0) == 0  # 30 days: kept
    services.site_settings_save(
        user=admin_user, purge_after_days=7, default_from_email="", send_acknowledgements=None
    )
    assert purge().counts["outbox_sent"] == 1
    assert not OutboxEntry.objects.filter(pk=entry.pk).exists()
    services.site_settings_save(
        user=admin_user, purge_after_days=0, default_from_email="", send_acknowledgements=None
    )
    assert purge().cutoff is None  # 0 keeps everything


def test_system_mail_leaves_from_the_saved_default_from(user_client, admin_user, system_mailer):  # noqa: F811
    services.site_settings_save(
        user=admin_user,
        purge_after_days=None,
        default_from_email="crm@example.com",
        send_acknowledgements=None,
    )
    user_client.post(reverse("crm:my_addresses"), {"emails": "tom@relay.test"})
    (sent,) = system_mailer.received
    assert sent.mail_from == "crm@example.com"


@pytest.mark.usefixtures("eager_celery")
def test_the_global_switch_stops_every_mailboxs_acknowledgements(admin_user, settings):
    settings.RELAY_SEND_ACKNOWLEDGEMENTS = True
    support = f.SharedMailboxFactory(create_tickets=True, create_contacts=True)
    f.ContactFactory(emails=["ana@acme.example"])
    services.site_settings_save(
        user=admin_user, purge_after_days=None, default_from_email="", send_acknowledgements=False
    )
    file(mail(support, sender="ana@acme.example", subject="Printer on fire"))
    assert not OutboxEntry.objects.filter(purpose="acknowledgement").exists()
    services.site_settings_save(
        user=admin_user, purge_after_days=None, default_from_email="", send_acknowledgements=None
    )
    file(mail(support, sender="ana@acme.example", subject="Still on fire"))
    assert OutboxEntry.objects.filter(purpose="acknowledgement").count() == 1


def test_a_user_given_the_permission_may_use_the_page_and_others_get_404(client, teammate):
    client.force_login(teammate)
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"purge_after_days": "1"}).status_code == 404
    assert not SiteSettings.objects.exists()
    listing = client.get(reverse("inbox:mailbox_list")).content.decode()
    assert 'id="site-settings-link"' not in listing
    teammate.user_permissions.add(Permission.objects.get(codename="change_sitesettings"))
    client.force_login(teammate)
    assert client.get(URL).status_code == 200
    listing = client.get(reverse("inbox:mailbox_list")).content.decode()
    assert 'id="site-settings-link"' in listing
    assert client.post(URL, {"purge_after_days": "1"}).status_code == 302
    assert SiteSettings.objects.get().updated_by == teammate


def test_the_page_costs_the_same_queries_whatever_the_data(admin_client, admin_user):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(URL).status_code == 200
        return len(queries)

    before = count()
    f.UserFactory.create_batch(20)
    f.MailboxFactory.create_batch(5)
    assert count() == before
    services.site_settings_save(
        user=admin_user, purge_after_days=3, default_from_email="", send_acknowledgements=True
    )
    assert count() == before


def test_mail_switched_off_is_told_on_every_page_and_by_sync_now(
    admin_client, teammate, shared_mailbox, settings
):
    """The switch itself (docs/product.md §8.1); what it stops is proven against the real
    servers in tests/connector/scheduling/test_mail_switch.py."""
    settings.RELAY_MAIL_ENABLED = True
    client = Client()
    client.force_login(teammate)
    inbox = reverse("inbox:inbox_page")
    assert 'id="mail-off-banner"' not in client.get(inbox).content.decode()
    assert client.get("/healthz").json()["mail"] == "on"

    assert admin_client.post(URL, {"mail_enabled": "off"}).status_code == 302
    for page in (inbox, reverse("crm:contact_list"), reverse("inbox:outbox")):
        html = client.get(page).content.decode()
        assert 'id="mail-off-banner"' in html, page
        assert "Mail is switched off for the whole site" in html
        # A colleague is told, not sent to a page they cannot open.
        assert 'href="/site-settings/"' not in html
    response = client.post(reverse("inbox:inbox_sync_now", args=[shared_mailbox.pk]), follow=True)
    assert "nothing is synced until it is on again" in response.content.decode()
    shared_mailbox.refresh_from_db()
    assert shared_mailbox.sync_requested_at is None
    assert client.get("/healthz").json()["mail"] == "off"

    admin_page = admin_client.get(URL).content.decode()
    banner = admin_page[admin_page.index('id="mail-off-banner"') :]
    assert "Switched off on the Site settings page." in banner
    assert 'href="/site-settings/"' in banner
    assert ">Off<" in rows(admin_page)

    admin_client.post(URL, {"mail_enabled": ""})  # as the environment says: on
    assert 'id="mail-off-banner"' not in client.get(inbox).content.decode()
    assert client.get("/healthz").json()["mail"] == "on"
    settings.RELAY_MAIL_ENABLED = False  # the environment can switch it off too
    html = admin_client.get(URL).content.decode()
    assert "Switched off by the environment: <code>RELAY_MAIL_ENABLED</code> is false." in html
