"""Latency of a paced run: each event from its produce to the first output it caused."""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from confluent_kafka import Consumer, Producer

from benchmarks.common import PHASES, BenchError, Workload, scrape_metrics
from benchmarks.variants import Launch, running
from config.settings import Settings
from consumers.topics import ensure_topics


def probe_clients(settings: Settings, output_topic: str, reset: str) -> tuple[Producer, Consumer]:
    """A low-linger producer of input events and a read_committed reader of `output_topic`."""
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 1, "enable.idempotence": True})
    reader = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": reset,
            "enable.auto.commit": False,
            # A read_committed fetch can wait out fetch.wait.max.ms (500 ms by default) before the broker
            # answers with what a commit made visible: the probe must not add that to the latency it measures.
            "fetch.wait.max.ms": 5,
        }
    )
    reader.subscribe([output_topic])
    return producer, reader


@dataclass
class LatencyResult:
    p50_ms: float | None
    p99_ms: float | None
    samples: int
    breakdown: dict[str, tuple[float | None, float | None]]
    """Phase -> (p50, p99) in ms: the service's per-batch phases (from its /metrics histograms, so
    bucket bounds) and `visible`, from an output record's write to its read by a read_committed reader."""
    cpu: dict[str, float | None] = field(default_factory=dict)
    """Cores busy over the paced part of the run: the variant's process, the broker, and the probe itself
    (each one's CPU seconds over the wall seconds)."""


def _broker_process() -> psutil.Process | None:
    """The local broker's JVM, when the broker runs on this machine (None for a remote one)."""
    for proc in psutil.process_iter(["cmdline"]):
        if "kafka.Kafka" in (proc.info["cmdline"] or []):
            return proc
    return None


class CpuMeter:
    """Cores busy between `start` and `stop` for a few processes: CPU seconds over wall seconds."""

    def __init__(self, processes: dict[str, psutil.Process | None]) -> None:
        self._procs = {name: p for name, p in processes.items() if p is not None}
        self._names = list(processes)
        self._start: tuple[float, dict[str, float]] | None = None
        self.cores: dict[str, float | None] = dict.fromkeys(processes)

    def _cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self._procs.items():
            with suppress(psutil.Error):
                times = proc.cpu_times()
                out[name] = times.user + times.system
        return out

    def start(self) -> None:
        self._start = (time.monotonic(), self._cpu())

    def stop(self) -> None:
        if self._start is None:
            return
        began, before = self._start
        wall, after = time.monotonic() - began, self._cpu()
        for name in self._names:
            if name in before and name in after and wall > 0:
                self.cores[name] = round((after[name] - before[name]) / wall, 2)


@dataclass
class _Probe:
    """The latency probe's two halves, closures over its clients (the paced loop calls them thousands of times
    a second), and what they record: each event's send time, each cause's first output, and how long each
    output took from its write to its read."""

    send: Callable[[int], None]
    read: Callable[[float], None]
    sent: dict[str, float]
    seen: dict[str, float]
    visible: list[float]


def _latency_probe(
    producer: Producer,
    reader: Consumer,
    topic: str,
    workload: Workload,
    decode_cause: Callable[[list[bytes]], list[str | None]],
) -> _Probe:
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    visible: list[float] = []
    messages = iter(workload.account_messages)

    def send(n: int) -> None:
        for _ in range(n):
            event_id, key, value = next(messages)
            sent[event_id] = time.monotonic()
            producer.produce(topic, value=value, key=key)
        producer.poll(0)

    def read(timeout_s: float) -> None:
        msgs = [m for m in reader.consume(1000, timeout_s) if m.error() is None]
        now, wall_ms = time.monotonic(), time.time() * 1000
        for m, cause in zip(msgs, decode_cause([m.value() or b"" for m in msgs]), strict=True):
            if cause is not None and cause not in seen:
                seen[cause] = now
                visible.append(wall_ms - m.timestamp()[1])

    return _Probe(send, read, sent, seen, visible)


