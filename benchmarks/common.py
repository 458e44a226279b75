"""The names, options and results every part of `multichannel bench` shares."""

from __future__ import annotations

import json
import statistics
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from config.settings import PROJECT_ROOT

console = Console(stderr=True)


PASSTHROUGH = "raw passthrough"
ALOS = "service, at-least-once"
EOS = "service, exactly-once"
EOS_CURRENT = "service, exactly-once, rule book current"
"""The exactly-once service under the `current` rule book, on the same input: its rate next to `seed`'s."""
EOS_TRACING = "service, exactly-once, tracing on"
"""The exactly-once service exporting spans over OTLP (to `benchmarks.otlp_sink`), on the same input, one record in
`TRACED_EVERY` of which carries a sampled traceparent: its rate next to the untraced run's."""
TRACED_EVERY = 100
"""One input record in this many carries a traceparent, as from billing systems that sample 1% of their traces."""
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


PHASES = ("wait", "process", "produce", "offsets", "commit")
"""The service's batch phases (`multichannel_batch_phase_seconds`), in the order a batch goes through them."""


Target = tuple[str, str, bool | None, str]
"""(target, measured, met, for a target not met: by how much and what bounds it)."""


def log_event(path: Path, name: str) -> dict[str, Any] | None:
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


def ops_port(log: Path) -> int | None:
    found = log_event(log, "ops_endpoints")
    return None if found is None else int(found["port"])


def last_error_line(log: Path) -> str:
    """The `error` of a service log's last error-level line, or a pointer to the log."""
    if log.exists():
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if '"level": "error"' in line:
                with suppress(ValueError):
                    return str(json.loads(line).get("error"))
    return f"see {log}"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")[:24]


def scrape_metrics(log: Any) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """The service's /metrics as family name -> samples (name, labels, value); {} when not reachable."""
    from prometheus_client.parser import text_string_to_metric_families

    port = ops_port(log)
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples] for f in text_string_to_metric_families(text)
    }
