"""Serde throughput: `python -m benchmarks.bench_serde [--events N] [--repeat R]`.

Decodes one batch of subscription events (a realistic mix of the seven types) through the
service's batch decoder, with and without validation by the core's `parse_event`, next to plain
fastavro (the limit: no framing, no checks) and confluent-kafka's `AvroDeserializer` (the
library alternative the decoder was measured against). Uses an in-process mock registry, so
the figures are CPU only. Not collected by pytest (no `test_` prefix).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from consumers.serde import event_decoder
from producers.serde import EventEncoder
from schemas import parse, parsed_schema, schema_str, subject_for
from schemas.wire import HEADER_SIZE, RecordEncoder

TOPIC = "bench.subscription-events"
CHANNELS = ("microsoft_direct", "advisor", "open", "enterprise_agreement", "csp", "third_party", "syndication")


def make_events(n: int) -> list[dict[str, Any]]:
    """n events: 40% purchases (license and usage), 15% renewals, 10% cancellations, 35% relationship/admin."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    for i in range(n):
        base: dict[str, Any] = {
            "event_id": f"evt-{i:08d}",
            "occurred_at": start + timedelta(seconds=i),
            "partner_id": f"partner-{i % 50:03d}",
            "customer_id": f"customer-{i % 20_000:06d}",
        }
        slot = i % 20
        if slot < 8:
            license_based = slot < 6
            channel = CHANNELS[i % len(CHANNELS)]
            event = base | {
                "event_type": "subscription_purchased",
                "subscription_id": f"sub-{i:08d}",
                "offer_id": "O365_E3" if license_based else "AZURE_PLAN",
                "billing_model": "license" if license_based else "usage",
                "channel": channel,
                "seller_partner_id": f"partner-{(i + 7) % 50:03d}" if channel in ("csp", "third_party") else None,
            }
            if license_based:
                event |= {"quantity": 1 + i % 300, "term_start": date(2026, 1, 1), "term_end": date(2027, 1, 1)}
        elif slot < 11:
            event = base | {
                "event_type": "subscription_renewed",
                "subscription_id": f"sub-{i - 5:08d}",
                "term_end": date(2028, 1, 1),
            }
        elif slot < 13:
            event = base | {"event_type": "subscription_cancelled", "subscription_id": f"sub-{i - 7:08d}"}
        else:
            kinds = (
                "relationship_accepted",
                "relationship_ended",
                "delegated_admin_granted",
                "delegated_admin_revoked",
            )
            event = base | {"event_type": kinds[i % 4]}
        events.append(event)
    return events


def best_rate(n: int, repeat: int, run: Callable[[], object]) -> float:
    """Events per second of the fastest of `repeat` runs (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.events, args.repeat

    client = SchemaRegistryClient.new_client({"url": "mock://bench"})
    encoder = EventEncoder(client, subscription_topic=TOPIC, partner_topic=f"{TOPIC}-partner", auto_register=True)
    events = make_events(n)
    values = encoder.encode_subscription_events(events)
    decoder = event_decoder(client, "subscription")
    assert decoder.decode_values(values[:1000]) == decoder.decode_values(values[:1000])  # warm the id cache

    schema = parsed_schema("subscription_event")
    reader = fastavro.schemaless_reader

    def plain_fastavro() -> None:
        for value in values:
            buf = io.BytesIO(value)
            buf.seek(HEADER_SIZE)
            reader(buf, schema, None)

    deserializer = AvroDeserializer(client, schema_str("subscription_event"))

    def avro_deserializer() -> None:
        for value in values:
            deserializer(value, None)

    # Records of an older producer (no quantity field): every record goes through schema resolution.
    older = json.loads(schema_str("subscription_event"))
    older["fields"] = [f for f in older["fields"] if f["name"] != "quantity"]
    old_id = client.register_schema(subject_for(TOPIC), Schema(json.dumps(older), "AVRO"))
    old_values = RecordEncoder("subscription_event", subject_for(TOPIC), old_id, writer=parse(json.dumps(older)))
    resolved_values = old_values.encode_batch(events)

    rows: list[tuple[str, float]] = [
        (
            "encode (EventEncoder.encode_subscription_events)",
            best_rate(n, repeat, lambda: encoder.encode_subscription_events(events)),
        ),
        ("plain fastavro schemaless_reader (the limit)", best_rate(n, repeat, plain_fastavro)),
        (
            "Decoder.decode_batch (framing, id cache, checks)",
            best_rate(n, repeat, lambda: decoder.decode_values(values)),
        ),
        (
            "Decoder.decode_batch, older writer (resolution)",
            best_rate(n, repeat, lambda: decoder.decode_values(resolved_values)),
        ),
        ("confluent-kafka AvroDeserializer, per record", best_rate(n, repeat, avro_deserializer)),
    ]
    try:
        from multichannel.parse import parse_event
    except ImportError:
        validation = "multichannel.parse is not there yet: decode only"
    else:

        def decode_and_validate() -> None:
            for decoded in decoder.decode_values(values):
                if isinstance(decoded, dict):
                    parse_event(decoded)

        rows.append(("Decoder.decode_batch + parse_event (decode+validate)", best_rate(n, repeat, decode_and_validate)))
        validation = "validated by multichannel.parse.parse_event"

    print(
        f"{n:,} subscription events, best of {repeat}; Python {platform.python_version()}, "
        f"fastavro {fastavro.__version__}; {validation}"
    )
    width = max(len(label) for label, _ in rows)
    for label, rate in rows:
        print(f"  {label:<{width}}  {rate:>12,.0f} events/s")


if __name__ == "__main__":
    main()
