"""Anonymous visitors are sent to the sign-in page; signing in brings them back."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests import factories as f

pytestmark = pytest.mark.django_db


def _urls():
    account = f.AccountFactory()
    contact = f.ContactFactory()
    lead = f.LeadFactory()
    ticket = f.TicketFactory()
    opportunity = f.OpportunityFactory()
    urls = [
        reverse("crm:home_page"),
        reverse("crm:my_addresses"),
        reverse("crm:lead_convert", args=[lead.pk]),
    ]
    for name, record in (
        ("account", account),
        ("contact", contact),
        ("lead", lead),
        ("ticket", ticket),
        ("opportunity", opportunity),
    ):
        urls += [
            reverse(f"crm:{name}_list"),
            reverse(f"crm:{name}_create"),
            reverse(f"crm:{name}_detail", args=[record.pk]),
            reverse(f"crm:{name}_update", args=[record.pk]),
            reverse(f"crm:{name}_delete", args=[record.pk]),
            reverse("inbox:email_tab", args=[name, record.pk]),
        ]
    return urls


def test_anonymous_users_are_redirected_to_sign_in(client):
    for url in _urls():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{reverse('login')}?next="), url


def test_anonymous_post_changes_nothing(client):
    contact = f.ContactFactory()
    response = client.post(reverse("crm:contact_delete", args=[contact.pk]))
    assert response.status_code == 302
    assert contact.__class__.objects.filter(pk=contact.pk).exists()


def test_sign_in_form_signs_in_and_returns_to_the_page(client, teammate):
    page = client.get(reverse("login")).content.decode()
    assert "Sign in to Relay" in page and 'name="password"' in page
    response = client.post(
        reverse("login"),
        {
            "username": "teammate",
            "password": f.DEFAULT_PASSWORD,
            "next": reverse("crm:ticket_list"),
        },
    )
    assert response["Location"] == reverse("crm:ticket_list")
    assert client.get(reverse("crm:ticket_list")).status_code == 200


def test_wrong_password_is_refused_with_a_message(client, teammate):
    response = client.post(reverse("login"), {"username": "teammate", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert client.get(reverse("crm:contact_list")).status_code == 302


def test_pages_carry_a_strict_csp_and_no_inline_styles(user_client):
    f.TicketFactory()
    response = user_client.get(reverse("crm:ticket_list"))
    policy = response["Content-Security-Policy"]
    assert "style-src 'self'" in policy and "'unsafe-inline'" not in policy
    html = response.content.decode()
    assert " style=" not in html and "<style" not in html
    # Every script is a file from our origin, carrying the nonce of this response.
    nonce = policy.split("'nonce-")[1].split("'")[0]
    # Bootstrap, htmx, relay.js, live.js (crm/static/js/live.js) and notes/static/notes/notes.js
    # (the mention picker).
    assert html.count("<script") == html.count(f'nonce="{nonce}"') == 5
    # htmx neither injects a <style> element nor settles style attributes (both refused).
    config = html.split('<meta name="htmx-config" content=\'')[1].split("'>")[0]
    assert json.loads(config) == {
        "includeIndicatorStyles": False,
        "attributesToSettle": ["class", "width", "height"],
    }
