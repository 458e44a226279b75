"""`multichannel bench`: throughput, latency and recovery of the service next to a raw passthrough
and a Quix Streams peer, against one broker and registry, in one run.

Every variant reads the same pre-produced input topic with a group of its own and writes to
topics of its own. Throughput comes from the group's committed offsets, sampled from outside the
process (first to last commit); CPU time and peak RSS from /proc. Latency is measured in a second,
paced run at half the variant's median rate: the time from producing an event to seeing its
decision (for the passthrough: its copy) with a read_committed consumer.
"""

from __future__ import annotations

import gc
import json
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.ceiling import measure_ceiling, measure_state_memory
from config.registry import registry_client
from config.settings import PROJECT_ROOT, Settings
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from producers.generator import BadRecord, Shape, WorkloadGenerator, WorkloadSpec
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION, SUBSCRIPTION_EVENT

console = Console(stderr=True)
QUIX_REQUIREMENT = "quixstreams==3.28.*"
PASSTHROUGH = "raw passthrough"
ALOS = "service, at-least-once"
EOS = "service, exactly-once"
PEER = "Quix Streams peer, exactly-once"
CEILING = "service work without Kafka (ceiling)"
REALISTIC_EOS = "service, exactly-once, realistic workload"
"""The exactly-once service on the generator's CSP shape (heavy-tailed accounts, month-boundary terms, late
partner changes), on an input topic of its own with as many events."""


class BenchError(Exception):
    """A variant failed or timed out; the message says which and where its log is."""


@dataclass(frozen=True)
class ShapeOptions:
    """Sizes of the CSP data shape sections (`benchmarks.shapes`); `QUICK_SHAPES` for a trial run."""

    sizes: tuple[int, ...] = (10, 1_000, 10_000, 50_000)
    """Subscriptions of the accounts whose changelog bytes per event are measured."""
    further_events: int = 200
    """Events sent to each of them, one transaction apiece, once it is built."""
    giant: int = 50_000
    """Subscriptions of the account that is processed, SIGKILLed and restored."""
    storm_terms: int = 200_000
    storm_accounts: int = 20_000
    seed: int = 42


QUICK_SHAPES = ShapeOptions(
    sizes=(10, 100, 1_000), further_events=20, giant=1_000, storm_terms=5_000, storm_accounts=500
)


@dataclass(frozen=True)
class BenchOptions:
    events: int = 1_000_000
    accounts: int = 100_000
    partitions: int = 12
    runs: int = 3
    latency_seconds: float = 20.0
    profile_seconds: float = 30.0
    peer: bool = True
    seed: int = 42
    kills: int = 12
    subscription_counts: tuple[int, ...] = (4, 6, 8, 10, 12)
    """Subscriptions per account the workload draws from: about ten events per account with these."""
    shapes: ShapeOptions | None = field(default_factory=ShapeOptions)
    """The CSP data shape sections and the realistic-workload throughput row; None leaves them out."""
    docs_dir: Path = PROJECT_ROOT / "docs"
    work_dir: Path = PROJECT_ROOT / ".cache" / "bench"


@dataclass
class Workload:
    partner_messages: list[tuple[bytes, bytes]]
    account_messages: list[tuple[str, bytes, bytes]]
    """(event_id, key, value) in publication order."""
    accounts: list[tuple[str, str]]


@dataclass
class RunResult:
    events_per_s: float
    seconds: float
    cpu_s_per_1k: float
    peak_rss_mb: float
    bytes_per_account: float | None


@dataclass
class VariantResult:
    name: str
    runs: list[RunResult] = field(default_factory=list)
    latency_rate: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_samples: int = 0
    latency_breakdown: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    latency_cpu: dict[str, float | None] = field(default_factory=dict)

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------- workload
def _avoid_near_deadlines(event: dict[str, Any], today: date) -> None:
    """No term may end today or tomorrow: a timer firing during the run would make the
    comparison with the peer (which has no timers) depend on the hour of the run."""
    end = event.get("term_end")
    if end is not None and date.fromisoformat(end) in (today, today + timedelta(days=1)):
        event["term_end"] = (date.fromisoformat(end) + timedelta(days=2)).isoformat()


def build_workload(settings: Settings, opts: BenchOptions, shape: Shape = "uniform") -> Workload:
    """`opts.events` account events over about `opts.accounts` accounts (ten events each), plus the
    partner table. Valid events only: the peer has no dead-letter path to compare. `realistic`: the
    generator's CSP shape (heavy-tailed account sizes up to 20,000 subscriptions, terms ending on the 1st
    of a month, late partner changes), cut at `opts.events` in arrival order."""
    today = datetime.now(UTC).date()
    spec = WorkloadSpec(
        seed=opts.seed,
        partners=max(50, opts.accounts // 100),
        customers=max(1, int(opts.accounts / 1.25)),
        start=datetime.combine(today - timedelta(days=420), datetime.min.time(), tzinfo=UTC),
        days=300,
        bad_rate=0.0,
        duplicate_rate=0.01,
        subscription_counts=opts.subscription_counts,
        shape=shape,
    )
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    partners: list[tuple[bytes, bytes]] = []
    accounts: list[tuple[str, bytes, bytes]] = []
    seen: dict[tuple[str, str], None] = {}
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, BadRecord):
            continue
        _avoid_near_deadlines(item, today)
        event = parse_event(item)
        record = event_to_dict(event)
        if isinstance(event, PartnerProgramChanged):
            partners.append((event.partner_id.encode(), encoder.encode_partner_event(record)))
            continue
        accounts.append((event.event_id, event.customer_id.encode(), encoder.encode_subscription_event(record)))
        seen[event.partner_id, event.customer_id] = None
        if len(accounts) >= opts.events:
            break
    return Workload(partners, accounts, list(seen))


