from __future__ import annotations

import pytest
from django.urls import reverse

from crm.models import StaffEmail
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_staff_user_sets_several_addresses_of_their_own(user_client, teammate):
    url = reverse("crm:my_addresses")
    assert "My email addresses" in user_client.get(url).content.decode()
    response = user_client.post(url, {"emails": "Tom@Relay.test\ntom.t@relay.example"}, follow=True)
    assert "Your email addresses were saved." in response.content.decode()
    assert sorted(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom.t@relay.example",
        "tom@relay.test",
    ]
    page = user_client.get(url).content.decode()
    assert "tom.t@relay.example" in page and "tom@relay.test" in page

    user_client.post(url, {"emails": "tom@relay.test"})
    assert list(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom@relay.test"
    ]


def test_bad_address_saves_nothing(user_client, teammate):
    f.StaffEmailFactory(user=teammate, email="tom@relay.test")
    response = user_client.post(reverse("crm:my_addresses"), {"emails": "new@relay.test\nnope"})
    assert response.status_code == 422
    assert "“nope” is not an email address." in response.content.decode()
    assert list(StaffEmail.objects.filter(user=teammate).values_list("email", flat=True)) == [
        "tom@relay.test"
    ]


def test_address_of_another_user_is_refused(user_client, teammate, owner):
    f.StaffEmailFactory(user=owner, email="olivia@relay.test")
    response = user_client.post(
        reverse("crm:my_addresses"), {"emails": "tom@relay.test, olivia@relay.test"}
    )
    assert response.status_code == 422
    assert "olivia@relay.test already belongs to another user." in response.content.decode()
    assert not StaffEmail.objects.filter(user=teammate).exists()
    assert StaffEmail.objects.get(email="olivia@relay.test").user == owner
