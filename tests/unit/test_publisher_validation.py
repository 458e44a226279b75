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
