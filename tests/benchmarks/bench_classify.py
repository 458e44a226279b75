"""Classify throughput on a generated stream: the pure engine, and the end-to-end command split
into JSON parsing, validation, engine and output formatting (`python -m tests.benchmarks.bench_classify`)."""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any

import orjson

from consumers.classify_runner import classify_stream, record_to_json
from consumers.runtime import freeze_survivors, tune_gc
from multichannel.engine import Classifier
from multichannel.parse import parse_event
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec


def lines_for(events: int, seed: int) -> list[bytes]:
    customers = max(100, events // 4)
    spec = WorkloadSpec(seed=seed, partners=max(50, customers // 100), customers=customers, max_events=events)
    out: list[bytes] = []
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, BadRecord):
            out.append(item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event))
        else:
            out.append(orjson.dumps(item))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    tune_gc()
    lines = lines_for(args.events, args.seed)
    n = len(lines)

    t = time.perf_counter()
    objs: list[Any] = []
    for raw in lines:
        try:
            objs.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    t_json = time.perf_counter() - t

    t = time.perf_counter()
    events = []
    for obj in objs:
        try:
            events.append(parse_event(obj))
        except Exception:
            continue
    t_parse = time.perf_counter() - t

    freeze_survivors()  # the benchmark's own event list is not the engine's heap
    engine = Classifier(transactional=False)
    records: list[Any] = []
    clock = None
    t = time.perf_counter()
    for i, ev in enumerate(events):
        if i % 10_000 == 0:
            freeze_survivors()  # as the classify command does
        if clock is None or ev.occurred_at > clock:
            clock = ev.occurred_at
            records.extend(engine.fire_due(clock))
        records.extend(engine.apply(ev, clock) or ())
    t_engine = time.perf_counter() - t

    t = time.perf_counter()
    for r in records:
        record_to_json(r)
    t_out = time.perf_counter() - t

    t = time.perf_counter()
    counts = classify_stream(lines, io.BytesIO())
    t_total = time.perf_counter() - t

    split = {
        "json_parse": round(t_json, 3),
        "validation": round(t_parse, 3),
        "engine": round(t_engine, 3),
        "output_formatting": round(t_out, 3),
        "classify_total": round(t_total, 3),
    }
    result: dict[str, Any] = {
        "events": n,
        "valid_events": len(events),
        "records": len(records),
        "engine_events_per_s": round(len(events) / t_engine),
        "classify_events_per_s": round(n / t_total),
        "split_seconds": split,
        "classify_counts": counts.summary(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{n} events ({len(events)} valid), {len(records)} records")
    print(f"engine only:       {result['engine_events_per_s']:>10,} events/s")
    print(f"classify command:  {result['classify_events_per_s']:>10,} events/s end to end")
    for part, seconds in split.items():
        print(f"  {part:<18} {seconds:8.3f} s")


if __name__ == "__main__":
    main()
