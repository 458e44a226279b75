"""Publishers reject invalid events before they reach Kafka, with the dead-letter reason codes."""

from __future__ import annotations

import pytest

from config.settings import Settings
from multichannel.errors import InvalidField, UnknownEventType
from producers.publisher import PartnerEventPublisher, SubscriptionEventPublisher

SETTINGS = Settings(bootstrap_servers="127.0.0.1:1", schema_registry_url="mock://publisher-test")
PURCHASE = {
    "event_type": "subscription_purchased",
    "event_id": "e1",
    "occurred_at": "2026-03-01T00:00:00Z",
    "partner_id": "P1",
    "customer_id": "C1",
    "subscription_id": "S1",
    "offer_id": "O",
    "billing_model": "license",
    "channel": "open",
    "quantity": 1,
    "term_start": "2026-01-01",
    "term_end": "2026-01-01",
}
PARTNER = {
    "event_type": "partner_program_changed",
    "event_id": "p1",
    "occurred_at": "2026-01-01T00:00:00Z",
    "partner_id": "P1",
    "program": "csp_direct",
    "indirect_provider_ids": [],
}


def test_invalid_event_is_rejected_with_its_reason_code() -> None:
    """The publisher refuses an invalid event with the reason code the service would dead-letter it with."""
    publisher = SubscriptionEventPublisher(SETTINGS, auto_register=True)
    with pytest.raises(InvalidField) as err:
        publisher.publish(PURCHASE)
    assert err.value.reason == "INVALID_FIELD"
    with pytest.raises(UnknownEventType):
        publisher.publish(dict(PURCHASE, event_type="subscription_paused"))


def test_each_publisher_takes_only_its_topic_events() -> None:
    """A subscription publisher refuses partner events and a partner publisher subscription events."""
    with pytest.raises(UnknownEventType):
        SubscriptionEventPublisher(SETTINGS, auto_register=True).publish(PARTNER)
    with pytest.raises(UnknownEventType):
        PartnerEventPublisher(SETTINGS, auto_register=True).publish(dict(PURCHASE, term_end="2027-01-01"))


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"commerce": "modern"}, "commerce"),
        ({"commerce": 1}, "commerce"),
        ({"cancellation_allowed_until": "2026-13-01"}, "cancellation_allowed_until"),
        ({"cancellation_allowed_until": "2026-01-08T00:00:00Z"}, "cancellation_allowed_until"),
    ],
)
def test_a_bad_value_of_contract_1_1_is_rejected_and_a_good_one_queued(fields: dict[str, object], names: str) -> None:
    """commerce and the cancellation window are checked before Kafka (INVALID_FIELD naming the field); the same
    purchase with good values is queued for the broker."""
    publisher = SubscriptionEventPublisher(SETTINGS, auto_register=True)
    purchase = PURCHASE | {"term_end": "2027-01-01"}
    with pytest.raises(InvalidField, match=names):
        publisher.publish(purchase | fields)
    good = publisher.publish(purchase | {"commerce": "nce", "cancellation_allowed_until": "2026-01-08"})
    assert not good.done()  # queued: the broker (none here) has not answered


def test_bad_grant_expiry_and_expert_mark_are_rejected() -> None:
    """A grant's expires_at that is no timestamp and an azure_expert_msp that is no boolean are INVALID_FIELD."""
    grant = {k: PURCHASE[k] for k in ("event_id", "occurred_at", "partner_id", "customer_id")}
    with pytest.raises(InvalidField, match="expires_at"):
        SubscriptionEventPublisher(SETTINGS, auto_register=True).publish(
            grant | {"event_type": "delegated_admin_granted", "expires_at": "next year"}
        )
    with pytest.raises(InvalidField, match="azure_expert_msp"):
        PartnerEventPublisher(SETTINGS, auto_register=True).publish(PARTNER | {"azure_expert_msp": "yes"})