def measure_latency(
    settings: Settings,
    start: Callable[[str], Launch],
    label: str,
    workload: Workload,
    rate: float,
    seconds: float,
    decode_cause: Callable[[list[bytes]], list[str | None]],
) -> LatencyResult:
    """Produce at `rate` events/s into a fresh topic and time each event to its first output.

    The probe sends from one thread and reads in the gaps (`read(0.002)`); at rates far above the
    service's (the passthrough's half rate) its own Python loop is the bound, which the `visible` column
    shows apart from the send-to-output figure."""
    topic = f"bench-{label}-input"
    ensure_topics(settings.kafka_client_config(), {topic: (settings.input_partitions, "delete")}, 1)
    launch = start(topic)
    producer, reader = probe_clients(settings, launch.decision_topic, "earliest")
    probe = _latency_probe(producer, reader, topic, workload, decode_cause)
    measured_from = 0
    phases: dict[str, tuple[float | None, float | None]] = {}
    cores: dict[str, float | None] = {}
    try:
        with running(launch) as proc:
            # Prime: a trickle until the first output shows the variant is up and assigned.
            deadline = time.monotonic() + 120
            while not probe.seen:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"{label}: no output while priming; see {launch.log}")
                probe.send(1)
                probe.read(0.2)
            measured_from, primed = len(probe.sent), len(probe.visible)
            baseline = _batch_phases(launch.log)
            meter = CpuMeter(
                {"variant": psutil.Process(proc.pid), "broker": _broker_process(), "probe": psutil.Process()}
            )
            cores = _paced(probe, meter, rate, seconds, len(workload.account_messages) - measured_from)
            phases = _phase_quantiles(baseline, _batch_phases(launch.log))
    finally:
        reader.close()
        producer.flush(10)
    measured = list(probe.sent)[measured_from:]
    lat = sorted((probe.seen[e] - probe.sent[e]) * 1000 for e in measured if e in probe.seen)
    shown = sorted(probe.visible[primed:])
    if shown:
        phases["visible"] = (round(_pct(shown, 50), 1), round(_pct(shown, 99), 1))
    if not lat:
        return LatencyResult(None, None, 0, phases, cores)
    return LatencyResult(round(_pct(lat, 50), 1), round(_pct(lat, 99), 1), len(lat), phases, cores)


def _paced(probe: _Probe, meter: CpuMeter, rate: float, seconds: float, left: int) -> dict[str, float | None]:
    """The paced part: `rate` events/s for `seconds` (at most the `left` events of the workload), reading in
    the gaps, then a drain until half the events are answered (at most 15 s) and 3 s more. Returns the cores
    busy over the paced part."""
    send, read, sent, seen = probe.send, probe.read, probe.sent, probe.seen
    # The probe's own garbage collector must not pause it: a full collection over the bench's heap (the
    # workload, the results so far) takes hundreds of ms, and every record in flight would count it.
    gc.collect()
    gc.freeze()
    gc.disable()
    meter.start()  # the paced part only: not the priming, not the drain
    began = time.monotonic()
    total = min(int(rate * seconds), left)
    done = 0
    try:
        while done < total:
            due = min(total, int((time.monotonic() - began) * rate)) - done
            if due > 0:
                send(due)
                done += due
            read(0.002)
        meter.stop()
        cores = meter.cores
        drain_until = time.monotonic() + 15
        while time.monotonic() < drain_until and len(seen) < len(sent) * 0.5:
            read(0.2)
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            read(0.2)
    finally:
        gc.enable()
    return cores


def _batch_phases(log: Path) -> dict[str, list[tuple[float, float]]]:
    """The service's phase histograms as (upper bound, cumulative count) per phase; {} for a variant
    without them (the passthrough, the peer)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, labels, value in scrape_metrics(log).get("multichannel_batch_phase_seconds", ()):
        if name.endswith("_bucket"):
            out.setdefault(labels["phase"], []).append((float(labels["le"]), value))
    return out


def _phase_quantiles(
    before: dict[str, list[tuple[float, float]]], after: dict[str, list[tuple[float, float]]]
) -> dict[str, tuple[float | None, float | None]]:
    """p50 and p99 (ms, the bucket's upper bound) of each phase over the batches between two scrapes."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for phase in PHASES:
        if phase not in after:
            continue
        earlier = dict(before.get(phase, []))
        buckets = sorted((le, count - earlier.get(le, 0.0)) for le, count in after[phase])
        total = buckets[-1][1] if buckets else 0.0
        if total <= 0:
            continue

        def bound(q: float, buckets: list[tuple[float, float]] = buckets, total: float = total) -> float | None:
            le = next(le for le, count in buckets if count >= total * q)
            return None if le == float("inf") else round(le * 1000, 1)

        out[phase] = (bound(0.5), bound(0.99))
    return out


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q / 100))]