def produce_all(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(
        {**settings.kafka_client_config(), "linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True}
    )
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise BenchError(f"could not publish the workload to {topic}")


def topic_size(settings: Settings, topic: str, partitions: int) -> int:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-size-{uuid.uuid4().hex}"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------- variants
@dataclass
class Launch:
    """How to start one run of a variant; `group` is the group whose commits measure progress."""

    argv: list[str]
    env: dict[str, str]
    group: str
    decision_topic: str
    log: Path


class Variants:
    """Builds the command line of each variant for a given input topic and run label."""

    def __init__(self, settings: Settings, opts: BenchOptions, peer_python: Path | None) -> None:
        self.settings = settings
        self.opts = opts
        self.peer_python = peer_python
        self.run_dir = opts.work_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _topics(self, label: str) -> Settings:
        s = self.settings.model_copy(
            update={
                "application_id": f"bench-{label}",
                "decision_topic": f"bench-{label}-decisions",
                "status_topic": f"bench-{label}-status",
                "dead_letter_topic": f"bench-{label}-dead-letters",
                "input_partitions": self.opts.partitions,
                "output_partitions": self.opts.partitions,
            }
        )
        ensure_topics(s.kafka_client_config(), s.topic_specs, 1, s.topic_configs)
        return s

    def service(self, label: str, input_topic: str, guarantee: str, **extra: Any) -> tuple[Launch, Settings]:
        s = self._topics(label).model_copy(
            update={
                "subscription_topic": input_topic,
                "processing_guarantee": guarantee,
                "auto_register_schemas": True,
                "metrics_port": 0,
                "log_level": "INFO",
                **extra,
            }
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")}
        env.update(s.to_env())
        argv = [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "run"]
        return Launch(argv, env, s.application_id, s.decision_topic, self.run_dir / f"{label}.log"), s

    def passthrough(self, label: str, input_topic: str) -> Launch:
        s = self._topics(label)
        argv = [
            sys.executable,
            "-m",
            "benchmarks.passthrough",
            s.bootstrap_servers,
            input_topic,
            s.decision_topic,
            s.application_id,
        ]
        return Launch(argv, dict(os.environ), s.application_id, s.decision_topic, self.run_dir / f"{label}.log")

    def peer(self, label: str, input_topic: str) -> Launch:
        assert self.peer_python is not None
        s = self._topics(label)
        conf = {
            "bootstrap_servers": s.bootstrap_servers,
            "schema_registry_url": s.schema_registry_url,
            "group": s.application_id,
            "input_topic": input_topic,
            "partner_topic": s.partner_topic,
            "decision_topic": s.decision_topic,
            "status_topic": s.status_topic,
            "state_dir": str(self.run_dir / f"{label}-state"),
        }
        path = self.run_dir / f"{label}.json"
        path.write_text(json.dumps(conf))
        argv = [str(self.peer_python), str(Path(__file__).with_name("peer_quix.py")), str(path)]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        return Launch(argv, env, s.application_id, s.decision_topic, self.run_dir / f"{label}.log")


def drop_topics(settings: Settings, label: str, *extra: str) -> None:
    """Delete a finished run's topics (its outputs, changelog and partner table, and `extra`): the later runs
    should not share the broker with the logs, compaction and partitions of every earlier one."""
    names = [
        f"bench-{label}-{suffix}"
        for suffix in ("decisions", "status", "dead-letters", "state-changelog", "partner-table")
    ]
    admin = AdminClient(settings.kafka_client_config())
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in [*names, *extra] if t in existing]
    for future in admin.delete_topics(doomed, operation_timeout=30).values() if doomed else ():
        with suppress(KafkaException):
            future.result()


@contextmanager
def running(launch: Launch) -> Iterator[subprocess.Popen[bytes]]:
    """The variant's process, stopped with SIGTERM (then SIGKILL) however the block ends."""
    with launch.log.open("wb") as log:
        proc = subprocess.Popen(launch.argv, env=launch.env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_throughput(
    settings: Settings, launch: Launch, topic: str, total: int, accounts: int | None, timeout_s: float
) -> RunResult:
    """Start the variant and follow its group's committed offsets until they cover the topic."""
    watcher = Consumer({**settings.kafka_client_config(), "group.id": launch.group, "enable.auto.commit": False})
    partitions = [TopicPartition(topic, p) for p in range(settings.input_partitions)]
    try:
        with running(launch) as proc:
            ps = psutil.Process(proc.pid)
            deadline = time.monotonic() + timeout_s
            start: tuple[float, int, float, int] | None = None
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"{launch.argv[-1]} exited with {proc.returncode}; see {launch.log}")
                committed = sum(max(tp.offset, 0) for tp in watcher.committed(partitions, timeout=10))
                now = time.monotonic()
                times = ps.cpu_times()
                cpu = times.user + times.system
                if start is None and committed > 0:
                    start = (now, committed, cpu, ps.memory_info().rss)
                if committed >= total and start is not None:
                    break
                if now > deadline:
                    raise BenchError(f"{launch.log.stem}: {committed} of {total} events in {timeout_s:.0f} s")
                time.sleep(0.1)  # sampling period of the outside observer
            peak = _peak_rss_mb(proc.pid)
    finally:
        watcher.close()
    t0, n0, cpu0, rss0 = start
    seconds = max(now - t0, 1e-6)
    events = max(committed - n0, 1)
    return RunResult(
        events_per_s=round(events / seconds),
        seconds=round(seconds, 2),
        cpu_s_per_1k=round((cpu - cpu0) / events * 1000, 4),
        peak_rss_mb=round(peak, 1),
        bytes_per_account=None if not accounts else round((peak * 1024 * 1024 - rss0) / accounts),
    )


# ---------------------------------------------------------------------------------- latency
def _probe_clients(settings: Settings, output_topic: str, reset: str) -> tuple[Producer, Consumer]:
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
    producer, reader = _probe_clients(settings, launch.decision_topic, "earliest")
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

    measured_from = 0
    phases: dict[str, tuple[float | None, float | None]] = {}
    cores: dict[str, float | None] = {}
    try:
        with running(launch) as proc:
            # Prime: a trickle until the first output shows the variant is up and assigned.
            deadline = time.monotonic() + 120
            while not seen:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"{label}: no output while priming; see {launch.log}")
                send(1)
                read(0.2)
            measured_from, primed = len(sent), len(visible)
            baseline = _batch_phases(launch.log)
            meter = CpuMeter(
                {"variant": psutil.Process(proc.pid), "broker": _broker_process(), "probe": psutil.Process()}
            )
            # The probe's own garbage collector must not pause it: a full collection over the bench's heap (the
            # workload, the results so far) takes hundreds of ms, and every record in flight would count it.
            gc.collect()
            gc.freeze()
            gc.disable()
            meter.start()  # the paced part only: not the priming, not the drain
            began = time.monotonic()
            total = min(int(rate * seconds), len(workload.account_messages) - measured_from)
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
            phases = _phase_quantiles(baseline, _batch_phases(launch.log))
    finally:
        reader.close()
        producer.flush(10)
    measured = list(sent)[measured_from:]
    lat = sorted((seen[e] - sent[e]) * 1000 for e in measured if e in seen)
    shown = sorted(visible[primed:])
    if shown:
        phases["visible"] = (round(_pct(shown, 50), 1), round(_pct(shown, 99), 1))
    if not lat:
        return LatencyResult(None, None, 0, phases, cores)
    return LatencyResult(round(_pct(lat, 50), 1), round(_pct(lat, 99), 1), len(lat), phases, cores)


PHASES = ("wait", "process", "produce", "offsets", "commit")
"""The service's batch phases (`multichannel_batch_phase_seconds`), in the order a batch goes through them."""


def _ops_port(log: Path) -> int | None:
    found = _log_event(log, "ops_endpoints")
    return None if found is None else int(found["port"])


def _batch_phases(log: Path) -> dict[str, list[tuple[float, float]]]:
    """The service's phase histograms as (upper bound, cumulative count) per phase; {} for a variant
    without them (the passthrough, the peer)."""
    from prometheus_client.parser import text_string_to_metric_families

    port = _ops_port(log)
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "multichannel_batch_phase_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                out.setdefault(sample.labels["phase"], []).append((float(sample.labels["le"]), sample.value))
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


# ---------------------------------------------------------------------------------- peer venv
def peer_python(opts: BenchOptions, uv: Path) -> Path:
    """A virtual environment of its own for Quix Streams (its pins clash with the product's)."""
    venv = opts.work_dir / "quix-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists() or marker.read_text() != QUIX_REQUIREMENT:
        subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        subprocess.run([str(uv), "pip", "install", "--quiet", QUIX_REQUIREMENT], check=True, env=env)
        marker.write_text(QUIX_REQUIREMENT)
    return python


# ---------------------------------------------------------------------------------- comparison
DecisionKey = tuple[str, str, str]


def read_decisions(settings: Settings, topic: str) -> dict[DecisionKey, list[tuple[Any, ...]]]:
    """Every committed decision of `topic`, per subscription in emission order (no timestamps)."""
    decoder = Decoder(registry_client(settings), SUBSCRIPTION_DECISION)
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-compare-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.output_partitions)])
    open_partitions = set(range(settings.output_partitions))
    out: dict[DecisionKey, list[tuple[Any, ...]]] = {}
    try:
        while open_partitions:
            msgs = consumer.consume(5000, 1.0)
            good = []
            for m in msgs:
                if m.error() is not None:
                    open_partitions.discard(m.partition() or 0)
                else:
                    good.append(m.value() or b"")
            for rec in decoder.decode_values(good):
                if isinstance(rec, dict):
                    key = (rec["partner_id"], rec["customer_id"], rec["subscription_id"])
                    out.setdefault(key, []).append(
                        (
                            rec["decision"],
                            rec["reason"],
                            rec["rule"],
                            tuple(rec["next_actions"]),
                            rec["blocked_until"],
                            tuple(rec["relationship_via_partner_ids"]),
                        )
                    )
    finally:
        consumer.close()
    return out


