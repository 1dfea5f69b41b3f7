"""The signed record token in our Message-IDs (docs/product.md §4.1 rule 2,
docs/reliability.md C-14)."""

from __future__ import annotations

import pytest

from connector.filing import tokens
from crm.models import RECORD_MODELS
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "factory",
    [f.TicketFactory, f.OpportunityFactory, f.ContactFactory, f.AccountFactory, f.LeadFactory],
)
def test_a_made_id_names_its_record(factory):
    record = factory()

    message_id = tokens.make_message_id(record)

    assert "<" not in message_id and "@" in message_id
    assert record_of(message_id) == record
    assert tokens.make_message_id(record) != message_id  # a fresh nonce every time


def test_tampering_with_any_part_is_detected():
    ticket, other = f.TicketFactory(), f.TicketFactory()
    message_id = tokens.make_message_id(ticket, nonce="fixednonce1")
    prefix, kind_pk, mac_domain = message_id.split(".", 2)
    retargeted = f"{prefix}.t{other.pk}.{mac_domain}"
    renonced = message_id.replace("fixednonce1", "fixednonce2")
    wrong_mac = f"{prefix}.{kind_pk}.{'b' * 20}{mac_domain[20:]}"

    for forged in (retargeted, renonced, wrong_mac):
        assert tokens.check_message_id(forged).status == "forged"
        assert record_of(forged) is None


def test_the_key_decides(settings):
    ticket = f.TicketFactory()
    message_id = tokens.make_message_id(ticket)
    settings.RELAY_TOKEN_KEY = "another key"
    assert tokens.check_message_id(message_id).status == "forged"


def test_ordinary_ids_are_not_tokens():
    for message_id in ("abc@mail.example", "", "relay@relay.test", "CAFx1=2@mail.gmail.com"):
        assert tokens.check_message_id(message_id).status == "none"


def test_deterministic_nonce_and_case_insensitive_check():
    ticket = f.TicketFactory()
    first = tokens.make_message_id(ticket, nonce="ack00000042")
    assert first == tokens.make_message_id(ticket, nonce="ack00000042")
    assert record_of(first.upper()) == ticket


def test_internal_message_ids_are_stable_unguessable_and_carry_no_record(settings):
    from connector.filing.tokens import check_message_id, make_internal_message_id

    first = make_internal_message_id("forward", 42)
    assert first == make_internal_message_id("forward", 42)  # the same on a re-run
    assert first != make_internal_message_id("forward", 43)
    assert "relay-forward-42-" in first and len(first.split("@")[0]) > len("relay-forward-42-") + 15
    assert check_message_id(first).status == "none"
    settings.RELAY_TOKEN_KEY = "another-key"
    assert make_internal_message_id("forward", 42) != first  # keyed: not guessable without it


def record_of(message_id: str):
    """The record a Message-ID's valid token points at, as matching resolves it."""
    check = tokens.check_message_id(message_id)
    if check.status != "valid":
        return None
    return RECORD_MODELS[check.record_type].objects.filter(pk=check.record_id).first()
