"""The fault suite's harness: its own broker (restartable on the same data), a registry behind a proxy
that can play "stopped", three supervised service instances, a publisher at a steady rate with a burst,
a monitor of the group's committed offsets, and a seeded schedule of faults, each one logged.

`ChaosRun(plan, seed, work_dir).run()` returns a `ChaosResult`; `tests.chaos.audit` checks the outputs
and `tests.chaos.report` writes the figures.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema

from config.logs import get_logger
from config.registry import registry_client
from config.settings import Settings
from deploy.local.kafka import LocalKafka
from deploy.local.registry import LocalRegistry
from producers.generator import BadRecord, Shape, WorkloadGenerator, WorkloadSpec
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_EVENT, parse, schema_str, subject_for
from schemas.wire import RecordEncoder
from tests.chaos.proxy import TcpProxy
from tests.integration.conftest import CACHE_DIR, make_settings
from tests.integration.pipeline import ServiceProcess, encode_item, later_terms, publish
from tests.integration.test_service import future_terms, split_partner_first

log = get_logger("multichannel.chaos")

INSTANCES = ("a", "b", "c")
SESSION_TIMEOUT_S = 10.0
"""The service's session.timeout.ms: a member silent for longer is expelled and its partitions move."""

Item = dict[str, Any] | BadRecord


