"""The fault suite's figures (recovery per kind of fault, rebalances, lag, exits) and `docs/reliability.md`."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.chaos.audit import AuditReport
from tests.chaos.harness import ChaosPlan, ChaosResult, Fault, Sample

WHAT_EACH_FAULT_PROVES = {
    "instance SIGKILL": "a transaction cut anywhere (open, between produce and commit, during a restore or a "
    "rebalance) is aborted when the same transactional id comes back, and the partitions it held are restored "
    "from the changelog by whichever instance gets them: nothing lost, nothing written twice",
    "broker SIGKILL and restart": "no client call hangs; transactions open across the outage are aborted and "
    "retried, and instances either reconnect in process or exit 3 and are restarted by the supervisor",
    "zombie (SIGSTOP past the session timeout)": "an instance frozen past the session timeout loses its "
    "partitions while it sleeps; when it wakes, a batch whose offsets it had not yet sent is refused (group "
    "generation fencing) and aborted, and a transaction it left open past the transaction timeout has been "
    "aborted by the broker. A batch whose offsets it had already sent may still commit when it wakes: the new "
    "owner waits for that transaction before it restores the partitions, so such writes belong to one "
    "consistent history and are never repeated",
    "schema registry unreachable": "records whose writer schema the instances have not fetched yet wait for the "
    "registry (the batch is retried) instead of being dead-lettered; an instance restarted meanwhile waits for "
    "the registry at start",
    "burst": "a load 10 times the steady rate builds lag that drains afterwards; nothing is dropped",
}


@dataclass
class Recovery:
    kind: str
    count: int
    first_commit: list[float]
    caught_up: list[float]


def first_commit_s(fault: Fault, samples: list[Sample]) -> float | None:
    """Seconds from the end of the fault until every partition it stopped has committed past where it stood
    when the fault began (processing goes on there)."""
    before = [s for s in samples if s.at <= fault.started]
    if not before:
        return None
    start = {p: before[-1].committed.get(p, 0) for p in fault.partitions}
    for s in samples:
        if s.at >= fault.ended and all(s.committed.get(p, 0) > at for p, at in start.items()):
            return s.at - fault.ended
    return None


def recovery_s(fault: Fault, samples: list[Sample]) -> float | None:
    """Seconds from the end of the fault until the committed offsets of every partition it stopped reach the
    input's end offsets as they stood when it ended (the backlog it built is worked off)."""
    after = [s for s in samples if s.at >= fault.ended]
    if not after:
        return None
    target = {p: after[0].ends[p] for p in fault.partitions if p in after[0].ends}
    for s in after:
        if all(s.committed.get(p, 0) >= end for p, end in target.items()):
            return s.at - fault.ended
    return None


def recoveries(result: ChaosResult) -> list[Recovery]:
    by_kind: dict[str, Recovery] = {}
    for fault in result.faults:
        rec = by_kind.setdefault(fault.kind, Recovery(fault.kind, 0, [], []))
        rec.count += 1
        for measure, into in ((first_commit_s, rec.first_commit), (recovery_s, rec.caught_up)):
            seconds = measure(fault, result.samples)
            if seconds is not None:
                into.append(seconds)
    return list(by_kind.values())


def _median_max(values: list[float]) -> str:
    if not values:
        return "n/a | n/a"
    return f"{statistics.median(values):.1f} | {max(values):.1f}"


def rebalances(result: ChaosResult) -> int:
    """Completed rebalances of the service's group from the first fault on, from the broker's group
    coordinator log lines (`[2026-11-25 21:53:00,570] INFO ... Stabilized group <id> generation N ...`)."""
    first = ""
    if result.faults:  # the broker writes local time, as this process reads it
        local = datetime.fromisoformat(result.faults[0].wall).astimezone()
        first = local.strftime("%Y-%m-%d %H:%M:%S,") + f"{local.microsecond // 1000:03d}"
    group = re.escape(result.settings.application_id)
    stamps = re.findall(rf"^\[([^\]]+)\] INFO .*Stabilized group {group} generation", result.broker_log, re.MULTILINE)
    return sum(1 for stamp in stamps if stamp >= first)


