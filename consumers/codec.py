"""The service's edge codec: bytes → Avro → event on the way in, record → Avro → bytes on the way out.

It joins the registry serdes (`consumers.serde`) with the core's validation (`parse_event`) and
the key check, so the service sees either an event or the `InvalidEvent` to dead-letter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message

from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder, OutputEncoders, TopicKind, check_key, event_decoder
from consumers.state_format import decode_state
from multichannel.codec import state_from_record
from multichannel.errors import InvalidEvent
from multichannel.model import Event
from multichannel.parse import parse_event, typed_subscription_event
from multichannel.records import CustomerStatusRecord, SubscriptionDecision
from multichannel.state import AccountState
from schemas import ACCOUNT_STATE


class ServiceCodec:
    """Schemas resolved once per session; every method works on whole batches where it can."""

    def __init__(self, settings: Settings) -> None:
        client = registry_client(settings)
        self._subscriptions = event_decoder(client, "subscription")
        self._partners = event_decoder(client, "partner")
        self._states = Decoder(client, ACCOUNT_STATE)
        self._out = OutputEncoders.for_settings(settings, client, auto_register=settings.auto_register_schemas)
        self.encode_decision: Callable[[SubscriptionDecision], bytes] = self._out.decision.object_writer(
            SubscriptionDecision.to_dict
        )
        self.encode_status: Callable[[CustomerStatusRecord], bytes] = self._out.status.object_writer(
            CustomerStatusRecord.to_dict
        )

    def decode_subscription_batch(self, msgs: Sequence[Message]) -> list[Event | InvalidEvent]:
        """Values of our own schema, or of an earlier version (a contract-1 producer's, its 1.1 fields read as
        their defaults), that pass every check become events straight from their Avro fields
        (`typed_subscription_event`); the others go through the dict and `parse_event`."""
        decoded: list[Event | dict[str, Any] | InvalidEvent] = self._subscriptions.decode_built(
            [m.value() for m in msgs], typed_subscription_event
        )
        return decode_input(decoded, msgs, "subscription")

    def decode_partner_batch(self, msgs: Sequence[Message]) -> list[Event | InvalidEvent]:
        return decode_input(self._partners.decode_batch(msgs), msgs, "partner")

    def decode_states(self, values: Sequence[bytes]) -> list[AccountState]:
        """Changelog values of our own writing, in the compact format or in the Avro form of the earlier
        release (read through the registry); a value that does not decode is a bug, so it raises."""
        return decode_states(self._states, values)


def decode_input(
    decoded: Sequence[Event | dict[str, Any] | InvalidEvent], msgs: Sequence[Message], kind: TopicKind
) -> list[Event | InvalidEvent]:
    """Decoded input values as events, each checked against its record's key (or the `InvalidEvent` to
    dead-letter)."""
    out: list[Event | InvalidEvent] = []
    for msg, item in zip(msgs, decoded, strict=True):
        if isinstance(item, InvalidEvent):
            out.append(item)
            continue
        try:
            event = parse_event(item) if isinstance(item, dict) else item
            check_key(kind, msg.key(), event)
        except InvalidEvent as exc:
            out.append(exc)
            continue
        out.append(event)
    return out


def decode_states(avro_states: Decoder, values: Sequence[bytes]) -> list[AccountState]:
    """Whole-account changelog values (formats 0x01 and 0x02, or the first release's Avro form, read with
    `avro_states`, a decoder of ACCOUNT_STATE) as their states; a value that does not decode raises."""
    result: list[AccountState] = []
    legacy: list[bytes] = []
    for value in values:
        if value[:1] == b"\x00":
            legacy.append(value)
        else:
            result.append(decode_state(value))
    for item in avro_states.decode_values(legacy) if legacy else ():
        if isinstance(item, InvalidEvent):
            raise item
        result.append(state_from_record(item))
    return result
