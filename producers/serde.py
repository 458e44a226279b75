"""Encoders of the input events, for publishers of billing and partner events and the load generator.

Events are dicts with the contract's field names (`occurred_at` a datetime, dates as `date`,
absent optional fields omitted or None, as the contract reads them: a None `commerce` or
`azure_expert_msp` is written as the schema's default, `legacy` or false). The schema ids are resolved
once, when the encoder is made; encoding is then a fixed 5-byte header plus fastavro's body, with no
registry traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from schemas import PARTNER_EVENT, SUBSCRIPTION_EVENT, SchemaName, parsed_schema, subject_for
from schemas.wire import RecordEncoder, RegistryUnavailableError, SchemaNotRegisteredError

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["EventEncoder", "RegistryUnavailableError", "SchemaNotRegisteredError"]


def _valued_defaults(name: SchemaName) -> tuple[str, ...]:
    """The optional fields whose default is a value, not null (no union with null to hold a None)."""
    return tuple(f["name"] for f in parsed_schema(name)["fields"] if "default" in f and not isinstance(f["type"], list))


def _absent_as_default(event: Mapping[str, Any], names: tuple[str, ...]) -> Mapping[str, Any]:
    """The event without those of `names` it holds as None, so that their defaults are written."""
    for name in names:
        if name in event and event[name] is None:
            return {k: v for k, v in event.items() if not (v is None and k in names)}
    return event


class EventEncoder:
    """Encodes subscription and partner events in the Confluent wire format of their topics' subjects."""

    __slots__ = ("_partner_defaults", "_subscription_defaults", "partner", "subscription")

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
        self._subscription_defaults = _valued_defaults(SUBSCRIPTION_EVENT)
        self._partner_defaults = _valued_defaults(PARTNER_EVENT)

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
        return self.subscription.encode(_absent_as_default(event, self._subscription_defaults))

    def encode_partner_event(self, event: Mapping[str, Any]) -> bytes:
        """A value for the partner topic (key it with the event's partner_id)."""
        return self.partner.encode(_absent_as_default(event, self._partner_defaults))

    def encode_subscription_events(self, events: Iterable[Mapping[str, Any]]) -> list[bytes]:
        names = self._subscription_defaults
        return self.subscription.encode_batch(_absent_as_default(e, names) for e in events)

    def encode_partner_events(self, events: Iterable[Mapping[str, Any]]) -> list[bytes]:
        names = self._partner_defaults
        return self.partner.encode_batch(_absent_as_default(e, names) for e in events)
