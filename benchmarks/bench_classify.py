"""Classify throughput on a generated stream: the pure engine, and the end-to-end command split
into JSON parsing, validation, engine and output formatting (`python -m benchmarks.bench_classify`).

The split is measured twice. Each part alone, in its own loop (`split_seconds`). And as a sampling
profile of the real `multichannel classify` command run on the same stream (`profile_shares`, taken
with py-spy from the `bench` dependency group), which is what says where the command's time goes:
its parts run interleaved, sharing caches, and cost differently than alone.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
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


PROFILE_PHASES = ("json_decode", "validation", "engine", "output_formatting", "input_output", "loop")
"""Where a sample of the command lands: a call under `classify_stream` names its phase; a sample in
`classify_stream`'s own code is placed by its line (decoding, reading, writing, else the loop)."""

_PHASE_OF_CALL = {
    "parse_event": "validation",
    "SchemaMismatch.__init__": "validation",
    "record_to_json": "output_formatting",
    "dead_letter_json": "output_formatting",
}


def _phase_of_own_line() -> dict[str, str]:
    """`classify_stream`'s lines that are phases of their own, by line number: the JSON decoding call,
    reading the input and writing the output."""
    marks = {"orjson.loads(raw)": "json_decode", "in enumerate(lines": "input_output", "out.write(": "input_output"}
    source, first = inspect.getsourcelines(classify_stream)
    return {str(first + i): phase for i, text in enumerate(source) for mark, phase in marks.items() if mark in text}


def split_profile(raw: str) -> Counter[str]:
    """Samples per phase from py-spy's raw (collapsed-stack) output; samples outside `classify_stream`
    (start-up, imports, argument parsing) are left out."""
    own_line = _phase_of_own_line()
    samples: Counter[str] = Counter()
    for row in raw.splitlines():
        stack, _, count = row.rpartition(" ")
        frames = stack.split(";")
        depth = next((i for i, frame in enumerate(frames) if frame.startswith("classify_stream (")), None)
        if depth is None:
            continue
        if depth + 1 == len(frames):
            phase = own_line.get(frames[depth].rsplit(":", 1)[-1].rstrip(")"), "loop")
        else:
            call = frames[depth + 1].split(" (", 1)[0]
            phase = "engine" if call.startswith("Classifier.") else _PHASE_OF_CALL.get(call, "loop")
        samples[phase] += int(count)
    return samples


def profile_command(lines: list[bytes], rate: int) -> tuple[Counter[str], float] | None:
    """Run `multichannel classify` on the stream under py-spy: samples per phase and the command's wall
    time, or None (with the reason on stderr) when py-spy is missing or cannot sample here."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("profile: py-spy not installed (uv sync --group bench); parts measured alone only", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix="bench-classify-") as tmp:
        events, profile = Path(tmp, "events.jsonl"), Path(tmp, "profile.txt")
        with events.open("wb") as f:
            for raw in lines:
                f.write(raw + b"\n")
        command = [str(Path(sys.executable).with_name("multichannel")), "classify", str(events), "-o", os.devnull]
        record = [spy, "record", "--rate", str(rate), "--format", "raw", "--output", str(profile), "--"]
        t = time.perf_counter()
        done = subprocess.run(record + command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t
        if done.returncode != 0 or not profile.exists():
            print(f"profile: py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}", file=sys.stderr)
            return None
        return split_profile(profile.read_text()), elapsed


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


def _bound(json_side: float, engine: float) -> str:
    """Which side bounds the command, when one is clearly larger (by a tenth or more)."""
    if json_side >= 1.1 * engine:
        return "JSON (decode, validation, output)"
    if engine >= 1.1 * json_side:
        return "the engine"
    return "neither alone (JSON and engine within a tenth of each other)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="engine passes; the fastest is reported")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (0: no profile)")
    args = ap.parse_args()
    tune_gc()
    lines = lines_for(args.events, args.seed)
    n = len(lines)

    t = time.perf_counter()
    counts = classify_stream(lines, io.BytesIO())
    t_total = time.perf_counter() - t
    gc.collect()
    profiled = profile_command(lines, args.profile_rate) if args.profile_rate > 0 else None

    t_json, t_parse, events = _json_parts(lines)
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
    if profiled is not None:
        samples, profiled_seconds = profiled
        total = sum(samples.values())
        result["profile_shares"] = {phase: round(samples[phase] / total, 3) for phase in PROFILE_PHASES}
        result["profile_samples"] = total
        result["profiled_command_seconds"] = round(profiled_seconds, 3)
    if args.json:
        print(json.dumps(result))
        return
    _print_table(result, passes, json_side, t_engine)


def _json_parts(lines: list[bytes]) -> tuple[float, float, list[Any]]:
    """JSON decoding alone, then decoding and validation together (keeping only the events: a list of a
    million decoded dicts would fill the heap the engine is measured on): (decode seconds, validation
    seconds, the valid events)."""
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
    return t_json, t_parse, events


def _print_table(result: dict[str, Any], passes: list[float], json_side: float, t_engine: float) -> None:
    """The result as a table: rates, the split of the parts measured alone, and the command's profile."""
    split = result["split_seconds"]
    print(f"{result['events']} events ({result['valid_events']} valid), {result['records']} records")
    runs = ", ".join(f"{v:,}" for v in result["engine_passes_events_per_s"])
    print(f"engine only:       {result['engine_events_per_s']:>10,} events/s (best of {len(passes)}: {runs})")
    print(f"classify command:  {result['classify_events_per_s']:>10,} events/s end to end")
    for part, seconds in split.items():
        print(f"  {part:<18} {seconds:8.3f} s")
    print(
        f"parts alone: JSON (decode, validation, output) {result['json_share']:.0%} ({json_side:.2f} s), "
        f"engine {result['engine_share']:.0%} ({t_engine:.2f} s)"
    )
    if "profile_shares" not in result:
        print(f"classify is bound by {_bound(json_side, t_engine)} (parts measured alone; no profile of the command)")
        return
    shares = result["profile_shares"]
    print(f"profile of `multichannel classify` ({result['profile_samples']:,} samples, py-spy):")
    for phase in PROFILE_PHASES:
        print(f"  {phase:<18} {shares[phase]:8.1%}")
    parsing = shares["json_decode"] + shares["validation"]
    json_total = parsing + shares["output_formatting"]
    print(
        f"classify is bound by {_bound(json_total, shares['engine'])}: JSON {json_total:.0%} of the command "
        f"(parsing {parsing:.0%}, output {shares['output_formatting']:.0%}), engine {shares['engine']:.0%}"
    )


if __name__ == "__main__":
    main()
