"""The alert rules (deploy/prometheus/) and the dashboard (deploy/grafana/) read only what a running service really
exports: every metric name they use is on its /metrics, with every label they match or group by."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from tests.integration.pipeline import ServiceProcess, publish, wait_until_processed
from tests.integration.test_service import split_partner_first, workload
from tests.monitoring import (
    TARGET_LABELS,
    dashboard_expressions,
    promtool_series,
    raw_uses,
    rule_expressions,
    series_labels,
)

SettingsFactory = Callable[..., Settings]


def _scrape(base: str) -> dict[str, set[str]]:
    """Sample name → the label names its samples carry."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    labels: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels[sample.name] |= set(sample.labels)
    return dict(labels)


def _scrape_when_lag_is_published(base: str, partitions: int, deadline_s: float = 30.0) -> dict[str, set[str]]:
    """The service publishes its lag every 5 s: scrape until every owned partition has its lag, and it is 0."""
    deadline = time.monotonic() + deadline_s
    while True:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        lags = [
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "multichannel_consumer_lag"
        ]
        if len(lags) == partitions and not any(lags):
            return _scrape(base)
        assert time.monotonic() < deadline, f"lag of {partitions} partitions not published as 0: {lags}"
        time.sleep(0.2)  # the gauge is set by the service's own 5 s timer: nothing to block on


def test_every_metric_and_label_of_the_rules_and_dashboard_is_on_metrics(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """After a workload with decisions, duplicates and dead letters, /metrics has every series name the rules, the
    dashboard and the rules' promtool tests read, each with the labels they match or aggregate by; an idle
    service's lag is 0 on every partition, so the stalled-partition alert (lag > 0, never decreasing) stays quiet."""
    settings = settings_factory()
    items = workload(seed=7, customers=60)
    partners, rest = split_partner_first(items)
    publish(settings, partners)
    svc = ServiceProcess(settings, tmp_path / "svc.log").start()
    try:
        base = svc.wait_ready()
        publish(settings, rest)
        producer = Producer(settings.kafka_client_config())
        producer.produce(settings.subscription_topic, key=b"C-pill", value=b"plain text, not Avro")
        producer.flush(10)
        wait_until_processed(settings, 120, [svc])
        exported = _scrape_when_lag_is_published(base, settings.input_partitions)
        assert svc.terminate() == 0, svc.log_tail()
    finally:
        if svc.alive():
            svc.kill()

    problems: list[str] = []
    checked: set[str] = set()
    for where, expr in [*rule_expressions(), *dashboard_expressions()]:
        used = raw_uses(expr)
        available: set[str] = set(TARGET_LABELS)
        for name in sorted(used.names):
            if name not in exported:
                problems.append(f"{where}: {name} is not on /metrics")
                continue
            checked.add(name)
            available |= exported[name]
            missing = used.matched.get(name, set()) - exported[name] - TARGET_LABELS
            if missing:
                problems.append(f"{where}: {name} has no label {sorted(missing)}")
        if used.grouped - available:
            problems.append(f"{where}: grouped by {sorted(used.grouped - available)}, which none of its metrics has")
    for case, selector in promtool_series():
        name, labels = series_labels(selector)
        if name not in exported:
            problems.append(f"promtool test {case!r}: {name} is not on /metrics")
        elif labels - exported[name] - TARGET_LABELS:
            problems.append(f"promtool test {case!r}: {name} has no label {sorted(labels - exported[name])}")
    assert problems == []
    assert len(checked) >= 18, f"too few names checked: {sorted(checked)}"
    assert {"partition"} <= exported["multichannel_consumer_lag"]
    assert {"phase", "le"} <= exported["multichannel_batch_phase_seconds_bucket"]
    assert {"reason"} <= exported["multichannel_dead_letters_total"]