def log_events(result: ChaosResult, level: str) -> Counter[str]:
    """Log events of the instances at `level`, by event name."""
    counts: Counter[str] = Counter()
    for path in result.logs:
        for line in path.read_text(errors="replace").splitlines():
            if f'"level": "{level}"' not in line:
                continue
            try:
                counts[json.loads(line)["event"]] += 1
            except (ValueError, KeyError):
                counts["(not JSON)"] += 1
    return counts


def zombie_after_wake(result: ChaosResult) -> list[str]:
    """The zombie's log events after SIGCONT: what it tried and how it was stopped."""
    events: list[str] = []
    for fault in result.faults:
        if fault.kind.startswith("zombie"):
            lines = Path(fault.detail["log"]).read_text(errors="replace").splitlines()[fault.detail["log_offset"] :]
            for line in lines:
                try:
                    event = json.loads(line)["event"]
                except (ValueError, KeyError):
                    continue
                if event not in events and event != "dead_letter":
                    events.append(event)
    return events


def coverage_failures(result: ChaosResult, *, min_rebalances: int) -> list[str]:
    """Faults the plan asked for that did not happen (a run that injected less proves less)."""
    p = result.plan
    kinds = Counter(f.kind for f in result.faults)
    wanted = {
        "instance SIGKILL": p.instance_kills,
        "broker SIGKILL and restart": p.broker_restarts,
        "zombie (SIGSTOP past the session timeout)": 1,
        "schema registry unreachable": 1,
        "burst": 1,
    }
    out = [f"{kind}: {kinds[kind]} of {n}" for kind, n in wanted.items() if kinds[kind] < n]
    if rebalances(result) < min_rebalances:
        out.append(f"rebalances: {rebalances(result)} of {min_rebalances}")
    return out


