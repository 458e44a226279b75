"""`multichannel bench`: throughput, latency and recovery of the service next to a raw passthrough
and a Quix Streams peer, against one broker and registry, in one run.

Every variant reads the same pre-produced input topic with a group of its own and writes to
topics of its own. Throughput comes from the group's committed offsets, sampled from outside the
process (first to last commit); CPU time and peak RSS from /proc. Latency is measured in a second,
paced run at half the variant's median rate: the time from producing an event to seeing its
decision (for the passthrough: its copy) with a read_committed consumer.
"""

from __future__ import annotations

import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.ceiling import measure_ceiling
from config.registry import registry_client
from config.settings import PROJECT_ROOT, Settings
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION, SUBSCRIPTION_EVENT

console = Console(stderr=True)
QUIX_REQUIREMENT = "quixstreams==3.28.*"
PASSTHROUGH = "raw passthrough"
ALOS = "service, at-least-once"
EOS = "service, exactly-once"
PEER = "Quix Streams peer, exactly-once"
CEILING = "service work without Kafka (ceiling)"


class BenchError(Exception):
    """A variant failed or timed out; the message says which and where its log is."""


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


def build_workload(settings: Settings, opts: BenchOptions) -> Workload:
    """`opts.events` account events over about `opts.accounts` accounts (ten events each), plus the
    partner table. Valid events only: the peer has no dead-letter path to compare."""
    today = datetime.now(UTC).date()
    spec = WorkloadSpec(
        seed=opts.seed,
        partners=max(50, opts.accounts // 100),
        customers=max(1, int(opts.accounts / 1.25)),
        start=datetime.combine(today - timedelta(days=420), datetime.min.time(), tzinfo=UTC),
        days=300,
        bad_rate=0.0,
        duplicate_rate=0.01,
        subscription_counts=(4, 6, 8, 10, 12),
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
        }
    )
    reader.subscribe([output_topic])
    return producer, reader


def measure_latency(
    settings: Settings,
    start: Callable[[str], Launch],
    label: str,
    workload: Workload,
    rate: float,
    seconds: float,
    decode_cause: Callable[[list[bytes]], list[str | None]],
) -> tuple[float | None, float | None, int]:
    """Produce at `rate` events/s into a fresh topic and time each event to its first output."""
    topic = f"bench-{label}-input"
    ensure_topics(settings.kafka_client_config(), {topic: (settings.input_partitions, "delete")}, 1)
    launch = start(topic)
    producer, reader = _probe_clients(settings, launch.decision_topic, "earliest")
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    messages = iter(workload.account_messages)

    def send(n: int) -> None:
        for _ in range(n):
            event_id, key, value = next(messages)
            sent[event_id] = time.monotonic()
            producer.produce(topic, value=value, key=key)
        producer.poll(0)

    def read(timeout_s: float) -> None:
        msgs = [m for m in reader.consume(1000, timeout_s) if m.error() is None]
        now = time.monotonic()
        for cause in decode_cause([m.value() or b"" for m in msgs]):
            if cause is not None and cause not in seen:
                seen[cause] = now

    measured_from = 0
    try:
        with running(launch) as proc:
            # Prime: a trickle until the first output shows the variant is up and assigned.
            deadline = time.monotonic() + 120
            while not seen:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"{label}: no output while priming; see {launch.log}")
                send(1)
                read(0.2)
            measured_from = len(sent)
            began = time.monotonic()
            total = min(int(rate * seconds), len(workload.account_messages) - measured_from)
            done = 0
            while done < total:
                due = min(total, int((time.monotonic() - began) * rate)) - done
                if due > 0:
                    send(due)
                    done += due
                read(0.002)
            drain_until = time.monotonic() + 15
            while time.monotonic() < drain_until and len(seen) < len(sent) * 0.5:
                read(0.2)
            settle = time.monotonic() + 3
            while time.monotonic() < settle:
                read(0.2)
    finally:
        reader.close()
        producer.flush(10)
    measured = list(sent)[measured_from:]
    lat = sorted((seen[e] - sent[e]) * 1000 for e in measured if e in seen)
    if not lat:
        return None, None, 0
    return round(_pct(lat, 50), 1), round(_pct(lat, 99), 1), len(lat)


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


