"""`make soak`: three instances at 80% of the rate they were measured to sustain, for 10 minutes: the lag must
stay bounded, each instance's RSS grow less than 5% over the second half, and no error be logged. The figures
go to the "Soak" section of docs/reliability.md (the rest of the file is `make chaos`'s).

The maximum rate is measured first on the same stack: a backlog published as fast as the publisher can, over
the seconds the group takes to commit all of it. The workload replays a fixed population of accounts under new
event ids, so the state stops growing once every dedup window is full (256 ids, a minute or two).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from config.logs import configure_logging
from config.registry import registry_client
from deploy.local.kafka import LocalKafka
from deploy.local.registry import LocalRegistry
from producers.generator import WorkloadGenerator, WorkloadSpec
from producers.serde import EventEncoder
from tests.chaos.harness import InstancePool, Item, OffsetMonitor, Publisher, Sample, wall_now
from tests.chaos.report import machine
from tests.integration.conftest import CACHE_DIR, make_settings
from tests.integration.pipeline import publish
from tests.integration.test_service import future_terms, split_partner_first

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 2_000
BACKLOG = 60_000
LOAD_SHARE = 0.8


def cycled_workload(seed: int) -> tuple[list[Item], Iterator[Item]]:
    """The partner events, and an endless stream that replays the same accounts' events under new event ids
    (pass n adds `-rn`): the accounts, their subscriptions and, once full, their dedup windows stop growing."""
    spec = WorkloadSpec(seed=seed, partners=60, customers=CUSTOMERS, bad_rate=0.01, duplicate_rate=0.02)
    partners, rest = split_partner_first(future_terms(list(WorkloadGenerator(spec).events())))

    def stream() -> Iterator[Item]:
        for n in itertools.count():
            for item in rest:
                yield {**item, "event_id": f"{item['event_id']}-r{n}"} if n and isinstance(item, dict) else item

    return partners, stream()


@dataclass
class SoakResult:
    started: str
    max_rate: float
    rate: float
    seconds: float
    records: int
    lag_first_half_max: int
    lag_second_half_max: int
    lag_end: int
    rss_mid_mb: dict[str, float]
    rss_end_mb: dict[str, float]
    error_logs: dict[str, int]
    unclean_stops: list[str]

    @property
    def rss_growth(self) -> dict[str, float]:
        return {
            name: (self.rss_end_mb[name] - mid) / mid * 100
            for name, mid in self.rss_mid_mb.items()
            if name in self.rss_end_mb
        }

    def failures(self) -> list[str]:
        out: list[str] = []
        bound = max(self.lag_first_half_max * 1.5, self.rate * 5)
        if self.lag_second_half_max > bound:
            out.append(
                f"lag not bounded: {self.lag_second_half_max} in the second half, first half {self.lag_first_half_max}"
            )
        out += [f"RSS of {n} grew {g:.1f}% over the second half" for n, g in self.rss_growth.items() if g >= 5.0]
        if self.error_logs:
            out.append(f"error logs: {self.error_logs}")
        if self.unclean_stops:
            out.append(f"not stopped cleanly by SIGTERM: {', '.join(self.unclean_stops)}")
        return out


def _lag_max(samples: list[Sample], start: float, end: float) -> int:
    return max((s.lag for s in samples if start <= s.at < end), default=0)


def _errors(paths: list[Path]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        for event in re.findall(r'"event": "([^"]+)", "level": "error"', path.read_text(errors="replace")):
            counts[event] = counts.get(event, 0) + 1
    return counts


def soak(seed: int, minutes: float, work: Path, progress: Callable[[str], None]) -> SoakResult:
    broker = LocalKafka(CACHE_DIR, work / "kafka").start()
    registry = LocalRegistry(CACHE_DIR, work / "registry").start()
    pool: InstancePool | None = None
    try:
        settings = make_settings(
            broker.bootstrap_servers,
            registry.url,
            "soak",
            input_partitions=6,
            output_partitions=6,
            partner_partitions=2,
        )
        partners, stream = cycled_workload(seed)
        publish(settings, partners)
        encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
        pool = InstancePool(settings, work)
        pool.start()
        monitor = OffsetMonitor(settings, 6, every_s=1.0)
        monitor.start()
        started = time.monotonic()
        backlog = Publisher(settings, itertools.islice(stream, BACKLOG), 1e9, encoder, ledger=False)
        backlog.start()
        while not backlog.exhausted:
            time.sleep(0.1)  # the publisher's thread runs flat out: nothing to block on
        backlog.stop()  # flushes the tail
        _wait_caught_up(monitor, time.monotonic())
        max_rate = BACKLOG / (time.monotonic() - started)
        progress(f"maximum rate {max_rate:.0f} records/s")
        rate = max_rate * LOAD_SHARE
        soak_s = minutes * 60
        publisher = Publisher(settings, stream, rate, encoder, ledger=False)
        began = time.monotonic()
        publisher.start()
        rss_mid: dict[str, float] = {}
        while (elapsed := time.monotonic() - began) < soak_s:
            if not rss_mid and elapsed >= soak_s / 2:
                rss_mid = pool.rss_mb()
                progress(f"half-time: RSS {rss_mid}")
            assert not pool.crashes, pool.crashes
            time.sleep(1.0)  # the soak's own duration: it is the load, not a synchronisation
        rss_end = pool.rss_mb()
        publisher.stop()
        last = monitor.latest()
        lag_end = last.lag if last is not None else 0
        monitor.stop()
        unclean = pool.stop()
        samples = monitor.samples
        return SoakResult(
            started=wall_now(),
            max_rate=max_rate,
            rate=rate,
            seconds=soak_s,
            records=publisher.sent,
            lag_first_half_max=_lag_max(samples, began, began + soak_s / 2),
            lag_second_half_max=_lag_max(samples, began + soak_s / 2, began + soak_s),
            lag_end=lag_end,
            rss_mid_mb=rss_mid,
            rss_end_mb=rss_end,
            error_logs=_errors(sorted(work.glob("instance-*.log"))),
            unclean_stops=[u.split(":", 1)[0] for u in unclean],
        )
    finally:
        if pool is not None:
            pool.stop()
        registry.stop()
        broker.stop()


def _wait_caught_up(monitor: OffsetMonitor, since: float) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        sample = monitor.latest()
        if sample is not None and sample.at > since and sample.lag == 0:
            return
        time.sleep(0.1)  # the monitor's sampling period: nothing to block on
    raise AssertionError("the backlog was not processed in 600 s")


def section(result: SoakResult, seed: int) -> str:
    growth = ", ".join(f"{n} {g:+.1f}%" for n, g in sorted(result.rss_growth.items()))
    mid = ", ".join(f"{n} {v:.0f}" for n, v in sorted(result.rss_mid_mb.items()))
    end = ", ".join(f"{n} {v:.0f}" for n, v in sorted(result.rss_end_mb.items()))
    rows = [
        ("written", f"{result.started[:19]} UTC by `make soak` (seed {seed})"),
        ("machine", machine()),
        ("maximum rate (a 60,000-record backlog over the seconds to commit it)", f"{result.max_rate:,.0f} records/s"),
        ("soak rate (80%)", f"{result.rate:,.0f} records/s for {result.seconds / 60:.0f} minutes"),
        ("records published", f"{result.records:,}"),
        ("lag, largest in the first half / second half / at the end", f"{result.lag_first_half_max} / "
         f"{result.lag_second_half_max} / {result.lag_end}"),
        ("RSS MB at half-time", mid),
        ("RSS MB at the end", end),
        ("RSS growth over the second half", growth),
        ("error log events", ", ".join(f"`{k}` {v}" for k, v in result.error_logs.items()) or "none"),
        ("verdict", "; ".join(result.failures()) or "lag bounded, RSS growth under 5%, no error logs"),
    ]  # fmt: skip
    lines = ["## Soak", "", "| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    return "\n".join(lines)


def read_section(path: Path) -> str | None:
    """The Soak section of `path`, if it has one (`make chaos` keeps it when it rewrites the file)."""
    old = path.read_text() if path.exists() else ""
    start = old.find("\n## Soak\n")
    if start < 0:
        return None
    nxt = old.find("\n## ", start + 1)
    return old[start + 1 : None if nxt < 0 else nxt]


def write_section(path: Path, text: str) -> None:
    """Replace the Soak section of `path` (or append it), keeping the rest."""
    old = path.read_text() if path.exists() else "# Reliability\n"
    start = old.find("\n## Soak\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    nxt = old.find("\n## ", start + 1)
    path.write_text(old[: start + 1] + text + ("" if nxt < 0 else old[nxt:]))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or random.randrange(1, 10**6)))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mc-soak-"))
    configure_logging("INFO", file=work / "soak.log")
    began = time.monotonic()

    def progress(message: str) -> None:
        print(f"[soak {time.monotonic() - began:6.0f} s] {message}", flush=True)

    progress(f"seed {args.seed}; logs under {work}")
    result = soak(args.seed, args.minutes, work, progress)
    write_section(args.out, section(result, args.seed))
    progress(f"wrote {args.out}")
    for failure in result.failures():
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if result.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
