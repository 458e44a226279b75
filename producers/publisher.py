"""Publishing library for billing systems: typed events in, Avro on the contract's topics out.

An idempotent producer (`enable.idempotence`, `acks=all`) keys every record as the contract says
(customer_id on the subscription topic, partner_id on the partner topic). Each `publish` returns a
`concurrent.futures.Future` that resolves with the event id once the broker has the record, or
fails with `DeliveryFailed`: no event is ever reported delivered that was not. Invalid input is
rejected before it reaches Kafka with the dead-letter reason codes (`InvalidEvent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from config.registry import registry_client
from config.settings import Settings
from multichannel.errors import InvalidField, SchemaMismatch, UnknownEventType
from multichannel.model import Event, PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from producers.serde import EventEncoder

Headers = list[tuple[str, str | bytes | None]]


class DeliveryFailed(Exception):
    """The broker did not acknowledge the record (the event was not published)."""

    def __init__(self, event_id: str, error: KafkaError | None) -> None:
        super().__init__(f"event {event_id} not delivered: {error}")
        self.event_id = event_id
        self.error = error


def json_object(line: bytes) -> dict[str, Any]:
    """One line of a JSON-lines file of events as its object; SchemaMismatch when it is not JSON or not an
    object, the reason the service gives such bytes."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise SchemaMismatch(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SchemaMismatch("a line must hold a JSON object")
    return obj


class EventPublisher:
    """Publishes subscription, relationship and partner events; use as a context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        auto_register: bool = False,
        linger_ms: int = 5,
        delivery_timeout_ms: int = 30_000,
        flush_timeout_s: float = 30.0,
        transactional_id: str | None = None,
    ) -> None:
        """`delivery_timeout_ms`: how long the client tries to deliver a record before it reports it
        undelivered; `flush_timeout_s`: the longest wait for outstanding reports on close;
        `transactional_id`: a transactional producer, whose transactions the caller runs on `producer`."""
        self.settings = settings
        self.flush_timeout_s = flush_timeout_s
        self._encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=auto_register)
        conf: dict[str, Any] = {
            **settings.kafka_client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "delivery.timeout.ms": delivery_timeout_ms,
        }
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
            conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
            conf["delivery.timeout.ms"] = min(delivery_timeout_ms, settings.transaction_timeout_ms)
        self._producer = Producer(conf)

    @property
    def producer(self) -> Producer:
        """The client itself, for the transaction calls of a transactional publisher."""
        return self._producer

    def publish(self, event: Event | Mapping[str, Any]) -> Future[str]:
        """Queue one event (a core event, or a contract dict validated here); the future resolves on delivery."""
        topic, key, value, event_id = self.encode(event)
        return self.publish_raw(topic, key, value, event_id)

    def encode(self, event: Event | Mapping[str, Any]) -> tuple[str, bytes, bytes, str]:
        """(topic, key, value, event id) of one event as `publish` writes it; `InvalidEvent` when it is not valid."""
        ev = event if not isinstance(event, Mapping) else parse_event(event)
        record = event_to_dict(ev)
        try:
            if isinstance(ev, PartnerProgramChanged):
                topic, key = self.settings.partner_topic, ev.partner_id
                value = self._encoder.encode_partner_event(record)
            else:
                topic, key = self.settings.subscription_topic, ev.customer_id
                value = self._encoder.encode_subscription_event(record)
        except (
            ValueError,
            TypeError,
        ) as exc:  # a value the core accepts but Avro cannot carry (a core event built by hand)
            raise InvalidField(f"the event does not fit the Avro schema: {exc}") from None
        return topic, key.encode(), value, ev.event_id

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, label: str, headers: Headers | None = None
    ) -> Future[str]:
        """Queue bytes as they are (tests, the generator's deliberately bad records, re-driven dead letters).
        A record the client refuses at once (larger than `message.max.bytes`) fails its future with DeliveryFailed."""
        future: Future[str] = Future()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                future.set_result(label)
            else:
                future.set_exception(DeliveryFailed(label, err))

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                future.set_exception(DeliveryFailed(label, error))
                return future
        self._producer.poll(0)
        return future

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for outstanding deliveries (default `flush_timeout_s`); returns how many are still undelivered."""
        return int(self._producer.flush(self.flush_timeout_s if timeout_s is None else timeout_s))

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.flush()


class SubscriptionEventPublisher(EventPublisher):
    """Publisher of subscription and relationship events only (key: customer_id)."""

    def publish(self, event: Event | Mapping[str, Any]) -> Future[str]:
        ev = event if not isinstance(event, Mapping) else parse_event(event)
        if isinstance(ev, PartnerProgramChanged):
            raise UnknownEventType(f"{ev.event_type} belongs on the partner topic")
        return super().publish(ev)


class PartnerEventPublisher(EventPublisher):
    """Publisher of partner-change events only (key: partner_id)."""

    def publish(self, event: Event | Mapping[str, Any]) -> Future[str]:
        ev = event if not isinstance(event, Mapping) else parse_event(event)
        if not isinstance(ev, PartnerProgramChanged):
            raise UnknownEventType(f"{ev.event_type} belongs on the subscription topic")
        return super().publish(ev)
