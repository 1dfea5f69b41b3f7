"""Sign-in throttling (docs/reliability.md C-26, docs/product.md §7.6): through the real sign-in
pages (the site's and the admin's) with the test client."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crm import signin
from crm.models import SignInThrottle
from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-ins"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    """Hundreds of sign-ins: a cheap hasher for the users these tests create (the lock does
    not depend on the hasher)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(client, username, password, *, address="198.51.100.7", url=None, **extra):
    return client.post(
        url or reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **extra,
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_a_hundred_wrong_passwords_then_the_right_one_is_refused_with_a_clear_message(owner):
    client = Client()
    for attempt in range(100):
        response = sign_in(client, "owner", f"guess-{attempt}")
        assert response.status_code == 200 and not signed_in(client)
    response = sign_in(client, "owner", DEFAULT_PASSWORD)
    html = response.content.decode()
    assert not signed_in(client)
    assert LOCKED in html and "An administrator can unlock it sooner" in html
    until = timezone.localtime(SignInThrottle.objects.get(kind="account", key="owner").locked_until)
    assert f"until {until:%H:%M}" in html
    # The lock started at the fifth failure; the 95 attempts made during it did not lengthen it.
    row = SignInThrottle.objects.get(kind="account", key="owner")
    assert row.lockouts == 1 and row.locked_until - row.last_failure_at == signin.FIRST_LOCK
    # From another network the account stays locked: the lock is the account's.
    assert (
        LOCKED in sign_in(Client(), "owner", DEFAULT_PASSWORD, address="192.0.2.1").content.decode()
    )
    # "Owner" is the same account for the count, whatever the case typed.
    assert LOCKED in sign_in(Client(), "OWNER", "guess").content.decode()


def test_each_lock_in_a_row_lasts_twice_as_long_and_a_success_starts_afresh(owner):
    client = Client()
    lengths = []
    for _round in range(3):
        for attempt in range(signin.ACCOUNT_LIMIT):
            sign_in(client, "owner", f"guess-{attempt}")
        row = SignInThrottle.objects.get(kind="account", key="owner")
        lengths.append(row.locked_until - row.last_failure_at)
        assert LOCKED in sign_in(client, "owner", DEFAULT_PASSWORD).content.decode()
        # The lock runs out (moved into the past here rather than waiting minutes).
        SignInThrottle.objects.filter(pk=row.pk).update(
            locked_until=timezone.now() - dt.timedelta(seconds=1)
        )
    assert lengths == [signin.FIRST_LOCK, 2 * signin.FIRST_LOCK, 4 * signin.FIRST_LOCK]
    response = sign_in(client, "owner", DEFAULT_PASSWORD)
    assert response.status_code == 302 and signed_in(client)
    assert not SignInThrottle.objects.filter(kind="account", key="owner").exists()


def test_one_address_trying_many_accounts_is_locked_and_others_are_not(owner, teammate):
    attacker = Client()
    for n in range(signin.ADDRESS_LIMIT):
        sign_in(attacker, f"user{n}", "guess", address="203.0.113.9")
    # The next account, with its right password, from that address: refused.
    response = sign_in(attacker, "teammate", DEFAULT_PASSWORD, address="203.0.113.9")
    assert LOCKED in response.content.decode() and not signed_in(attacker)
    # The same account from elsewhere signs in: none of those accounts reached its limit.
    colleague = Client()
    assert sign_in(colleague, "teammate", DEFAULT_PASSWORD, address="192.0.2.44").status_code == 302
    assert signed_in(colleague)
    # A success from the locked address (another account's) does not clear the address.
    assert SignInThrottle.objects.filter(kind="address", key="203.0.113.9").get().locked_until


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(owner, settings):
    settings.RELAY_PROXY_COUNT = 1
    client = Client()
    for n in range(signin.ADDRESS_LIMIT):
        # The client writes whatever it likes on the left of X-Forwarded-For; our proxy
        # appends the address it saw.
        sign_in(
            client,
            f"user{n}",
            "guess",
            address="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9",
        )
    locked = SignInThrottle.objects.filter(kind="address", locked_until__isnull=False)
    assert list(locked.values_list("key", flat=True)) == ["203.0.113.9"]
    other = Client()
    response = sign_in(
        other, "owner", DEFAULT_PASSWORD, address="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.80"
    )
    assert response.status_code == 302 and signed_in(other)


def test_the_admin_sign_in_page_is_held_by_the_same_lock(admin_user):
    client = Client()
    url = reverse("admin:login")
    for attempt in range(signin.ACCOUNT_LIMIT):
        sign_in(client, "admin", f"guess-{attempt}", url=url)
    response = sign_in(client, "admin", DEFAULT_PASSWORD, url=url)
    assert LOCKED in response.content.decode() and not signed_in(client)
    assert client.get(reverse("admin:index")).status_code == 302


def test_an_admin_unlocks_in_the_admin_site(owner, admin_user):
    for attempt in range(signin.ACCOUNT_LIMIT):
        sign_in(Client(), "owner", f"guess-{attempt}")
    admin = Client()
    admin.force_login(admin_user)
    changelist = reverse("admin:crm_signinthrottle_changelist")
    page = admin.get(changelist).content.decode()
    assert "owner" in page and "198.51.100.7" in page
    row = SignInThrottle.objects.get(kind="account", key="owner")
    response = admin.post(
        changelist, {"action": "unlock", "_selected_action": [row.pk]}, follow=True
    )
    assert "Unlocked 1" in response.content.decode()
    client = Client()
    assert sign_in(client, "owner", DEFAULT_PASSWORD).status_code == 302 and signed_in(client)


def test_an_admin_unlocks_with_the_command(owner, capsys):
    for attempt in range(signin.ACCOUNT_LIMIT):
        sign_in(Client(), "owner", f"guess-{attempt}")
    call_command("unlock_signin")
    assert "account owner locked until" in capsys.readouterr().out
    call_command("unlock_signin", "owner")
    assert "Unlocked: 1" in capsys.readouterr().out
    client = Client()
    assert sign_in(client, "owner", DEFAULT_PASSWORD).status_code == 302 and signed_in(client)
