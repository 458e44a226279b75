"""Encoders of the input events, for publishers of billing and partner events and the load generator.

Events are dicts with the contract's field names (`occurred_at` a datetime, dates as `date`,
absent optional fields omitted or None). The schema ids are resolved once, when the encoder is
made; encoding is then a fixed 5-byte header plus fastavro's body, with no registry traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from schemas import PARTNER_EVENT, SUBSCRIPTION_EVENT, subject_for
from schemas.wire import RecordEncoder, RegistryUnavailableError, SchemaNotRegisteredError

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["EventEncoder", "RegistryUnavailableError", "SchemaNotRegisteredError"]


class EventEncoder:
    """Encodes subscription and partner events in the Confluent wire format of their topics' subjects."""

    __slots__ = ("partner", "subscription")

    def __init__(
        self,
        client: SchemaRegistryClient,
        *,
        subscription_topic: str,
        partner_topic: str,
        auto_register: bool = False,
    ) -> None:
        """Look up (or, with `auto_register`, register) both subjects' schema ids.

        Raises SchemaNotRegisteredError or RegistryUnavailableError, so a publisher fails at start, not per event.
        """
        self.subscription = RecordEncoder.registered(
            client, SUBSCRIPTION_EVENT, subject_for(subscription_topic), auto_register=auto_register
        )
        self.partner = RecordEncoder.registered(
            client, PARTNER_EVENT, subject_for(partner_topic), auto_register=auto_register
        )

    @classmethod
    def for_settings(
        cls, settings: Settings, client: SchemaRegistryClient, *, auto_register: bool = False
    ) -> EventEncoder:
        return cls(
            client,
            subscription_topic=settings.subscription_topic,
            partner_topic=settings.partner_topic,
            auto_register=auto_register,
        )

    def encode_subscription_event(self, event: Mapping[str, Any]) -> bytes:
        """A value for the subscription topic (key it with the event's customer_id)."""
        return self.subscription.encode(event)

    def encode_partner_event(self, event: Mapping[str, Any]) -> bytes:
        """A value for the partner topic (key it with the event's partner_id)."""
        return self.partner.encode(event)

    def encode_subscription_events(self, events: Iterable[Mapping[str, Any]]) -> list[bytes]:
        return self.subscription.encode_batch(events)

    def encode_partner_events(self, events: Iterable[Mapping[str, Any]]) -> list[bytes]:
        return self.partner.encode_batch(events)
