"""Service acceptance beyond the happy path: rebalancing, partner changes across partitions,
poison pills (also on the partner topic, across a restart), readiness and metrics."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from config.registry import registry_client
from config.settings import Settings
from consumers.topics import ensure_topics
from producers.generator import BadRecord
from producers.serde import EventEncoder
from tests.integration.pipeline import (
    ServiceProcess,
    by_subscription,
    expected_outputs,
    publish,
    read_outputs,
    read_topic,
    wait_until_processed,
)
from tests.integration.test_service import assert_same_as_classify, split_partner_first, workload

SettingsFactory = Callable[..., Settings]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_rebalance_second_instance_takes_over_without_gap_or_duplicate(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """When one of two instances stops, the other restores its partitions and the outputs have no gap or duplicate."""
    settings = settings_factory(batch_size=100)
    items = workload(seed=21, customers=400)
    partners, rest = split_partner_first(items)
    half = len(rest) // 2
    publish(settings, partners)
    first = ServiceProcess(settings, tmp_path / "a.log", instance_id="a").start()
    second = ServiceProcess(settings, tmp_path / "b.log", instance_id="b").start()
    try:
        first.wait_ready()
        second.wait_ready()
        publish(settings, rest[:half])
        wait_until_processed(settings, 120, [first, second])
        assert "partitions_restored" in second.log_path.read_text()
        assert second.terminate() == 0, second.log_tail()
        publish(settings, rest[half:])
        wait_until_processed(settings, 120, [first])
        assert first.terminate() == 0, first.log_tail()
    finally:
        for svc in (first, second):
            if svc.alive():
                svc.kill()
    log = first.log_path.read_text()
    assert log.count("partitions_restored") >= 2, "the survivor restored the partitions it took over"
    assert_same_as_classify(settings, partners + rest)
    input_partition = {m.key(): m.partition() for m in read_topic(settings, settings.subscription_topic)}
    changelog = read_topic(settings, settings.changelog_topic)
    assert changelog
    for m in changelog:
        if (m.key() or b"").startswith(b"__partner-"):  # a partner partition's checkpoint, not an account
            continue
        customer = (m.key() or b"").split(b":", 1)[1].split(b"\x1f", 1)[0]  # an account's key, or one of its entities
        assert m.partition() == input_partition[customer], "changelog is co-partitioned with the input"


def _account_events(partner: str, customers: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, customer in enumerate(customers):
        out.append(
            {
                "event_type": "subscription_purchased",
                "event_id": f"buy-{customer}",
                "occurred_at": f"2026-03-01T10:{i:02d}:00Z",
                "partner_id": partner,
                "customer_id": customer,
                "subscription_id": f"S-{customer}",
                "offer_id": "O365-E3",
                "billing_model": "license",
                "channel": "microsoft_direct",
                "quantity": 10,
                "term_start": "2026-01-01",
                "term_end": "2033-01-01",
            }
        )
    return out


def test_partner_moving_into_csp_reclassifies_accounts_in_every_partition_once(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """A partner joining CSP re-classifies each of its accounts, across partitions, exactly once."""
    settings = settings_factory()
    customers = [f"C-{i}" for i in range(12)]
    before = {
        "event_type": "partner_program_changed",
        "event_id": "px-none",
        "occurred_at": "2026-01-01T00:00:00Z",
        "partner_id": "PX",
        "program": "none",
        "indirect_provider_ids": [],
    }
    change = dict(before, event_id="px-csp", occurred_at="2026-04-01T00:00:00Z", program="csp_direct")
    purchases = _account_events("PX", customers)
    publish(settings, [before])
    svc = ServiceProcess(settings, tmp_path / "svc.log").start()
    try:
        svc.wait_ready()
        publish(settings, purchases)
        wait_until_processed(settings, 60, [svc])
        publish(settings, [change])
        wait_until_processed(settings, 60, [svc])
        # the partner change is applied by the service's next turns; read until its decisions are committed
        decisions: list[dict[str, Any]] = []
        for _ in range(120):
            decisions, _statuses, _dlq = read_outputs(settings)
            if sum(1 for d in decisions if d["caused_by_event_id"] == "px-csp") >= len(customers):
                break
        assert svc.terminate() == 0
    finally:
        if svc.alive():
            svc.kill()
    caused = [d for d in decisions if d["caused_by_event_id"] == "px-csp"]
    assert sorted(d["customer_id"] for d in caused) == sorted(customers), "each affected decision exactly once"
    assert {d["rule"] for d in caused} == {"R9"}
    from tests.integration.pipeline import input_end_offsets

    used = {p for p, end in input_end_offsets(settings).items() if end > 0}
    assert len(used) >= 2, "the accounts span several partitions"
    want, _ = expected_outputs([before, *purchases, change])
    assert by_subscription(decisions) == by_subscription(want)


def test_poison_pills_go_to_dead_letters_and_good_records_flow(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """Bad records go to dead letters with their reason and original headers, once, while good records are decided."""
    settings = settings_factory()
    good = _account_events("PY", [f"G-{i}" for i in range(6)])
    partner = {
        "event_type": "partner_program_changed",
        "event_id": "py-csp",
        "occurred_at": "2026-01-01T00:00:00Z",
        "partner_id": "PY",
        "program": "csp_indirect_provider",
        "indirect_provider_ids": [],
    }
    publish(settings, [partner])
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    valid_value = encoder.encode_subscription_event(
        {**good[0], "event_id": "x", "occurred_at": __import__("datetime").datetime(2026, 3, 1), "term_start": None}
        | {"term_end": None, "billing_model": "usage"}
    )
    raw_pills: list[tuple[bytes | None, bytes, str]] = [
        (b"G-0", b"plain text, not Avro", "SCHEMA_MISMATCH"),
        (b"G-1", b"\x01\x00\x00\x00\x01rest", "SCHEMA_MISMATCH"),
        (b"G-2", b"\x00\x00\x0f\x42\x3fbody", "SCHEMA_MISMATCH"),
        (b"G-3", valid_value[:-4], "SCHEMA_MISMATCH"),
        (b"someone-else", valid_value, "KEY_MISMATCH"),
    ]
    bad_event = dict(good[1], event_id="bad-term", term_end="2025-01-01")
    unknown = dict(good[2], event_id="bad-type", event_type="subscription_paused")
    producer = Producer(settings.kafka_client_config())
    svc = ServiceProcess(settings, tmp_path / "svc.log").start()
    try:
        svc.wait_ready()
        for i, event in enumerate(good):
            publish(settings, [event])
            if i < len(raw_pills):
                key, value, _reason = raw_pills[i]
                producer.produce(settings.subscription_topic, key=key, value=value, headers=[("trace", b"t-%d" % i)])
                producer.flush(10)
        publish(settings, [BadRecord("INVALID_FIELD", bad_event), BadRecord("UNKNOWN_EVENT_TYPE", unknown)])
        producer.produce(settings.partner_topic, key=b"PZ", value=b"not a partner event")
        producer.flush(10)
        wait_until_processed(settings, 60, [svc])
        base = svc.wait_ready()
        decisions, _statuses, dead = _wait_for_dead_letters(settings, 8)
        _status, metrics = _get(f"{base}/metrics")
        assert svc.terminate() == 0
        # a restart re-reads the partner topic: its dead letter must not be written twice
        again = ServiceProcess(settings, tmp_path / "svc2.log").start()
        again.wait_ready()
        publish(settings, _account_events("PY", ["G-late"]))
        wait_until_processed(settings, 60, [again])
        assert again.terminate() == 0
    finally:
        for proc in (svc,):
            if proc.alive():
                proc.kill()
    _d, _s, dead_after = read_outputs(settings)
    reasons = Counter(dict(m.headers())["error.reason"].decode() for m in dead)
    assert reasons == Counter({"SCHEMA_MISMATCH": 5, "KEY_MISMATCH": 1, "INVALID_FIELD": 1, "UNKNOWN_EVENT_TYPE": 1})
    by_value = {m.value(): m for m in dead}
    for key, value, reason in raw_pills:
        msg = by_value[value]
        headers = dict(msg.headers())
        assert msg.key() == key and headers["error.reason"].decode() == reason
        assert headers["source.topic"].decode() == settings.subscription_topic
        assert headers["trace"].startswith(b"t-"), "original headers are kept"
        assert {"error.message", "source.partition", "source.offset", "source.timestamp"} <= set(headers)
    assert len(dead_after) == len(dead), "no dead letter repeated after the restart"
    assert sorted(d["customer_id"] for d in decisions) == [f"G-{i}" for i in range(6)]
    # metrics of the first run: 6 good + 1 partner event applied; 8 dead letters (7 subscription + 1 partner)
    assert _metric(metrics, "multichannel_event_outcomes_total", outcome="applied") == 7
    assert _metric(metrics, "multichannel_event_outcomes_total", outcome="dead_letter") == 8
    assert _metric(metrics, "multichannel_dead_letters_total", reason="SCHEMA_MISMATCH") == 5
    assert _metric(metrics, "multichannel_records_out_total", kind="decision") == 6
    assert _metric(metrics, "multichannel_decisions_total", decision="ELIGIBLE_FOR_RELATIONSHIP_REQUEST") == 6
    assert _metric(metrics, "multichannel_accounts_held") == 6
    # every committed batch is timed in each of its phases; `wait` needs input records with a timestamp
    batches = _metric(metrics, "multichannel_transaction_duration_seconds_count")
    assert batches >= 1
    for phase in ("process", "produce", "offsets", "commit"):
        assert _metric(metrics, "multichannel_batch_phase_seconds_count", phase=phase) == batches, phase
    assert 1 <= _metric(metrics, "multichannel_batch_phase_seconds_count", phase="wait") <= batches


def _wait_for_dead_letters(settings: Settings, count: int) -> tuple[list[Any], list[Any], list[Any]]:
    for _ in range(60):
        decisions, statuses, dead = read_outputs(settings)
        if len(dead) >= count:
            return decisions, statuses, dead
    raise AssertionError(f"fewer than {count} dead letters")


def test_ready_only_after_assignment_and_restore(settings_factory: SettingsFactory, tmp_path: Path) -> None:
    """The service is live at once but ready only after its partitions are assigned and restored."""
    settings = settings_factory()
    admin = AdminClient(settings.kafka_client_config())
    for future in admin.delete_topics([settings.subscription_topic], operation_timeout=30).values():
        future.result()
    svc = ServiceProcess(settings, tmp_path / "svc.log").start()
    try:
        base = svc.ops_url()
        for _ in range(50):
            if _get(f"{base}/healthz")[0] == 200:
                break
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz")[0] == 503, "no partition assigned and restored yet"
        ensure_topics(settings.kafka_client_config(), settings.topic_specs)
        svc.wait_ready()
        status, body = _get(f"{base}/metrics")
        assert status == 200 and _metric(body, "multichannel_ready") == 1
        assert _metric(body, "multichannel_partitions_owned") == settings.input_partitions
        assert svc.terminate() == 0
    finally:
        if svc.alive():
            svc.kill()


def test_fenced_instance_exits_non_zero_and_the_new_one_carries_on(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """Two replicas wrongly given the same instance id: the newer producer fences the older one, whose
    next transaction fails fatally; it exits 3 with a clear log line, and nothing is lost or doubled."""
    settings = settings_factory(batch_size=50)
    items = workload(seed=33, customers=200)
    partners, rest = split_partner_first(items)
    publish(settings, partners)
    old = ServiceProcess(settings, tmp_path / "old.log", instance_id="same").start()
    new: ServiceProcess | None = None
    try:
        old.wait_ready()
        new = ServiceProcess(settings, tmp_path / "new.log", instance_id="same").start()
        new.wait_ready()
        publish(settings, rest)
        assert old.proc is not None
        assert old.proc.wait(120) == 3, old.log_tail()
        assert "fatal_client_error" in old.log_path.read_text()
        wait_until_processed(settings, 120, [new])
        assert new.terminate() == 0, new.log_tail()
    finally:
        for svc in (old, new):
            if svc is not None and svc.alive():
                svc.kill()
    assert_same_as_classify(settings, partners + rest)