def machine() -> str:
    model = "unknown CPU"
    with_cpu = Path("/proc/cpuinfo")
    if with_cpu.exists():
        for line in with_cpu.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        ram = f"{kb / 2**20:.1f} GiB"
    return (
        f"{os.cpu_count()} cores ({model}), {ram} RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def lag_figures(result: ChaosResult) -> dict[str, float]:
    lags = [s.lag for s in result.samples]
    burst = next((f for f in result.faults if f.kind == "burst"), None)
    out: dict[str, float] = {"max lag (records)": max(lags, default=0)}
    if burst is not None:
        out["max lag during the burst (records)"] = float(burst.detail.get("max_lag", 0))
        out["records published during the burst"] = float(burst.detail.get("records", 0))
        drained = recovery_s(burst, result.samples)
        out["burst end to lag drained (s)"] = -1.0 if drained is None else round(drained, 1)
    return out


def summary(result: ChaosResult, audit: AuditReport) -> dict[str, object]:
    """The run's figures as one dict (for the report and for assertions)."""
    kinds = Counter(f.kind for f in result.faults)
    return {
        "faults": dict(kinds),
        "rebalances": rebalances(result),
        "input records": audit.input_records,
        "lost": audit.lost,
        "duplicated": audit.duplicated,
        "exits": result.exits,
    }


def _shape_text(plan: ChaosPlan) -> str:
    if plan.shape == "realistic":
        return (
            f"the generator's realistic shape over {plan.workload_customers():,} customers (heavy-tailed account "
            "sizes up to 20,000 subscriptions, terms from the 1st of a month to the 1st of a later one, partner "
            "changes arriving after a newer one of the same partner)"
        )
    return f"the uniform shape over {plan.workload_customers():,} customers (one to four subscriptions per account)"


def markdown(result: ChaosResult, audit: AuditReport, alos: tuple[ChaosResult, AuditReport] | None) -> str:
    """docs/reliability.md: date, machine, seed, every figure, the fault log and what each fault proves."""
    p = result.plan
    kinds = Counter(f.kind for f in result.faults)
    phases = Counter(f.detail.get("phase", "") for f in result.faults if f.kind == "instance SIGKILL")
    lines = [
        "# Reliability",
        "",
        f"Written by `make chaos` (`python -m tests.chaos --seed {result.seed}`) on {result.started_wall[:10]}; "
        "do not edit by hand. Run it again with another seed (`CHAOS_SEED` or `--seed`) on another machine.",
        "",
        f"- started: {result.started_wall} UTC, {result.seconds / 60:.1f} minutes",
        f"- machine: {machine()}; load average {result.load[0]:.1f} at the start, {result.load[1]:.1f} at the end "
        "(the machine is shared: figures of time depend on it)",
        f"- seed: {result.seed}",
        "- broker: one local Kafka 4.3.1 (KRaft) restarted on its own data; registry: Apicurio 3.3 behind a TCP proxy",
        f"- service: 3 instances (`a`, `b`, `c`), {p.guarantee}, {p.input_partitions} input partitions, batch "
        "size 500, dynamic group membership (see below), each restarted at once after a SIGKILL or an exit 3",
        f"- load: {p.steady_rate:g} records/s steady, {p.burst_factor:g} times for {p.burst_s:g} s; about 1% bad "
        "records and 2% duplicates",
        f"- workload: {_shape_text(p)}",
        "",
        "## Result (exactly-once)",
        "",
        "| figure | value |",
        "|---|---:|",
    ]
    rows: list[tuple[str, object]] = [
        *((f"faults: {kind}", n) for kind, n in sorted(kinds.items())),
        ("rebalances of the group (broker log: `Stabilized group`)", rebalances(result)),
        ("input records (subscription topic, read back)", audit.input_records),
        ("  applied", audit.applied),
        ("  duplicates (an event id seen before)", audit.duplicates),
        ("  bad records", audit.bad_records),
        ("partner records", audit.partner_records),
        ("decisions committed / expected", f"{audit.decisions.committed} / {audit.decisions.expected}"),
        ("statuses committed / expected", f"{audit.statuses.committed} / {audit.statuses.expected}"),
        ("dead letters committed (each with its record's bytes)", audit.dead_letters),
        ("**lost**", f"**{audit.lost}**"),
        ("**duplicated**", f"**{audit.duplicated}**"),
        (
            "subscriptions or accounts whose sequence differs",
            audit.decisions.keys_differing + audit.statuses.keys_differing,
        ),
        ("dead letters of good records", audit.dead_letters_of_good_records),
        ("records the publisher could not deliver", result.undelivered),
        *((f"instance exits: {_exit_name(code)}", n) for code, n in sorted(result.exits.items())),
        *((k, v) for k, v in lag_figures(result).items()),
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [
        "",
        "## Time to recover",
        "",
        "From the end of a fault (the kill and the restart at once; the broker ready again; SIGCONT; the registry "
        "answering again; the burst's last record) until the group's committed offsets on every input partition "
        "the fault stopped (for a kill or a zombie: the partitions the instance held, from its log; otherwise all) "
        "reach the input's end offsets as they stood when the fault ended, sampled every 0.25 s by a client of "
        "the harness. For a kill this includes the session timeout (10 s) the group waits before it drops the dead "
        "member and moves its partitions.",
        "",
        "First commit: from the end of the fault until every partition it stopped has committed past where it stood "
        "when the fault began.",
        "",
        "| fault | injected | first commit, median s | max s | caught up, median s | max s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.kind} | {r.count} | {_median_max(r.first_commit)} | {_median_max(r.caught_up)} |"
        for r in recoveries(result)
    ]
    lines += [
        "",
        "Instance kills by what the victim was doing (from its log): "
        + ", ".join(f"{phase}: {n}" for phase, n in sorted(phases.items())),
        "",
        "Zombie's log events after SIGCONT: " + ", ".join(f"`{e}`" for e in zombie_after_wake(result)),
        "",
        "Warnings `registry_unavailable` (a batch retried while the registry was away): "
        f"{log_events(result, 'warning')['registry_unavailable']}; dead letters with reason `SCHEMA_MISMATCH`: "
        f"{audit.dead_letters_by_reason.get('SCHEMA_MISMATCH', 0)}, all of them bad records.",
        "",
        "A fault that comes before the previous one has recovered adds its own time to that recovery (a kill "
        "just before a broker restart, for instance).",
        "",
        "Error-level log events of the instances (`kafka_client` lines are librdkafka's refused connections while "
        "the broker is down): "
        + (", ".join(f"`{e}` {n}" for e, n in sorted(log_events(result, "error").items())) or "none"),
        "",
    ]
    if alos is not None:
        a_result, a_audit = alos
        lines += [
            "## At-least-once mode",
            "",
            f"A shorter run ({a_result.seconds / 60:.1f} minutes, same seed) with "
            "`MULTICHANNEL_PROCESSING_GUARANTEE=at_least_once`: nothing may be lost; repeats are allowed and "
            f"counted. Workload: {_shape_text(a_result.plan)}.",
            "",
            "| figure | value |",
            "|---|---:|",
            *(f"| faults: {k} | {n} |" for k, n in sorted(Counter(f.kind for f in a_result.faults).items())),
            f"| rebalances | {rebalances(a_result)} |",
            f"| input records | {a_audit.input_records} |",
            f"| decisions committed / expected | {a_audit.decisions.committed} / {a_audit.decisions.expected} |",
            f"| **lost** | **{a_audit.lost}** |",
            f"| repeated decisions | {a_audit.decisions.repeated} |",
            f"| repeated statuses | {a_audit.statuses.repeated} |",
            f"| repeated dead letters | {a_audit.dead_letters_repeated} |",
            "",
        ]
    lines += [
        "## How it is checked",
        "",
        "The audit does not read the service's counters. A `read_committed` reader reads every output topic; the "
        "input topic is read back (what the broker really holds), each record is looked up by its bytes in the "
        "publisher's ledger (good event or bad record), and the good events, in partition order after the partner "
        "events, go through the same engine `multichannel classify` runs. Per subscription the committed decisions "
        "must equal the engine's sequence (no repeat, no gap), per account the statuses too, and every bad record "
        "must have exactly one dead letter carrying its original key and value (and the reason it was made for).",
        "",
        "Why dynamic membership: with static membership (the default) an instance restarted at once takes its "
        "partitions back without a rebalance, so kills would not move partitions between instances. The suite "
        "runs the group with `MULTICHANNEL_STATIC_MEMBERSHIP=false`, so that every restart joins as a new member "
        "(a rebalance) and the dead member is dropped after the session timeout (a kill during a rebalance in progress "
        "joins that one); the instance id, and "
        "so the transactional id, stays the same, so the restarted instance fences its predecessor's open "
        "transaction at once. The static path is covered by the integration tests.",
        "",
        "Why a proxy for the registry: Apicurio runs with in-memory storage here, so stopping it would lose "
        "every schema. The instances talk to it through a TCP proxy that, for the outage, closes its port "
        "(connections refused) and cuts the connections it carries: what a stopped registry looks like to a "
        "client. A SIGSTOP of the JVM would instead model a hung registry. During the outage the publisher "
        "switches to a newer compatible schema registered just before, so running instances meet a schema id "
        "they must fetch.",
        "",
        "## What each fault proves",
        "",
        *(f"- **{kind}**: {text}." for kind, text in WHAT_EACH_FAULT_PROVES.items()),
        "",
        "## Fault log",
        "",
        "| # | UTC | fault | s | detail |",
        "|---:|---|---|---:|---|",
    ]
    for n, f in enumerate(sorted(result.faults, key=lambda f: f.started), 1):
        detail = {k: v for k, v in f.detail.items() if k not in ("log", "log_offset", "pid")}
        lines.append(f"| {n} | {f.wall[11:23]} | {f.kind} | {f.ended - f.started:.1f} | {_detail(detail)} |")
    return "\n".join(lines) + "\n"


def _detail(detail: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items()).replace("|", "/")


def _exit_name(code: int) -> str:
    return {-9: "SIGKILL by the harness", 3: "exit 3 (restart asked)", 0: "exit 0"}.get(code, f"exit {code}")