def compare_decisions(ours: dict[DecisionKey, list[Any]], peer: dict[DecisionKey, list[Any]]) -> str:
    """Raise BenchError naming the first differences; return a one-line summary when equal."""
    differ = sorted(k for k in ours.keys() | peer.keys() if ours.get(k) != peer.get(k))
    if differ:
        sample = "; ".join(f"{k}: ours {ours.get(k)} peer {peer.get(k)}" for k in differ[:3])
        raise BenchError(f"the peer's decisions differ from ours for {len(differ)} subscriptions: {sample}")
    records = sum(len(v) for v in ours.values())
    return f"equal: {records} decisions over {len(ours)} subscriptions"


# ---------------------------------------------------------------------------------- recovery
def _log_event(path: Path, name: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if f'"{name}"' in line:
            try:
                parsed: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if parsed.get("event") == name:
                return parsed
    return None


def _recovery_breakdown(log: Path, started_wall: float, first_decision_wall: float) -> dict[str, float | None]:
    """Seconds of each phase of a restart, from the service's log lines (wall-clock timestamps)."""

    def at(name: str) -> float | None:
        event = _log_event(log, name)
        return None if event is None else datetime.fromisoformat(event["timestamp"]).timestamp()

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    starting, txn, partners = at("starting"), at("transactions_initialised"), at("partner_table_loaded")
    restored_event = _log_event(log, "partitions_restored") or {}
    restored = at("partitions_restored")
    restore_s = restored_event.get("seconds")
    joined = None if restored is None or restore_s is None else restored - restore_s
    return {
        "process start and imports": span(started_wall, starting),
        "init_transactions": span(starting, txn),
        "partner table catch-up": span(txn, partners),
        "group join and assignment": span(partners, joined),
        "restore": restore_s,
        "first batch to a decision seen by a read_committed reader": span(restored, first_decision_wall),
    }


def consume_rate(settings: Settings, topic: str, partitions: int) -> int:
    """Records per second a bare client reads `topic` from the start to its end, keeping each record's
    value: what the restore's client can do with the changelog's records, without the service's work."""
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-consume-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        kept: dict[bytes | None, bytes | None] = {}
        count, started, pending = 0, time.monotonic(), set(ends)
        while pending:
            msgs = consumer.consume(50_000, 0) or [m for m in [consumer.poll(0.05)] if m is not None]
            for m in msgs:
                if m.error() is None:
                    kept[m.key()] = m.value()
                    count += 1
            for tp in consumer.position([TopicPartition(topic, p) for p in sorted(pending)]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
        return round(count / max(time.monotonic() - started, 1e-6))
    finally:
        consumer.close()


def measure_recovery(
    variants: Variants, settings: Settings, label: str, input_topic: str, workload: Workload
) -> dict[str, Any]:
    """Restart an exactly-once run that has processed the whole input (`label`): time its restore and
    its first decision; then SIGKILL it during a steady trickle and time the next decision."""
    launch, s = variants.service(label, input_topic, "exactly_once_v2", static_membership=True)
    decoder = Decoder(registry_client(settings), SUBSCRIPTION_DECISION)
    result: dict[str, Any] = {}
    t_start, t_start_wall = time.monotonic(), time.time()
    restart_log = launch.log.with_name(f"{label}-restart.log")
    launch_b = Launch(launch.argv, launch.env, launch.group, launch.decision_topic, restart_log)
    producer, reader = _probe_clients(s, s.decision_topic, "latest")
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    counter = iter(range(10**9))

    def trickle() -> None:
        i = next(counter)
        pid, cid = workload.accounts[i % len(workload.accounts)]
        event = {
            "event_type": "subscription_purchased",
            "event_id": f"bench-recovery-{uuid.uuid4().hex}",
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "partner_id": pid,
            "customer_id": cid,
            "subscription_id": f"S-bench-recovery-{i}",
            "offer_id": "AZURE-PLAN",
            "billing_model": "usage",
            "channel": "microsoft_direct",
        }
        value = encoder.encode_subscription_event(event_to_dict(parse_event(event)))
        sent[event["event_id"]] = time.monotonic()
        producer.produce(input_topic, value=value, key=cid.encode())
        producer.poll(0)

    def read() -> None:
        msgs = [m for m in reader.consume(500, 0.05) if m.error() is None]
        now = time.monotonic()
        for rec in decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict) and rec["caused_by_event_id"] in sent:
                seen.setdefault(rec["caused_by_event_id"], now)

    def steady(until: Callable[[], bool], limit_s: float, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + limit_s
        while not until():
            if time.monotonic() > deadline:
                raise BenchError(f"recovery: no decision in {limit_s:.0f} s (pid {proc.pid}); see {variants.run_dir}")
            trickle()
            read()

    try:
        with running(launch_b) as proc_b:
            steady(lambda: bool(seen), 300, proc_b)
            restored = _log_event(restart_log, "partitions_restored") or {}
            result["restart_to_first_decision_s"] = round(min(seen.values()) - t_start, 2)
            result["restore_records"] = restored.get("changelog_records")
            result["restore_accounts"] = restored.get("accounts")
            result["restore_seconds"] = restored.get("seconds")
            result["restore_records_per_s"] = restored.get("records_per_s")
            result["changelog_consume_records_per_s"] = consume_rate(s, s.changelog_topic, s.input_partitions)
            first_wall = t_start_wall + (min(seen.values()) - t_start)
            result["breakdown"] = _recovery_breakdown(restart_log, t_start_wall, first_wall)
            steady(lambda: len(seen) >= 50, 60, proc_b)
            proc_b.kill()
            killed = time.monotonic()
            proc_b.wait()
        kill_log = launch.log.with_name(f"{label}-after-kill.log")
        with running(Launch(launch.argv, launch.env, launch.group, launch.decision_topic, kill_log)) as proc_c:
            steady(lambda: any(sent[e] > killed for e in seen), 300, proc_c)
            first = min(t for e, t in seen.items() if sent[e] > killed)
            result["sigkill_to_first_decision_s"] = round(first - killed, 2)
            again = _log_event(kill_log, "partitions_restored") or {}
            result["restore_after_kill_seconds"] = again.get("seconds")
    finally:
        reader.close()
        producer.flush(10)
    return result


def _owned_partitions(log: Path) -> set[int]:
    """The input partitions an instance held when its log ends: restored ones minus revoked ones."""
    owned: set[int] = set()
    if not log.exists():
        return owned
    for line in log.read_text(errors="replace").splitlines():
        if '"partitions_' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "partitions_restored":
            owned |= set(entry.get("partitions", []))
        elif entry.get("event") == "partitions_revoked":
            owned -= set(entry.get("partitions", []))
    return owned


def measure_repeated_kills(
    variants: Variants, settings: Settings, label: str, workload: Workload, kills: int, seed: int
) -> dict[str, Any]:
    """Three instances with the shipped defaults (static membership) on a steady trickle of events into a
    fresh input topic; every 3-10 s (seeded) one of them is SIGKILLed and started again at once, as a
    supervisor would. Per kill: the time from the kill to the first decision for an event sent after it on
    a partition the killed instance owned."""
    topic = f"bench-{label}-input"
    ensure_topics(settings.kafka_client_config(), {topic: (settings.input_partitions, "delete")}, 1)
    launch, s = variants.service(label, topic, "exactly_once_v2")
    producer, reader = _probe_clients(s, s.decision_topic, "earliest")  # delivery reports name the partitions
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    decoder = Decoder(registry_client(s), SUBSCRIPTION_DECISION)
    rng = random.Random(seed)
    sent: dict[str, float] = {}
    partition: dict[str, int] = {}
    seen: dict[str, float] = {}
    counter = iter(range(10**9))
    rate = 200.0

    def delivered(event_id: str) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is None:
                partition[event_id] = msg.partition()

        return report

    def trickle(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            pid, cid = workload.accounts[i % len(workload.accounts)]
            event_id = f"bench-kills-{i}"
            event = {
                "event_type": "subscription_purchased",
                "event_id": event_id,
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "partner_id": pid,
                "customer_id": cid,
                "subscription_id": f"S-bench-kills-{i}",
                "offer_id": "AZURE-PLAN",
                "billing_model": "usage",
                "channel": "microsoft_direct",
            }
            value = encoder.encode_subscription_event(event_to_dict(parse_event(event)))
            sent[event_id] = time.monotonic()
            producer.produce(topic, value=value, key=cid.encode(), on_delivery=delivered(event_id))
        producer.poll(0)

    def read() -> None:
        msgs = [m for m in reader.consume(500, 0.02) if m.error() is None]
        now = time.monotonic()
        for rec in decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict):
                seen.setdefault(rec["caused_by_event_id"], now)

    incarnations = [0, 0, 0]
    procs: list[subprocess.Popen[bytes] | None] = [None, None, None]

    def log_of(i: int) -> Path:
        return launch.log.with_name(f"{label}-{i}-{incarnations[i]}.log")

    def start(i: int) -> None:
        env = {**launch.env, "MULTICHANNEL_INSTANCE_ID": str(i)}
        with log_of(i).open("wb") as out:
            procs[i] = subprocess.Popen(launch.argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)

    events: list[tuple[float, set[int]]] = []
    began = time.monotonic()
    sent_count = 0

    def pace() -> None:
        nonlocal sent_count
        due = int((time.monotonic() - began) * rate) - sent_count
        if due > 0:
            trickle(due)
            sent_count += due
        read()

    try:
        for i in range(3):
            start(i)
        settle = time.monotonic() + 120
        while not all(_owned_partitions(log_of(i)) for i in range(3)) or not seen:
            if time.monotonic() > settle:
                raise BenchError(f"repeated kills: the three instances did not start; see {variants.run_dir}")
            pace()
        next_kill = time.monotonic() + rng.uniform(3, 10)
        while len(events) < kills:
            pace()
            if time.monotonic() < next_kill:
                continue
            victim = rng.randrange(3)
            owned = _owned_partitions(log_of(victim))
            proc = procs[victim]
            assert proc is not None
            proc.kill()
            killed = time.monotonic()
            proc.wait()
            events.append((killed, owned))
            incarnations[victim] += 1
            start(victim)
            next_kill = time.monotonic() + rng.uniform(3, 10)
        tail = time.monotonic() + 60
        while time.monotonic() < tail and not all(
            any(sent[e] > k and partition.get(e) in owned for e in seen) for k, owned in events if owned
        ):
            pace()
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        reader.close()
        producer.flush(10)
    recoveries: list[float | None] = []
    for killed, owned in events:
        after = [t for e, t in seen.items() if sent.get(e, 0) > killed and partition.get(e) in owned]
        recoveries.append(round(min(after) - killed, 2) if after else None)
    measured = sorted(r for r in recoveries if r is not None)
    return {
        "kills": len(events),
        "seed": seed,
        "recovered": len(measured),
        "median_s": round(statistics.median(measured), 2) if measured else None,
        "max_s": max(measured) if measured else None,
        "per_kill_s": recoveries,
    }


# ---------------------------------------------------------------------------------- profile
def profile_service(variants: Variants, input_topic: str, seconds: float) -> tuple[str, Path]:
    """cProfile of the exactly-once service for `seconds` of catching up on the input."""
    launch, _s = variants.service("profile", input_topic, "exactly_once_v2")
    out = variants.run_dir / "service-eos.prof"
    launch.argv = [str(PROJECT_ROOT / ".venv" / "bin" / "python"), "-m", "cProfile", "-o", str(out), *launch.argv]
    with running(launch) as proc, suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)
    if not out.exists():
        raise BenchError(f"profile not written; see {launch.log}")
    text = StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(25)
    body = text.getvalue()
    return body[body.index("   ncalls") :] if "   ncalls" in body else body, out


# ---------------------------------------------------------------------------------- report
def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


Target = tuple[str, str, bool | None, str]
"""(target, measured, met, for a target not met: by how much and what bounds it)."""


def _phases_text(breakdown: dict[str, Any], at: int) -> str:
    """The phases' p50 (at=0) or p99 (at=1) in ms, for the targets' notes."""
    names = [*PHASES, "visible"]
    parts = [f"{n} {breakdown[n][at]:g}" for n in names if breakdown.get(n) and breakdown[n][at] is not None]
    return ", ".join(parts) + " ms" if parts else "no phase figures"


def targets(
    results: dict[str, VariantResult],
    recovery: dict[str, Any],
    steady: dict[str, Any] | None = None,
    kills: dict[str, Any] | None = None,
    memory: dict[str, Any] | None = None,
    shapes: dict[str, Any] | None = None,
) -> list[Target]:
    rate = {name: r.median("events_per_s") for name, r in results.items()}
    rows: list[Target] = []

    def check(name: str, value: float | None, goal: float, higher: bool, unit: str = "", bound: str = "") -> None:
        met = None if value is None else (value >= goal if higher else value <= goal)
        note = ""
        if met is False and value:
            factor = goal / value if higher else value / goal
            note = f"{factor:.2f}x short; {bound}" if bound else f"{factor:.2f}x short"
        rows.append((name, "n/a" if value is None else f"{value}{unit}", met, note))

    eos = results.get(EOS)
    to_ceiling = _ratio(rate.get(EOS), rate.get(CEILING))
    check(
        "exactly-once / Quix peer ≥ 10",
        _ratio(rate.get(EOS), rate.get(PEER)),
        10.0,
        True,
        bound=f"bound: the service's own per-event work, the ceiling: exactly-once runs at {to_ceiling} of it, "
        "and the ceiling's time is Python per event (the profile below)",
    )
    check(
        "exactly-once / ceiling (own work without Kafka) ≥ 0.75",
        to_ceiling,
        0.75,
        True,
        bound="bound: the client and transaction time per batch (see where the latency goes)",
    )
    half = eos.latency_breakdown if eos else {}
    cpu = eos.latency_cpu if eos else {}
    busy = (
        f"CPU at this rate: the service {cpu.get('variant')} cores, the broker {cpu.get('broker')}, the probe "
        f"{cpu.get('probe')}, of {os.cpu_count()}; "
    )
    check(
        "p99 latency ≤ 150 ms at half the maximum rate",
        eos.latency_p99_ms if eos else None,
        150,
        False,
        " ms",
        f"bound: the batch cycle, whose phases run one after the other: the service's Python per event "
        f"(process) and the broker's transaction round trips; {busy}p99 of the phases: {_phases_text(half, 1)}",
    )
    check(
        "p50 latency ≤ 60 ms at half the maximum rate",
        eos.latency_p50_ms if eos else None,
        60,
        False,
        " ms",
        f"bound: as for p99; p50 of the phases: {_phases_text(half, 0)}",
    )
    check(
        "p99 latency ≤ 100 ms at a steady 1,000 events/s",
        (steady or {}).get("p99_ms"),
        100,
        False,
        " ms",
        "bound: the batch cycle: a record that arrives while a batch is being committed waits for that commit "
        "(wait), then for its own batch's commit; the broker uses "
        f"{((steady or {}).get('cpu') or {}).get('broker')} cores at this rate; p99 of the phases: "
        f"{_phases_text((steady or {}).get('breakdown') or {}, 1)}",
    )
    bare = recovery.get("changelog_consume_records_per_s")
    check(
        "restore ≥ 250,000 records/s",
        recovery.get("restore_records_per_s"),
        250_000,
        True,
        " records/s",
        f"bound: the client's read of the changelog (a bare client reads {bare} records/s of the same "
        f"changelog; the restore runs at {_ratio(recovery.get('restore_records_per_s'), bare)} of it), then, per "
        "account kept, its record, its subscriptions' header lines, its index entries and its timers",
    )
    check(
        "SIGKILL → first decision ≤ 3 s",
        recovery.get("sigkill_to_first_decision_s"),
        3,
        False,
        " s",
        "see where the restart's time goes",
    )
    check(
        "memory per account held ≤ 2,048 bytes",
        (memory or {}).get("bytes_per_account"),
        2048,
        False,
        " B",
        "bound: an account held is its state's values, compressed (see memory per account held; one in use "
        "costs its Python objects)",
    )
    median, worst = (kills or {}).get("median_s"), (kills or {}).get("max_s")
    met = None if median is None or worst is None else median <= 3 and worst <= 10
    rows.append(
        (
            "kill → next decision, 3 instances, repeated SIGKILLs: median ≤ 3 s, max ≤ 10 s",
            "n/a" if median is None else f"median {median} s, max {worst} s",
            met,
            "the restart of the killed instance (see where the restart's time goes)" if met is False else "",
        )
    )
    if shapes:
        from benchmarks.shapes import shape_targets

        rows += shape_targets(shapes)
    return rows


def render_markdown(report: dict[str, Any], chart: Path | None) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `multichannel bench` on {report['date']} on a machine with {report['cores']} cores "
        f"(Kafka {report['kafka']}, one local broker, Python {report['python']}). Workload: "
        f"{report['events']:,} account events over {report['accounts']:,} accounts, {report['partitions']} input "
        f"partitions, {report['partner_events']:,} partner events. Rates are medians of {report['runs']} runs; "
        "latency is measured in a separate run paced at half the median rate. Do not edit by hand."
        + _realistic_sentence(report),
        "",
        "| variant | events/s | ratio to passthrough | CPU s / 1k events | peak RSS MB | bytes / account "
        "| latency rate | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = report["variants"].get(PASSTHROUGH, {}).get("events_per_s")
    for name, v in report["variants"].items():
        cells = [
            name,
            f"{v['events_per_s']:,.0f}" if v["events_per_s"] else "n/a",
            f"{v['events_per_s'] / base:.2f}" if base and v["events_per_s"] else "n/a",
            f"{v['cpu_s_per_1k']:.4f}" if v["cpu_s_per_1k"] else "n/a",
            f"{v['peak_rss_mb']:.0f}" if v["peak_rss_mb"] else "n/a",
            f"{v['bytes_per_account']:,.0f}" if v["bytes_per_account"] else "n/a",
            f"{v['latency_rate']:,.0f}/s" if v["latency_rate"] else "n/a",
            f"{v['latency_p50_ms']}" if v["latency_p50_ms"] is not None else "n/a",
            f"{v['latency_p99_ms']}" if v["latency_p99_ms"] is not None else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    rec = report["recovery"]
    lines += [
        "",
        "Runs (events/s): "
        + "; ".join(f"{n}: {', '.join(f'{r:,.0f}' for r in v['runs'])}" for n, v in report["variants"].items()),
        "",
        "## Recovery",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| changelog records restored | {rec.get('restore_records')} |",
        f"| accounts restored | {rec.get('restore_accounts')} |",
        f"| restore seconds | {rec.get('restore_seconds')} |",
        f"| restore records/s | {rec.get('restore_records_per_s')} |",
        f"| a bare client reading the same changelog, records/s | {rec.get('changelog_consume_records_per_s')} |",
        f"| restart to first decision (s) | {rec.get('restart_to_first_decision_s')} |",
        f"| SIGKILL to first decision (s, restart at once, static membership) | "
        f"{rec.get('sigkill_to_first_decision_s')} |",
        "",
        "Where the restart's time goes (seconds, from the service's log lines):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *[
            f"| {phase} | {value if value is not None else 'n/a'} |"
            for phase, value in rec.get("breakdown", {}).items()
        ],
    ]
    lines += _latency_section(report) + _kills_section(report) + _memory_section(report)
    if report.get("shapes"):
        from benchmarks.shapes import render_sections

        lines += render_sections(report["shapes"])
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | met | short by, and what bounds it |",
        "|---|---:|:---:|---|",
    ]
    for name, value, met, note in report["targets"]:
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {value} | {verdict} | {note} |")
    lines += ["", "## Peer check", "", f"Quix Streams peer against the exactly-once service: {report['peer_check']}."]
    lines += [
        "",
        "## State at scale",
        "",
        "A million accounts, memory per account and the restore of every partition and of one alone: "
        "`make bench-scale`, in [benchmarks-scale.md](benchmarks-scale.md).",
    ]
    dashboard = report.get("dashboard")
    if dashboard:
        lines += [
            "",
            "## Dashboard",
            "",
            "From `make bench-dashboard` (`docs/dashboard-benchmarks.md`, its last run):",
            "",
        ]
        lines += dashboard.splitlines()
    if chart is not None:
        lines += ["", f"![throughput and latency per variant]({chart.name})"]
    lines += [
        "",
        "## Where the exactly-once service spends its time",
        "",
        f"cProfile of the service catching up on the input for {report['profile_seconds']:.0f} s, "
        "top 25 functions by own time:",
        "",
        "```",
        report["profile"].rstrip(),
        "```",
        "",
        "## How it is measured",
        "",
        "- Every variant reads the same pre-produced input topic with a consumer group of its own. Throughput is "
        "the group's committed offsets between the first and the last commit, sampled every 100 ms from "
        "outside the process; CPU time and peak RSS (VmHWM) are read from /proc. Bytes per account is peak RSS "
        "minus RSS at the first commit, divided by the accounts. Before the measured runs, the passthrough and "
        "the exactly-once service each read the input once, unmeasured: without that warm-up of the broker "
        "(its JIT compiler, the page cache), the first runs of every variant were slower than the later ones.",
        "- The passthrough consumes batches of 2,000, produces the same bytes with `produce_batch` and commits "
        "offsets asynchronously: no decoding, no state, no transactions.",
        "- The peer is a Quix Streams application (`benchmarks/peer_quix.py`, exactly-once, RocksDB state "
        "with changelog topics, Avro through the registry, its default 5 s commit interval) in its own virtual "
        "environment, with the same pure rule core. Its decisions are checked equal to ours per subscription.",
        "- The ceiling is the service's own per-event work with Kafka taken away (`benchmarks/ceiling.py`): the "
        "same input values in memory, then batch by batch the service's codec and engine: decode, validate, "
        "classify, encode decisions, statuses and changed account states. No client, broker or transaction.",
        "- Latency: a fresh input topic, events produced at half the variant's median rate (and, for the "
        "exactly-once service, at a steady 1,000 events/s), each timed from produce to the first decision it "
        "caused as seen by a `read_committed` consumer (passthrough: its copy). The probe's producer lingers "
        "1 ms and its reader fetches with `fetch.wait.max.ms` 5, so neither holds records back; at the "
        "passthrough's half rate (hundreds of thousands per second) the probe's own Python loop, which sends "
        "and decodes every record, is the bound, and its figures say so rather than the passthrough's.",
        "- Repeated SIGKILLs, memory per account held, changelog bytes per input event, the big account and "
        "the month-end storm: see their sections above (`benchmarks/shapes.py` for the last three; "
        "`python -m benchmarks.shapes --quick` runs them alone at small sizes).",
    ]
    return "\n".join(lines) + "\n"


