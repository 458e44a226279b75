"""Classify throughput on a generated stream: the pure engine, and the end-to-end command split
into JSON parsing, validation, engine and output formatting (`python -m tests.benchmarks.bench_classify`)."""

from __future__ import annotations

import argparse
import gc
import io
import json
import time
from typing import Any

import orjson

from consumers.classify_runner import classify_stream, record_to_json
from consumers.runtime import freeze_survivors, tune_gc
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent
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


def _engine_pass(events: list[Any], keep: list[Any] | None) -> int:
    """Run the engine over the events as the classify command does (timers before each event that
    moves the clock); count the records, or keep them in `keep`."""
    engine = Classifier(transactional=False)
    deadlines = engine.deadlines
    produced = 0
    clock = None
    for i, ev in enumerate(events):
        if i % 10_000 == 0:
            freeze_survivors()  # as the classify command does
        if clock is None or ev.occurred_at > clock:
            clock = ev.occurred_at
            if deadlines and deadlines[0] <= clock:
                due = engine.fire_due(clock)
                produced += len(due)
                if keep is not None:
                    keep.extend(due)
        records = engine.apply(ev, clock) or ()
        produced += len(records)
        if keep is not None:
            keep.extend(records)
    return produced


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="engine passes; the fastest is reported")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    tune_gc()
    lines = lines_for(args.events, args.seed)
    n = len(lines)

    t = time.perf_counter()
    counts = classify_stream(lines, io.BytesIO())
    t_total = time.perf_counter() - t
    gc.collect()

    # JSON decoding alone, then decoding and validation together (keeping only the events: a list of
    # a million decoded dicts would fill the heap the engine is measured on)
    loads = orjson.loads
    t = time.perf_counter()
    for raw in lines:
        try:
            loads(raw)
        except orjson.JSONDecodeError:
            continue
    t_json = time.perf_counter() - t

    t = time.perf_counter()
    events = []
    for raw in lines:
        try:
            events.append(parse_event(loads(raw)))
        except (orjson.JSONDecodeError, InvalidEvent):
            continue
    t_parse = time.perf_counter() - t - t_json

    del lines  # the engine is measured on a heap that holds its input events, as it would in a stream
    gc.collect()
    freeze_survivors()  # the benchmark's own event list is not the engine's heap
    passes: list[float] = []
    for _ in range(args.repeat):  # the best of a few passes, each on a new engine: the machine is shared
        t = time.perf_counter()
        produced = _engine_pass(events, None)
        passes.append(time.perf_counter() - t)
        gc.collect()
    t_engine = min(passes)

    records: list[Any] = []
    _engine_pass(events, records)  # again, keeping the records, for the output timing alone
    t = time.perf_counter()
    for r in records:
        record_to_json(r)
    t_out = time.perf_counter() - t
    del records

    json_side = t_json + t_parse + t_out
    split = {
        "json_decode": round(t_json, 3),
        "validation": round(t_parse, 3),
        "engine": round(t_engine, 3),
        "output_formatting": round(t_out, 3),
        "classify_total": round(t_total, 3),
    }
    result: dict[str, Any] = {
        "events": n,
        "valid_events": counts.applied + counts.duplicates,
        "records": produced,
        "engine_events_per_s": round((counts.applied + counts.duplicates) / t_engine),
        "engine_passes_events_per_s": [round((counts.applied + counts.duplicates) / p) for p in passes],
        "classify_events_per_s": round(n / t_total),
        "split_seconds": split,
        "json_share": round(json_side / (json_side + t_engine), 3),
        "engine_share": round(t_engine / (json_side + t_engine), 3),
        "classify_counts": counts.summary(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{n} events ({result['valid_events']} valid), {produced} records")
    runs = ", ".join(f"{v:,}" for v in result["engine_passes_events_per_s"])
    print(f"engine only:       {result['engine_events_per_s']:>10,} events/s (best of {len(passes)}: {runs})")
    print(f"classify command:  {result['classify_events_per_s']:>10,} events/s end to end")
    for part, seconds in split.items():
        print(f"  {part:<18} {seconds:8.3f} s")
    bound = "JSON (decode, validation, output)" if json_side > t_engine else "the engine"
    print(
        f"classify is bound by {bound}: JSON {result['json_share']:.0%} of the work "
        f"({json_side:.2f} s), engine {result['engine_share']:.0%} ({t_engine:.2f} s)"
    )


if __name__ == "__main__":
    main()