@dataclass(frozen=True)
class ChaosPlan:
    """How much of each fault, how long, at what load."""

    name: str
    customers: int
    steady_rate: float
    burst_s: float
    instance_kills: int
    broker_restarts: int
    broker_down_s: tuple[float, float]
    registry_outage_s: float
    zombie_stop_s: float = 14.0
    """Longer than the session timeout (10 s) and the transaction timeout (10 s), shorter than the
    watchdog's deadline for a blocked call (about 20 s), so that the zombie wakes and tries to write."""
    burst_factor: float = 10.0
    kill_gap_s: tuple[float, float] = (2.0, 12.0)
    guarantee: str = "exactly_once_v2"
    input_partitions: int = 6
    catch_up_deadline_s: float = 240.0
    shape: Shape = "uniform"
    """The workload's shape (`WorkloadSpec.shape`). `realistic` (heavy-tailed accounts, up to 20,000
    subscriptions, month-boundary terms, late partner changes) draws a quarter of `customers`: each holds
    about five times the events of a uniform one, so the run publishes about as many records."""
    giant_accounts: tuple[int, ...] = ()
    """Sizes of extra big accounts in the workload (`WorkloadSpec.giant_accounts`)."""

    def workload_customers(self) -> int:
        return self.customers if self.shape == "uniform" else max(1, self.customers // 4)


FULL = ChaosPlan(
    name="full",
    customers=60_000,
    steady_rate=150.0,
    burst_s=60.0,
    instance_kills=52,
    broker_restarts=3,
    broker_down_s=(3.0, 12.0),
    registry_outage_s=30.0,
    shape="realistic",
)
"""The exactly-once run of `make chaos`, on the realistic workload (the at-least-once run keeps the uniform one)."""
SHORT = replace(  # the same kinds of fault with small counts, for `make test`
    FULL, name="short", customers=3_000, steady_rate=80.0, burst_s=8.0, instance_kills=6, broker_restarts=1,
    broker_down_s=(2.0, 3.0), registry_outage_s=10.0, kill_gap_s=(1.0, 4.0), catch_up_deadline_s=120.0,
    shape="uniform",
)  # fmt: skip
AT_LEAST_ONCE = replace(
    FULL, name="at-least-once", customers=12_000, burst_s=15.0, instance_kills=12, broker_restarts=1,
    broker_down_s=(3.0, 8.0), registry_outage_s=10.0, guarantee="at_least_once", shape="uniform",
)  # fmt: skip


@dataclass
class Fault:
    """One injected fault: when it started and ended (monotonic and wall clock), which input partitions it
    stopped, and what the harness saw."""

    kind: str
    started: float
    ended: float
    wall: str
    partitions: list[int]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """The group's committed offsets and the input's end offsets at one instant."""

    at: float
    committed: dict[int, int]
    ends: dict[int, int]

    @property
    def lag(self) -> int:
        return sum(max(0, end - self.committed.get(p, 0)) for p, end in self.ends.items())


@dataclass
class ChaosResult:
    plan: ChaosPlan
    seed: int
    settings: Settings
    faults: list[Fault]
    samples: list[Sample]
    ledger: dict[bytes, Item]
    partners: list[Item]
    published: int
    undelivered: int
    exits: dict[int, int]
    logs: list[Path]
    broker_log: str
    started_wall: str
    seconds: float
    rss_mb: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    """The machine's 1-minute load average at the start and at the end (it is shared)."""


def wall_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------- instances
class InstancePool:
    """Three instances of `multichannel run`, supervised: an instance that exits (SIGKILLed by the harness,
    exit 3 asking for a restart) is started again at once under the same instance id; any other exit is
    recorded as a crash."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings, self.log_dir = settings, log_dir
        self._lock = threading.RLock()
        self.runs: dict[str, int] = dict.fromkeys(INSTANCES, 0)
        self.procs: dict[str, ServiceProcess] = {}
        self.exits: dict[int, int] = {}
        self.crashes: list[str] = []
        self.paused: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for name in INSTANCES:
            self._launch(name)
        for svc in self.procs.values():
            svc.wait_ready(120)
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._thread.start()

    def _launch(self, name: str) -> None:
        self.runs[name] += 1
        path = self.log_dir / f"instance-{name}-{self.runs[name]:03d}.log"
        self.procs[name] = ServiceProcess(self.settings, path, instance_id=name).start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):  # pacing the exit check, as a process supervisor does
            with self._lock:
                for name, svc in list(self.procs.items()):
                    assert svc.proc is not None
                    code = svc.proc.poll()
                    if code is None or name in self.paused:
                        continue
                    self.exits[code] = self.exits.get(code, 0) + 1
                    if code != 3:
                        self.crashes.append(f"instance {name} exited {code}:\n{svc.log_tail(40)}")
                    log.info("chaos_restart", instance=name, exit_code=code)
                    self._launch(name)

    def owned(self, name: str) -> list[int]:
        """The input partitions the instance's current process holds, from its own log lines."""
        owned: set[int] = set()
        for line in self.procs[name].log_path.read_text(errors="replace").splitlines():
            if '"partitions_restored"' in line:
                owned |= set(json.loads(line)["partitions"])
            elif '"partitions_revoked"' in line:
                owned -= set(json.loads(line)["partitions"])
        return sorted(owned)

    def phase(self, name: str) -> str:
        """Where the instance's current process was, from its last lifecycle log line."""
        text = self.procs[name].log_path.read_text(errors="replace")
        if '"partitions_restored"' in text:
            return "processing"
        if '"partner_table_loaded"' in text:
            return "joining the group"
        return "starting"

    def kill(self, name: str) -> dict[str, Any]:
        """SIGKILL the instance and start it again at once; returns what it held."""
        with self._lock:
            svc = self.procs[name]
            detail = {"instance": name, "phase": self.phase(name), "owned": self.owned(name)}
            svc.kill()
            self.exits[-signal.SIGKILL] = self.exits.get(-signal.SIGKILL, 0) + 1
            self._launch(name)
        return detail

    def pause(self, name: str) -> tuple[int, list[int]]:
        with self._lock:
            svc = self.procs[name]
            assert svc.proc is not None
            self.paused.add(name)
            owned = self.owned(name)
            os.kill(svc.proc.pid, signal.SIGSTOP)
            return svc.proc.pid, owned

    def resume(self, name: str) -> None:
        with self._lock:
            svc = self.procs[name]
            assert svc.proc is not None
            os.kill(svc.proc.pid, signal.SIGCONT)
            self.paused.discard(name)

    def stop(self) -> list[str]:
        """SIGTERM every instance (each finishes its batch and exits 0); returns the instances that did not."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        unclean: list[str] = []
        for name, svc in self.procs.items():
            if not svc.alive():
                continue
            try:
                code = svc.terminate(60)
            except Exception as exc:
                svc.kill()
                unclean.append(f"{name}: {exc}")
                continue
            if code != 0:
                unclean.append(f"{name} exited {code} on SIGTERM:\n{svc.log_tail(30)}")
        return unclean

    def rss_mb(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        for name, svc in self.procs.items():
            if svc.proc is not None and svc.alive():
                with suppress(psutil.Error):
                    out[name] = psutil.Process(svc.proc.pid).memory_info().rss / 2**20
        return out


# ---------------------------------------------------------------------------------------------- publisher
class Publisher:
    """Publishes the workload's records at `rate` per second (times `factor` during a burst) from a
    thread; every value published is kept in the ledger with the item it stands for, so that the audit
    knows what each input record is without decoding it the service's way."""

    def __init__(
        self, settings: Settings, items: Iterable[Item], rate: float, encoder: EventEncoder, *, ledger: bool = True
    ) -> None:
        """`ledger=False` keeps no ledger (a soak publishes more than the audit needs to know)."""
        self.settings, self.items, self.rate = settings, iter(items), rate
        self.encoder = encoder
        self.factor = 1.0
        self.keep_ledger = ledger
        self.ledger: dict[bytes, Item] = {}
        self.sent = 0
        self.undelivered = 0
        self.exhausted = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._producer = Producer(
            {
                **settings.kafka_client_config(),
                "enable.idempotence": True,  # retries across broker restarts never duplicate a record
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
                "on_delivery": self._delivered,
                "log_level": 0,  # refused connections while the broker is down are the fault itself
            }
        )

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.undelivered += 1

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        credit, last = 0.0, time.monotonic()
        while not self._stop.is_set() and not self.exhausted:
            now = time.monotonic()
            credit = min(credit + (now - last) * self.rate * self.factor, self.rate * self.factor)
            last = now
            while credit >= 1:
                item = next(self.items, None)
                if item is None:
                    self.exhausted = True
                    break
                topic, key, value = encode_item(self.settings, self.encoder, item)
                if self.keep_ledger:
                    self.ledger[value] = item
                while True:
                    try:
                        self._producer.produce(topic, key=key, value=value)
                        break
                    except BufferError:  # the broker is away and the queue is full: wait for room
                        self._producer.poll(0.1)
                self.sent += 1
                credit -= 1
            self._producer.poll(0)
            self._stop.wait(0.01)  # pacing the publisher's rate, not a synchronisation

    def stop(self, flush_s: float = 120.0) -> None:
        self._stop.set()
        self._thread.join(30)
        self.undelivered += self._producer.flush(flush_s)


# ---------------------------------------------------------------------------------------------- monitor
class OffsetMonitor:
    """Samples the group's committed offsets and the input's end offsets every `every_s` (from a client of
    its own, not from the service's metrics)."""

    def __init__(self, settings: Settings, partitions: int, every_s: float = 0.25) -> None:
        self.settings, self.partitions, self.every_s = settings, list(range(partitions)), every_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        s = self.settings
        consumer = Consumer(
            {**s.kafka_client_config(), "group.id": s.application_id, "enable.auto.commit": False, "log_level": 0}
        )
        tps = [TopicPartition(s.subscription_topic, p) for p in self.partitions]
        try:
            while not self._stop.wait(self.every_s):  # the sampling period
                try:
                    committed = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(tps, timeout=2)}
                    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=2)[1] for tp in tps}
                except KafkaException:  # the broker is away: no sample
                    continue
                self.samples.append(Sample(time.monotonic(), committed, ends))
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


