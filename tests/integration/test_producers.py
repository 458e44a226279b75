"""Billing-side publishing: a generated stream is accounted for event by event by the service, and
a publisher facing a dead broker reports every undelivered event (and no false delivery)."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings
from consumers.classify_runner import classify_stream
from consumers.topics import ensure_topics
from deploy.local.kafka import LocalKafka
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec
from producers.publisher import DeliveryFailed, EventPublisher
from tests.integration.conftest import CACHE_DIR
from tests.integration.pipeline import ServiceProcess, read_outputs, read_topic, wait_until_processed
from tests.integration.test_service_operations import _metric

SettingsFactory = Callable[..., Settings]


def _publish_generated(settings: Settings, spec: WorkloadSpec) -> tuple[int, list[Any]]:
    items = list(WorkloadGenerator(spec).events())
    futures: list[Future[str]] = []
    with EventPublisher(settings, auto_register=True) as publisher:
        for item in items:
            if isinstance(item, BadRecord):
                raw = item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event)
                futures.append(publisher.publish_raw(settings.subscription_topic, b"C-bad", raw, "bad"))
            else:
                futures.append(publisher.publish(item))
    done, not_done = wait(futures, timeout=60)
    assert not not_done and all(f.exception() is None for f in done)
    return len(futures), items


def _final(decisions: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    out: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for d in decisions:
        out[d["partner_id"], d["customer_id"], d["subscription_id"]] = (
            d["decision"],
            d["reason"],
            d["rule"],
            tuple(d["next_actions"]),
            str(d["blocked_until"]) if d["blocked_until"] else None,
            tuple(d["relationship_via_partner_ids"]),
        )
    return out


def test_generated_stream_is_fully_accounted_for_and_matches_classify(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """Every published event is applied, a duplicate or a dead letter, and the service decides as `classify` does."""
    settings = settings_factory(batch_size=1000)
    svc = ServiceProcess(settings, tmp_path / "svc.log").start()
    try:
        base = svc.wait_ready()
        published, items = _publish_generated(
            settings, WorkloadSpec(seed=99, partners=80, customers=3300, bad_rate=0.01, max_events=10_000)
        )
        assert published == 10_000
        wait_until_processed(settings, 180, [svc])
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        now = datetime.now(UTC)
        assert svc.terminate() == 0
    finally:
        if svc.alive():
            svc.kill()
    outcomes = {
        o: _metric(metrics, "multichannel_event_outcomes_total", outcome=o)
        for o in ("applied", "duplicate", "dead_letter")
    }
    assert sum(outcomes.values()) == published, outcomes
    assert outcomes["duplicate"] > 0 and outcomes["dead_letter"] > 0
    assert len(read_topic(settings, settings.dead_letter_topic)) == outcomes["dead_letter"]
    # the same seed through `classify`, with its clock moved to the service's wall clock: same final decisions
    lines = [
        (item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event))
        if isinstance(item, BadRecord)
        else orjson.dumps(item)
        for item in items
    ]
    sink = io.BytesIO()
    classify_stream(lines, sink, as_of=now)
    offline = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    want = _final([r for r in offline if r["record_type"] == "subscription_decision"])
    decisions, _statuses, _dead = read_outputs(settings)
    got = _final(decisions)
    assert got == want


def test_publisher_reports_every_event_the_stopped_broker_did_not_take(tmp_path: Path) -> None:
    """Events published while the broker is down are reported as DeliveryFailed; those before it are delivered."""
    broker = LocalKafka(CACHE_DIR, tmp_path / "kafka").start()
    try:
        from tests.integration.conftest import _backends

        registry = _backends.registry if _backends is not None else ""
        settings = Settings(
            bootstrap_servers=broker.bootstrap_servers,
            schema_registry_url=registry,
            subscription_topic="outage.subscription-events",
            partner_topic="outage.partner-events",
            input_partitions=3,
        )
        ensure_topics(settings.kafka_client_config(), settings.topic_specs)
        items = [
            i
            for i in WorkloadGenerator(WorkloadSpec(seed=5, partners=10, customers=300, bad_rate=0)).events()
            if isinstance(i, dict)
        ]
        publisher = EventPublisher(settings, auto_register=True, delivery_timeout_ms=5000)
        futures: list[tuple[str, Future[str]]] = []
        for n, item in enumerate(items[:600]):
            if n == 300:
                assert publisher.flush(30) == 0
                broker.stop(remove_data=False)
            futures.append((item["event_id"], publisher.publish(item)))
        publisher.flush(20)
        assert all(f.done() for _eid, f in futures), "every event has an outcome"
        delivered = [eid for eid, f in futures if f.exception() is None]
        failed = [eid for eid, f in futures if isinstance(f.exception(), DeliveryFailed)]
        assert len(delivered) + len(failed) == len(futures), "an outcome is a delivery or a DeliveryFailed"
        assert len(delivered) >= 300, "everything flushed before the outage was delivered"
        assert failed, "events published while the broker was down are reported as undelivered"
        broker.start(keep_data=True)
        stored = read_topic(settings, settings.subscription_topic) + read_topic(settings, settings.partner_topic)
        from config.registry import registry_client
        from consumers.serde import Decoder
        from schemas import PARTNER_EVENT, SUBSCRIPTION_EVENT, SchemaName

        client = registry_client(settings)
        ids = set()
        for m in stored:
            schema: SchemaName = PARTNER_EVENT if m.topic() == settings.partner_topic else SUBSCRIPTION_EVENT
            record = Decoder(client, schema).decode(m.value())
            ids.add(record["event_id"])
        assert set(delivered) <= ids, "nothing reported delivered that the broker does not have"
    finally:
        broker.stop()


def test_produce_reports_undelivered_events_when_deliveries_do_not_complete(
    tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str
) -> None:
    """`multichannel produce` whose deliveries cannot complete (the brokers answer, but the input topic
    does not exist and is not created for it): every event is reported undelivered within its --timeout,
    in one summary line, with exit code 1 and no traceback. (Brokers that do not answer at all end the
    start with exit 3: tests/unit/test_cli_unreachable.py.)"""
    import os
    import subprocess

    from tests.integration.pipeline import PROJECT_ROOT

    lines = [
        orjson.dumps(i)
        for i in WorkloadGenerator(WorkloadSpec(seed=3, partners=5, customers=5, bad_rate=0)).events()
        if isinstance(i, dict)
    ][:5]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")}
    env |= {
        "MULTICHANNEL_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MULTICHANNEL_SCHEMA_REGISTRY_URL": schema_registry_url,
        "MULTICHANNEL_SUBSCRIPTION_TOPIC": f"absent-{tmp_path.name}",
        "MULTICHANNEL_PARTNER_TOPIC": f"absent-partners-{tmp_path.name}",
    }
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "produce", "--timeout", "2", str(events)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "published 0, rejected 0, undelivered 5" in done.stderr
    assert "Traceback" not in done.stderr
