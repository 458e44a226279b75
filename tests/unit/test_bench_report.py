"""The benchmark's own arithmetic: phase quantiles from histogram scrapes, partition ownership from a
service log, and the targets rows built from the new measurements."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.suite import EOS, VariantResult, _owned_partitions, _phase_quantiles, targets

INF = float("inf")


def test_phase_quantiles_count_only_the_batches_between_the_two_scrapes() -> None:
    """Before: 10 fast batches. Between the scrapes: 98 batches ≤ 10 ms and 2 in (0.1, 0.25] s. The
    priming batches must not move the quantiles; p50 and p99 are the upper bounds of their buckets."""
    before = {"commit": [(0.01, 10.0), (0.1, 10.0), (0.25, 10.0), (INF, 10.0)]}
    after = {
        "commit": [(0.01, 108.0), (0.1, 108.0), (0.25, 110.0), (INF, 110.0)],
        "process": [(0.01, 0.0), (0.1, 0.0), (0.25, 0.0), (INF, 1.0)],
    }
    got = _phase_quantiles(before, after)
    assert got["commit"] == (10.0, 250.0)
    assert got["process"] == (None, None), "past the last bound: no figure rather than a wrong one"
    assert "wait" not in got


def test_owned_partitions_follow_restores_and_revokes(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    lines = [
        {"event": "partitions_restored", "partitions": [0, 1, 2, 3]},
        {"event": "batch", "partitions": [9]},
        {"event": "partitions_revoked", "partitions": [1, 3]},
        {"event": "partitions_restored", "partitions": [7]},
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + '\nnot json "partitions_restored"\n')
    assert _owned_partitions(log) == {0, 2, 7}
    assert _owned_partitions(tmp_path / "absent.log") == set()


def test_targets_rows_for_steady_latency_memory_and_repeated_kills() -> None:
    results = {EOS: VariantResult(EOS)}
    rows = {
        name: (value, met)
        for name, value, met, _note in targets(
            results,
            {},
            steady={"p99_ms": 80.0},
            kills={"median_s": 2.5, "max_s": 11.0},
            memory={"bytes_per_account": 1900},
        )
    }
    assert rows["p99 latency ≤ 100 ms at a steady 1,000 events/s"] == ("80.0 ms", True)
    assert rows["memory per account held ≤ 2,048 bytes"] == ("1900 B", True)
    kills = rows["kill → next decision, 3 instances, repeated SIGKILLs: median ≤ 3 s, max ≤ 10 s"]
    assert kills == ("median 2.5 s, max 11.0 s", False), "the max alone misses the target"
    unmeasured = {name: met for name, (_v, met) in rows.items()}
    assert unmeasured["restore ≥ 250,000 records/s"] is None


def test_a_target_not_met_says_by_how_much_and_what_bounds_it() -> None:
    eos = VariantResult(EOS, latency_p99_ms=300.0, latency_breakdown={"commit": (20.0, 150.0), "wait": (30.0, None)})
    notes = {
        name: note
        for name, _v, met, note in targets(
            {EOS: eos}, {"restore_records_per_s": 100_000, "changelog_consume_records_per_s": 120_000}
        )
        if met is False
    }
    assert notes["p99 latency ≤ 150 ms at half the maximum rate"].startswith("2.00x short; ")
    assert "commit 150 ms" in notes["p99 latency ≤ 150 ms at half the maximum rate"]
    assert notes["restore ≥ 250,000 records/s"].startswith("2.50x short; ")
    assert "120000 records/s" in notes["restore ≥ 250,000 records/s"]