# ---------------------------------------------------------------------------------------------- the run
class ChaosRun:
    """One seeded run of a plan; see the module docstring."""

    def __init__(self, plan: ChaosPlan, seed: int, work_dir: Path, *, registry_url: str | None = None) -> None:
        self.plan, self.seed, self.work_dir = plan, seed, work_dir
        self.rng = random.Random(seed)
        self.registry_url = registry_url
        self.faults: list[Fault] = []
        self.broker = LocalKafka(CACHE_DIR, work_dir / "kafka")
        self.registry: LocalRegistry | None = None
        self.proxy: TcpProxy | None = None
        self.pool: InstancePool | None = None
        self.publisher: Publisher | None = None
        self.monitor: OffsetMonitor | None = None
        self.v2: EventEncoder | None = None
        self.rss_samples: list[tuple[float, dict[str, float]]] = []

    # ------------------------------------------------------------------ set-up and tear-down
    def _start_backends(self) -> Settings:
        self.broker.start()
        if self.registry_url is None:
            self.registry = LocalRegistry(CACHE_DIR, self.work_dir / "registry").start()
            self.registry_url = self.registry.url
        target = int(self.registry_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        self.proxy = TcpProxy(target).up()
        proxied = self.registry_url.replace(f":{target}/", f":{self.proxy.port}/", 1)
        p = self.plan
        return make_settings(
            self.broker.bootstrap_servers,
            proxied,
            f"chaos-{p.name}",
            processing_guarantee=p.guarantee,
            static_membership=False,
            input_partitions=p.input_partitions,
            output_partitions=p.input_partitions,
            partner_partitions=2,
            batch_size=500,
        )

    def __enter__(self) -> ChaosRun:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything the run started (after the audit, which reads the broker)."""
        for stop in (
            self.publisher.stop if self.publisher else None,
            self.monitor.stop if self.monitor else None,
            self.pool.stop if self.pool else None,
            self.proxy.down if self.proxy else None,
            self.registry.stop if self.registry else None,
        ):
            if stop is not None:
                with suppress(Exception):
                    stop()
        with suppress(OSError):
            (self.work_dir / "broker-server.log").write_bytes(self.broker.log_file.read_bytes())
        self.broker.stop()

    def _workload(self, settings: Settings) -> tuple[list[Item], list[Item]]:
        p = self.plan
        spec = WorkloadSpec(
            seed=self.seed,
            partners=60,
            customers=p.workload_customers(),
            bad_rate=0.01,
            duplicate_rate=0.02,
            shape=p.shape,
            giant_accounts=p.giant_accounts,
        )
        events = WorkloadGenerator(spec).events()
        # realistic terms end on the 1st of a month: moved by whole years, so they still do
        items = later_terms(events) if p.shape == "realistic" else future_terms(list(events))
        return split_partner_first(items)

    def _newer_writer(self, settings: Settings, encoder: EventEncoder) -> EventEncoder:
        """A publisher's encoder for a compatible newer subscription schema (an added optional field), so
        that records written during the registry outage carry a schema id the instances have not seen
        yet and must fetch."""
        newer = json.loads(schema_str(SUBSCRIPTION_EVENT))
        newer["fields"].append({"name": "chaos_note", "type": ["null", "string"], "default": None})
        subject = subject_for(settings.subscription_topic)
        client = registry_client(settings)
        schema_id = client.register_schema(subject, Schema(json.dumps(newer), "AVRO"))
        v2 = copy.copy(encoder)
        v2.subscription = RecordEncoder(SUBSCRIPTION_EVENT, subject, schema_id, writer=parse(json.dumps(newer)))
        return v2

    # ------------------------------------------------------------------ the faults
    @contextmanager
    def _fault(self, kind: str, partitions: list[int] | None = None, **detail: Any) -> Iterator[Fault]:
        fault = Fault(kind, time.monotonic(), 0.0, wall_now(), partitions or [], dict(detail))
        log.info("chaos_fault_start", kind=kind, **detail)
        try:
            yield fault
        finally:
            fault.ended = time.monotonic()
            if not fault.partitions:
                fault.partitions = list(range(self.plan.input_partitions))
            self.faults.append(fault)
            log.info("chaos_fault_end", kind=kind, took_s=round(fault.ended - fault.started, 3), **fault.detail)

    def kill_instance(self) -> None:
        assert self.pool is not None
        name = self.rng.choice(INSTANCES)
        with self._fault("instance SIGKILL") as fault:
            fault.detail.update(self.pool.kill(name))
            fault.partitions = list(fault.detail["owned"])

    def restart_broker(self) -> None:
        assert self.broker.proc is not None
        down_s = round(self.rng.uniform(*self.plan.broker_down_s), 1)
        with self._fault("broker SIGKILL and restart", down_s=down_s):
            self.broker.proc.kill()
            self.broker.proc.wait(30)
            time.sleep(down_s)  # the fault itself: how long the broker stays away
            self.broker.start(keep_data=True)

    def zombie(self) -> None:
        assert self.pool is not None
        holders = [n for n in INSTANCES if self.pool.owned(n)]  # a zombie that held nothing proves nothing
        name = self.rng.choice(holders or list(INSTANCES))
        stop_s = self.plan.zombie_stop_s
        pid, owned = self.pool.pause(name)
        log_path = self.pool.procs[name].log_path
        with self._fault("zombie (SIGSTOP past the session timeout)", owned, instance=name, stop_s=stop_s) as fault:
            time.sleep(stop_s)  # the fault itself: the process is frozen this long
            lines_before = len(log_path.read_text(errors="replace").splitlines())
            self.pool.resume(name)
            fault.detail.update(pid=pid, log=str(log_path), log_offset=lines_before)

    def registry_outage(self) -> None:
        assert self.proxy is not None and self.publisher is not None and self.v2 is not None
        outage_s = self.plan.registry_outage_s
        with self._fault("schema registry unreachable", outage_s=outage_s) as fault:
            self.proxy.down()
            # from now on good records carry a schema id no instance has fetched yet
            self.publisher.encoder = self.v2
            half = outage_s / 2
            time.sleep(half)  # the fault itself: first half of the outage
            self.kill_instance()  # a restart must wait for the registry at start
            time.sleep(outage_s - half)  # the fault itself: second half of the outage
            self.proxy.up()
            fault.detail["kill_during_outage"] = self.faults[-1].detail["instance"]

    def burst(self) -> None:
        assert self.publisher is not None
        p = self.plan
        with self._fault("burst", factor=p.burst_factor, seconds=p.burst_s) as fault:
            sent_before = self.publisher.sent
            self.publisher.factor = p.burst_factor
            deadline = time.monotonic() + p.burst_s
            kill_at = time.monotonic() + p.burst_s / 2
            killed = False
            while time.monotonic() < deadline:
                if not killed and time.monotonic() >= kill_at:
                    self.kill_instance()  # an instance kill while the lag is high
                    killed = True
                time.sleep(0.2)  # the fault itself: the burst lasts burst_s
            self.publisher.factor = 1.0
            fault.detail["records"] = self.publisher.sent - sent_before
            fault.detail["max_lag"] = max((s.lag for s in self._samples_since(fault.started)), default=0)

    def _samples_since(self, t: float) -> list[Sample]:
        assert self.monitor is not None
        return [s for s in self.monitor.samples if s.at >= t]

    def schedule(self) -> list[str]:
        """The order of the faults: the long ones shuffled, the instance kills spread between them (the
        registry outage and the burst each hold one more kill)."""
        p = self.plan
        long = ["broker"] * p.broker_restarts + ["zombie", "registry", "burst"]
        self.rng.shuffle(long)
        kills = p.instance_kills - 2  # one inside the registry outage, one inside the burst
        gaps = len(long) + 1
        per_gap = [kills // gaps + (1 if i < kills % gaps else 0) for i in range(gaps)]
        order: list[str] = []
        for i in range(gaps):
            order += ["kill"] * per_gap[i]
            if i < len(long):
                order.append(long[i])
        return order

    def wait_caught_up(self, deadline_s: float, *, all_input: bool = False) -> None:
        """Until the group's committed offsets reach the input's end as it was when the wait began (or, with
        `all_input`, as it is now); crashes of instances fail it."""
        assert self.monitor is not None and self.pool is not None
        deadline = time.monotonic() + deadline_s
        start = time.monotonic()
        target: dict[int, int] | None = None
        while True:
            self._check_crashes()
            sample = self.monitor.latest()
            if sample is not None and sample.at >= start:
                if target is None or all_input:
                    target = sample.ends
                if all(sample.committed.get(p, 0) >= end for p, end in target.items()):
                    return
            if time.monotonic() > deadline:
                tails = "\n".join(svc.log_tail(20) for svc in self.pool.procs.values())
                raise AssertionError(f"not caught up in {deadline_s} s: {sample}\n{tails}")
            time.sleep(0.25)  # the monitor's sampling period: nothing to block on

    def _check_crashes(self) -> None:
        assert self.pool is not None
        if self.pool.crashes:
            raise AssertionError("an instance crashed:\n" + "\n\n".join(self.pool.crashes))

    # ------------------------------------------------------------------ the run
    def run(self, progress: Callable[[str], None] = lambda _m: None) -> ChaosResult:
        """Start everything, inject the planned faults under load, stop the publisher and wait until the input
        is processed, stop the instances cleanly. The broker stays up for the audit: use as a context manager."""
        started, started_wall, load_at_start = time.monotonic(), wall_now(), os.getloadavg()[0]
        settings = self._start_backends()
        partners, rest = self._workload(settings)
        publish(settings, partners)
        encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
        self.v2 = self._newer_writer(settings, encoder)
        self.pool = InstancePool(settings, self.work_dir)
        self.pool.start()
        progress("3 instances ready")
        self.monitor = OffsetMonitor(settings, self.plan.input_partitions)
        self.monitor.start()
        self.publisher = Publisher(settings, rest, self.plan.steady_rate, encoder)
        self.publisher.start()
        self.wait_caught_up(60)
        order = self.schedule()
        actions: dict[str, Callable[[], None]] = {
            "kill": self.kill_instance,
            "broker": self.restart_broker,
            "zombie": self.zombie,
            "registry": self.registry_outage,
            "burst": self.burst,
        }
        for n, step in enumerate(order, 1):
            self.rss_samples.append((time.monotonic(), self.pool.rss_mb()))
            actions[step]()
            if step == "kill":
                time.sleep(self.rng.uniform(*self.plan.kill_gap_s))  # the random instant of the next kill
            else:
                self.wait_caught_up(self.plan.catch_up_deadline_s)
            self._check_crashes()
            if n % 10 == 0 or step != "kill":
                progress(f"{n}/{len(order)} faults ({step})")
        self.publisher.stop()
        self.wait_caught_up(self.plan.catch_up_deadline_s, all_input=True)
        progress("input processed")
        self.monitor.stop()
        unclean = self.pool.stop()
        assert not unclean, "\n".join(unclean)
        self._check_crashes()
        broker_log = self.broker.log_file.read_text(errors="replace")
        return ChaosResult(
            plan=self.plan,
            seed=self.seed,
            settings=settings,
            faults=self.faults,
            samples=self.monitor.samples,
            ledger=self.publisher.ledger,
            partners=partners,
            published=self.publisher.sent,
            undelivered=self.publisher.undelivered,
            exits=self.pool.exits,
            logs=sorted(self.work_dir.glob("instance-*.log")),
            broker_log=broker_log,
            started_wall=started_wall,
            seconds=time.monotonic() - started,
            rss_mb=self.rss_samples,
            load=(load_at_start, os.getloadavg()[0]),
        )