def _last_error_line(log: Path) -> str:
    """The `error` of a service log's last error-level line, or a pointer to the log."""
    if log.exists():
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if '"level": "error"' in line:
                with suppress(ValueError):
                    return str(json.loads(line).get("error"))
    return f"see {log}"


def _realistic_sentence(report: dict[str, Any]) -> str:
    info = report.get("realistic_workload")
    if not info:
        return ""
    return (
        f" The row `{REALISTIC_EOS}` reads the generator's realistic shape instead (heavy-tailed account sizes "
        "up to 20,000 subscriptions, terms ending on the 1st of a month, late partner changes): "
        f"{info['events']:,} account events over {info['accounts']:,} accounts, {info['partner_events']:,} "
        "partner events, on topics of its own."
        + (f" It was not measured: {info['error']}." if info.get("error") else "")
    )


def _ms(pair: Any) -> str:
    if not pair:
        return "n/a"
    return " / ".join("n/a" if x is None else f"{x:g}" for x in pair)


def _latency_section(report: dict[str, Any]) -> list[str]:
    """Each latency run's phases: the service's per-batch histograms and the write-to-visible time."""
    runs: list[tuple[str, Any, Any]] = [
        (name, v.get("latency_rate"), v.get("latency_breakdown") or {})
        for name, v in report["variants"].items()
        if v.get("latency_rate")
    ]
    steady = report.get("steady_latency")
    if steady:
        runs.append((f"{EOS}, steady", steady["rate"], steady.get("breakdown") or {}))
    columns = [*PHASES, "visible"]
    lines = [
        "",
        "## Where the latency goes",
        "",
        "p50 / p99 in ms of each phase during the latency runs. `wait` is the age of a batch's oldest input "
        "record when the batch starts (producer linger, fetch, and queueing behind the batch before it); "
        "`process` decodes, classifies and encodes; `produce` hands the records to the client; `offsets` adds "
        "the input offsets to the transaction; `commit` delivers the batch's records and commits. These are "
        "per batch, from the service's `multichannel_batch_phase_seconds` histogram (so bucket bounds). "
        "`visible` is per output record, from its write (the record's timestamp) to its arrival at the "
        "probe's `read_committed` reader: it contains the commit, and the reader's own fetch. `CPU cores` is "
        "what the variant's process, the broker and the probe itself (which sends every event and decodes "
        "every output) each used of the machine's cores over the paced part of the run. When `process` "
        "reaches a whole batch (2,000 records) and `wait` grows, the service is not keeping up with the rate: "
        "its cycle (process, then produce, offsets and commit, one after the other) is longer than the time "
        "the batch took to arrive.",
        "",
        "| run | rate/s | end to end | " + " | ".join(columns) + " | CPU cores: variant / broker / probe |",
        "|---|---:|---:|" + "---:|" * len(columns) + "---:|",
    ]
    for name, rate, phases in runs:
        if name.endswith(", steady"):
            end = (steady or {}).get("p50_ms"), (steady or {}).get("p99_ms")
            cpu = (steady or {}).get("cpu") or {}
        else:
            v = report["variants"][name]
            end = v.get("latency_p50_ms"), v.get("latency_p99_ms")
            cpu = v.get("latency_cpu") or {}
        cores = " / ".join("n/a" if cpu.get(k) is None else f"{cpu[k]:.2f}" for k in ("variant", "broker", "probe"))
        cells = [name, f"{rate:,.0f}", _ms(end), *[_ms(phases.get(c)) for c in columns], cores]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _kills_section(report: dict[str, Any]) -> list[str]:
    kills = report.get("repeated_kills")
    if not kills:
        return []
    per_kill = ", ".join("n/a" if x is None else f"{x:g}" for x in kills["per_kill_s"])
    return [
        "",
        "## Repeated SIGKILLs, three instances",
        "",
        f"Three instances with the shipped defaults (static membership) on a steady 200 events/s; every 3-10 s "
        f"(seed {kills['seed']}) one is SIGKILLed and started again at once. From each kill to the first "
        "decision for an event sent after it on a partition the killed instance owned: "
        f"median {kills['median_s']} s, max {kills['max_s']} s over {kills['kills']} kills "
        f"({kills['recovered']} measured). Per kill (s): {per_kill}.",
    ]