def targets(results: dict[str, VariantResult], recovery: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    rate = {name: r.median("events_per_s") for name, r in results.items()}
    rows: list[tuple[str, str, bool | None]] = []

    def check(name: str, value: float | None, goal: float, higher: bool, unit: str = "") -> None:
        met = None if value is None else (value >= goal if higher else value <= goal)
        rows.append((name, "n/a" if value is None else f"{value}{unit}", met))

    check("exactly-once / Quix peer ≥ 10", _ratio(rate.get(EOS), rate.get(PEER)), 10.0, True)
    check(
        "exactly-once / ceiling (own work without Kafka) ≥ 0.75", _ratio(rate.get(EOS), rate.get(CEILING)), 0.75, True
    )
    eos = results.get(EOS)
    check("p99 latency ≤ 150 ms at half the maximum rate", eos.latency_p99_ms if eos else None, 150, False, " ms")
    check("p50 latency ≤ 60 ms at half the maximum rate", eos.latency_p50_ms if eos else None, 60, False, " ms")
    check("p99 latency ≤ 100 ms at a steady 1,000 events/s", None, 100, False)
    check("restore ≥ 250,000 records/s", recovery.get("restore_records_per_s"), 250_000, True, " records/s")
    check("SIGKILL → first decision ≤ 3 s", recovery.get("sigkill_to_first_decision_s"), 3, False, " s")
    check("memory per account ≤ 2,048 bytes", eos.median("bytes_per_account") if eos else None, 2048, False, " B")
    check("kill → next decision, 3 instances, repeated SIGKILLs: median ≤ 3 s, max ≤ 10 s", None, 3, False)
    return rows


def render_markdown(report: dict[str, Any], chart: Path | None) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `multichannel bench` on {report['date']} on a machine with {report['cores']} cores "
        f"(Kafka {report['kafka']}, one local broker, Python {report['python']}). Workload: "
        f"{report['events']:,} account events over {report['accounts']:,} accounts, {report['partitions']} input "
        f"partitions, {report['partner_events']:,} partner events. Rates are medians of {report['runs']} runs; "
        "latency is measured in a separate run paced at half the median rate. Do not edit by hand.",
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
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---:|:---:|",
    ]
    for name, value, met in report["targets"]:
        lines.append(f"| {name} | {value} | {'n/a' if met is None else ('yes' if met else '**no**')} |")
    lines += ["", "## Peer check", "", f"Quix Streams peer against the exactly-once service: {report['peer_check']}."]
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
        "minus RSS at the first commit, divided by the accounts.",
        "- The passthrough consumes batches of 2,000, produces the same bytes with `produce_batch` and commits "
        "offsets asynchronously: no decoding, no state, no transactions.",
        "- The peer is a Quix Streams application (`benchmarks/peer_quix.py`, exactly-once, RocksDB state "
        "with changelog topics, Avro through the registry, its default 5 s commit interval) in its own virtual "
        "environment, with the same pure rule core. Its decisions are checked equal to ours per subscription.",
        "- The ceiling is the service's own per-event work with Kafka taken away (`benchmarks/ceiling.py`): the "
        "same input values in memory, then batch by batch the service's codec and engine: decode, validate, "
        "classify, encode decisions, statuses and changed account states. No client, broker or transaction.",
        "- Latency: a fresh input topic, events produced at half the variant's median rate, each timed from "
        "produce to the first decision it caused as seen by a `read_committed` consumer (passthrough: its copy).",
    ]
    return "\n".join(lines) + "\n"


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

    steps = opts.runs * len(starters) + len(starters) + 3
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("benchmark", total=steps)
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
            p50, p99, n = measure_latency(
                s,
                lambda topic, label=label, start=start: start(label, topic),  # type: ignore[misc]
                label,
                workload,
                rate,
                opts.latency_seconds,
                event_ids if name == PASSTHROUGH else causes,
            )
            results[name].latency_rate, results[name].latency_p50_ms = round(rate), p50
            results[name].latency_p99_ms, results[name].latency_samples = p99, n
            console.print(f"  {name} latency at {rate:,.0f}/s: p50 {p50} ms, p99 {p99} ms ({n} samples)")
            progress.advance(task)
        progress.update(task, description="recovery")
        recovery = measure_recovery(variants, s, f"{tag}-{_slug(EOS)}-0", input_topic, workload)
        console.print(f"  recovery: {recovery}")
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
                "runs": [x.events_per_s for x in r.runs],
                "run_details": [asdict(x) for x in r.runs],
            }
            for name, r in results.items()
        },
        "recovery": recovery,
        "peer_check": peer_check,
        "profile_seconds": opts.profile_seconds,
        "profile": profile,
        "profile_file": str(profile_path),
        "wall_seconds": round(time.monotonic() - started),
    }
    report["targets"] = targets(results, recovery)
    dashboard = opts.docs_dir / "dashboard-benchmarks.md"
    if dashboard.exists():  # the dashboard's own figures, measured by make bench-dashboard
        report["dashboard"] = dashboard.read_text().split("\n", 1)[1].replace("\n## ", "\n### ").strip()
    opts.docs_dir.mkdir(parents=True, exist_ok=True)
    (opts.docs_dir / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    chart = render_chart(report, opts.docs_dir / "benchmarks.png")
    (opts.docs_dir / "benchmarks.md").write_text(render_markdown(report, chart))
    return report


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")[:24]