def _memory_section(report: dict[str, Any]) -> list[str]:
    memory = report.get("state_memory")
    if not memory:
        return []
    lines = [
        "",
        "## Memory per account held",
        "",
        f"{memory['bytes_per_account']:,.0f} bytes per account held: the Python memory the engine holds per "
        f"account after the whole workload ({memory['accounts']:,} accounts, about ten events each), traced by "
        "allocation site (tracemalloc, in a pass of its own), with the accounts held as the service holds those "
        "past its `MULTICHANNEL_ACCOUNTS_IN_USE` most recently used ones (and a restored one until its first "
        "use): their state's values, joined and compressed. An account in use, as working objects, costs "
        f"{memory.get('in_use_bytes_per_account', 0):,.0f} bytes; the largest allocation sites in use:",
        "",
        "| allocation site | bytes per account |",
        "|---|---:|",
    ]
    lines += [f"| `{site}` | {size:,.0f} |" for site, size in memory["sites"]]
    return lines


def render_chart(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib missing (uv sync --group bench): no chart[/yellow]")
        return None
    names = list(report["variants"])
    rates = [report["variants"][n]["events_per_s"] or 0 for n in names]
    p50 = [report["variants"][n]["latency_p50_ms"] or 0 for n in names]
    p99 = [report["variants"][n]["latency_p99_ms"] or 0 for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    short = [n.replace(", ", "\n") for n in names]
    left.bar(short, rates, color="#3b6ea5")
    left.set_title("throughput (events/s, median of runs)")
    right.bar([i - 0.2 for i in range(len(names))], p50, width=0.4, label="p50")
    right.bar([i + 0.2 for i in range(len(names))], p99, width=0.4, label="p99")
    right.set_xticks(range(len(names)), short)
    right.set_yscale("log")
    right.set_title("latency at half the maximum rate (ms)")
    right.legend()
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"multichannel bench, {report['date']}, {report['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- driver
def run_bench(settings: Settings, opts: BenchOptions, uv: Path) -> dict[str, Any]:
    """The whole comparison; writes the JSON, Markdown and PNG and returns the report."""
    started = time.monotonic()
    s = settings.model_copy(update={"input_partitions": opts.partitions, "output_partitions": opts.partitions})
    tag = uuid.uuid4().hex[:6]
    input_topic, partner_topic = f"bench-{tag}-subscriptions", f"bench-{tag}-partners"
    s = s.model_copy(update={"subscription_topic": input_topic, "partner_topic": partner_topic})
    ensure_topics(
        s.kafka_client_config(),
        {input_topic: (opts.partitions, "delete"), partner_topic: (s.partner_partitions, "compact")},
        1,
    )
    with console.status("generating and publishing the workload…"):
        workload = build_workload(s, opts)
        produce_all(s, partner_topic, workload.partner_messages)
        produce_all(s, input_topic, [(k, v) for _e, k, v in workload.account_messages])
    total = topic_size(s, input_topic, opts.partitions)
    console.print(
        f"workload: {total:,} account events, {len(workload.accounts):,} accounts, "
        f"{len(workload.partner_messages):,} partner events"
    )
    python = peer_python(opts, uv) if opts.peer else None
    variants = Variants(s, opts, python)
    starters: dict[str, Callable[[str, str], Launch]] = {
        PASSTHROUGH: variants.passthrough,
        ALOS: lambda label, topic: variants.service(label, topic, "at_least_once")[0],
        EOS: lambda label, topic: variants.service(label, topic, "exactly_once_v2")[0],
    }
    if python is not None:
        starters[PEER] = variants.peer
    results = {name: VariantResult(name) for name in [*starters, CEILING]}
    decision_topics: dict[str, str] = {}
    sub_decoder = Decoder(registry_client(s), SUBSCRIPTION_EVENT)
    dec_decoder = Decoder(registry_client(s), SUBSCRIPTION_DECISION)

    def event_ids(values: list[bytes]) -> list[str | None]:
        return [r["event_id"] if isinstance(r, dict) else None for r in sub_decoder.decode_values(values)]

    def causes(values: list[bytes]) -> list[str | None]:
        return [r["caused_by_event_id"] if isinstance(r, dict) else None for r in dec_decoder.decode_values(values)]

    realistic: tuple[str, int, Callable[[str, str], Launch]] | None = None
    realistic_info: dict[str, Any] | None = None
    if opts.shapes is not None:
        with console.status("generating and publishing the realistic workload…"):
            realistic, realistic_info = _publish_realistic(s, opts, variants, tag)
        results[REALISTIC_EOS] = VariantResult(REALISTIC_EOS)
    steps = opts.runs * (len(starters) + (realistic is not None)) + len(starters) + 5 + (realistic is not None)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("benchmark", total=steps)
        # An unmeasured pass first: the broker's JIT compiler and the page cache warm up over the first runs
        # (rates rose run after run for every variant without it), and no variant should pay for that.
        progress.update(task, description="warming up the broker (not measured)")
        for name in (PASSTHROUGH, EOS):
            label = f"{tag}-warmup-{_slug(name)}"
            measure_throughput(s, starters[name](label, input_topic), input_topic, total, None, 1800)
            drop_topics(s, label)
        for run in range(opts.runs):
            for name, start in starters.items():
                label = f"{tag}-{_slug(name)}-{run}"
                progress.update(task, description=f"{name}, run {run + 1}/{opts.runs}")
                launch = start(label, input_topic)
                decision_topics.setdefault(name, launch.decision_topic)
                accounts = None if name == PASSTHROUGH else len(workload.accounts)
                result = measure_throughput(s, launch, input_topic, total, accounts, 1800)
                results[name].runs.append(result)
                console.print(f"  {name} run {run + 1}: {result.events_per_s:,.0f} events/s")
                if run > 0:  # the first run's outputs serve the peer check and the recovery
                    drop_topics(s, label)
                progress.advance(task)
            if realistic is not None and realistic_info is not None and "error" not in realistic_info:
                topic, events, start_realistic = realistic
                label = f"{tag}-realistic-{run}"
                progress.update(task, description=f"{REALISTIC_EOS}, run {run + 1}/{opts.runs}")
                try:
                    result = measure_throughput(s, start_realistic(label, topic), topic, events, None, 1800)
                except BenchError as exc:  # the row says why (e.g. an account the service cannot write)
                    realistic_info["error"] = f"{exc} ({_last_error_line(variants.run_dir / f'{label}.log')})"
                    console.print(f"  [yellow]{REALISTIC_EOS} run {run + 1} failed: {realistic_info['error']}[/yellow]")
                else:
                    results[REALISTIC_EOS].runs.append(result)
                    console.print(f"  {REALISTIC_EOS} run {run + 1}: {result.events_per_s:,.0f} events/s")
                drop_topics(s, label)
                progress.advance(task)
        progress.update(task, description=CEILING)
        ceiling_settings = variants._topics(f"{tag}-ceiling").model_copy(update={"auto_register_schemas": True})
        for run in range(opts.runs):
            ceiling = measure_ceiling(
                ceiling_settings,
                workload.partner_messages,
                [(k, v) for _e, k, v in workload.account_messages],
                ceiling_settings.batch_size,
            )
            results[CEILING].runs.append(RunResult(ceiling.events_per_s, ceiling.seconds, 0.0, 0.0, None))
            console.print(f"  {CEILING} run {run + 1}: {ceiling.events_per_s:,.0f} events/s")
        progress.advance(task)
        peer_check = "not run (--no-peer)"
        if PEER in decision_topics:
            progress.update(task, description="checking the peer's decisions against ours")
            ours = read_decisions(s, decision_topics[EOS])
            peer_check = compare_decisions(ours, read_decisions(s, decision_topics[PEER]))
            console.print(f"  peer check: {peer_check}")
        for name, start in starters.items():
            progress.update(task, description=f"{name}, latency")
            rate = (results[name].median("events_per_s") or 1000) / 2
            label = f"{tag}-{_slug(name)}-latency"
            latency = measure_latency(
                s,
                lambda topic, label=label, start=start: start(label, topic),  # type: ignore[misc]
                label,
                workload,
                rate,
                opts.latency_seconds,
                event_ids if name == PASSTHROUGH else causes,
            )
            r = results[name]
            r.latency_rate, r.latency_p50_ms, r.latency_p99_ms = round(rate), latency.p50_ms, latency.p99_ms
            r.latency_samples, r.latency_breakdown = latency.samples, latency.breakdown
            r.latency_cpu = latency.cpu
            drop_topics(s, label, f"bench-{label}-input")
            console.print(
                f"  {name} latency at {rate:,.0f}/s: p50 {latency.p50_ms} ms, p99 {latency.p99_ms} ms "
                f"({latency.samples} samples); phases {latency.breakdown}"
            )
            progress.advance(task)
        progress.update(task, description=f"{EOS}, latency at a steady 1,000 events/s")
        label = f"{tag}-{_slug(EOS)}-steady"
        at_1000 = measure_latency(
            s,
            lambda topic: variants.service(label, topic, "exactly_once_v2")[0],
            label,
            workload,
            1000.0,
            opts.latency_seconds,
            causes,
        )
        steady = {"rate": 1000, **asdict(at_1000)}
        console.print(f"  steady 1,000/s: p50 {at_1000.p50_ms} ms, p99 {at_1000.p99_ms} ms; {at_1000.breakdown}")
        progress.advance(task)
        progress.update(task, description="recovery")
        recovery = measure_recovery(variants, s, f"{tag}-{_slug(EOS)}-0", input_topic, workload)
        console.print(f"  recovery: {recovery}")
        progress.update(task, description="repeated SIGKILLs, three instances")
        kills = measure_repeated_kills(variants, s, f"{tag}-kills", workload, opts.kills, opts.seed)
        console.print(f"  repeated kills: {kills}")
        progress.advance(task)
        shapes: dict[str, Any] | None = None
        if opts.shapes is not None:
            from benchmarks.shapes import run_shapes

            progress.update(task, description="CSP data shapes: big accounts, month-end storm")
            try:
                shapes = run_shapes(variants, s, tag, opts.shapes)
            except BenchError as exc:  # the report says so; the sections after it still run
                shapes = {"error": str(exc)}
            console.print(f"  shapes: {shapes}")
            progress.advance(task)
        progress.update(task, description="memory per account held")
        held = measure_state_memory(
            ceiling_settings, workload.partner_messages, [(k, v) for _e, k, v in workload.account_messages]
        )
        memory = asdict(held)
        console.print(
            f"  state memory: {held.bytes_per_account:,.0f} B per account held, "
            f"{held.in_use_bytes_per_account:,.0f} B in use"
        )
        progress.advance(task)
        progress.update(task, description="profile of the exactly-once service")
        profile, profile_path = profile_service(variants, input_topic, opts.profile_seconds)
        progress.advance(task)

    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "kafka": "4.3.1",
        "events": total,
        "accounts": len(workload.accounts),
        "partner_events": len(workload.partner_messages),
        "partitions": opts.partitions,
        "runs": opts.runs,
        "variants": {
            name: {
                "events_per_s": r.median("events_per_s"),
                "cpu_s_per_1k": r.median("cpu_s_per_1k"),
                "peak_rss_mb": r.median("peak_rss_mb"),
                "bytes_per_account": r.median("bytes_per_account"),
                "latency_rate": r.latency_rate,
                "latency_p50_ms": r.latency_p50_ms,
                "latency_p99_ms": r.latency_p99_ms,
                "latency_samples": r.latency_samples,
                "latency_breakdown": r.latency_breakdown,
                "latency_cpu": r.latency_cpu,
                "runs": [x.events_per_s for x in r.runs],
                "run_details": [asdict(x) for x in r.runs],
            }
            for name, r in results.items()
        },
        "recovery": recovery,
        "steady_latency": steady,
        "repeated_kills": kills,
        "state_memory": memory,
        "shapes": shapes,
        "realistic_workload": realistic_info,
        "peer_check": peer_check,
        "profile_seconds": opts.profile_seconds,
        "profile": profile,
        "profile_file": str(profile_path),
        "wall_seconds": round(time.monotonic() - started),
    }
    report["targets"] = targets(results, recovery, steady, kills, memory, shapes)
    dashboard = opts.docs_dir / "dashboard-benchmarks.md"
    if dashboard.exists():  # the dashboard's own figures, measured by make bench-dashboard
        report["dashboard"] = dashboard.read_text().split("\n", 1)[1].replace("\n## ", "\n### ").strip()
    opts.docs_dir.mkdir(parents=True, exist_ok=True)
    (opts.docs_dir / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    chart = render_chart(report, opts.docs_dir / "benchmarks.png")
    (opts.docs_dir / "benchmarks.md").write_text(render_markdown(report, chart))
    return report


def _publish_realistic(
    s: Settings, opts: BenchOptions, variants: Variants, tag: str
) -> tuple[tuple[str, int, Callable[[str, str], Launch]], dict[str, Any]]:
    """The realistic workload on an input and a partner topic of its own: (input topic, its events, how to
    start the exactly-once service on it), and its size (events, accounts, partner events, largest account)."""
    topic, partners = f"bench-{tag}-realistic-subscriptions", f"bench-{tag}-realistic-partners"
    ensure_topics(
        s.kafka_client_config(),
        {topic: (opts.partitions, "delete"), partners: (s.partner_partitions, "compact")},
        1,
    )
    own = s.model_copy(update={"subscription_topic": topic, "partner_topic": partners})
    workload = build_workload(own, opts, "realistic")
    produce_all(own, partners, workload.partner_messages)
    produce_all(own, topic, [(k, v) for _e, k, v in workload.account_messages])
    events = topic_size(own, topic, opts.partitions)
    info: dict[str, Any] = {
        "events": events,
        "accounts": len(workload.accounts),
        "partner_events": len(workload.partner_messages),
    }
    console.print(f"realistic workload: {info}")

    def start(label: str, input_topic: str) -> Launch:
        return variants.service(label, input_topic, "exactly_once_v2", partner_topic=partners)[0]

    return (topic, events, start), info


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")[:24]
