"""The benchmark's own arithmetic: phase quantiles from histogram scrapes, partition ownership from a
service log, and the targets rows built from the new measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import EOS, VariantResult
from benchmarks.kills import _owned_partitions
from benchmarks.latency import _phase_quantiles
from benchmarks.report import render_markdown, targets
from benchmarks.shape_events import murmur2_partition
from benchmarks.shape_report import shape_targets
from benchmarks.storm import transactions_from_scrapes

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
    """The partitions a service owns follow its restored and revoked log lines; a missing log owns none."""
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
    """Target rows report steady latency, memory per account and repeated kills, a missed max failing its row."""
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
    """A missed target's note says how far short it is and which phase or rate bounds it."""
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


SHAPES: dict[str, Any] = {
    "accounts": {
        "sizes": [
            {"size": 10, "subscriptions": 10, "events": 200, "changelog_records": 200, "changelog_bytes": 600_000,
             "bytes_per_event": 3000, "seconds": 4.0},
            {"size": 1000, "subscriptions": 1000, "events": 200, "changelog_records": 200,
             "changelog_bytes": 30_000_000, "bytes_per_event": 150_000, "seconds": 5.0},
            {"size": 50_000, "events_built": 56_000,
             "error": "the service aborts its transactions: MSG_SIZE_TOO_LARGE"},
        ],
        "giant": {"subscriptions": 50_000},
        "error": "50,000 subscriptions: the service aborts its transactions: MSG_SIZE_TOO_LARGE",
    },
    "storm": {
        "terms": 200_000, "accounts": 20_000, "state_records_written": 20_000, "state_build_s": 9.5,
        "deadline": "2026-12-02T00:00:00Z", "term_ended": 200_000, "term_ended_records": 200_000,
        "timed_out": False, "restore_records": 20_000, "restore_s": 1.2, "start_to_ready_s": 3.0,
        "ready_to_first_s": 9.0, "ready_to_last_s": 12.5, "transactions": 1, "records_written": 240_100,
        "largest_transaction_records": 240_100, "largest_transaction_upper_bound": None,
        "largest_partition_run": 20_000, "largest_transaction_metric": None, "aborts": 0.0,
    },
}  # fmt: skip


def test_shape_rows_say_what_was_not_processed_and_what_bounds_the_rest() -> None:
    """A size the service could not process fails the bytes target with its error; the giant account's row
    says why it was not measured; the storm's count holds, and its one transaction misses the size target."""
    rows = {name: (value, met, note) for name, value, met, note in shape_targets(SHAPES)}
    value, met, note = rows["changelog bytes per input event ≤ 2,048 at every account size (flat)"]
    assert value == "10: 3,000 B; 1,000: 150,000 B; 50,000: not processed"
    assert met is False
    assert note.startswith("73.24x short; bound: bytes per event grow with the account")
    assert "MSG_SIZE_TOO_LARGE" in note
    value, met, note = rows["50,000-subscription account: SIGKILL → its next decision ≤ 3 s, decided right"]
    assert (value, met) == ("n/a", False)
    assert "MSG_SIZE_TOO_LARGE" in note
    assert rows["month-end storm: 200,000 term ends, each decided TERM_ENDED once"][:2] == ("200,000", True)
    assert rows["month-end storm: readiness → last TERM_ENDED visible ≤ 30 s"][:2] == ("12.5 s", True)
    value, met, note = rows["month-end storm: largest transaction ≤ 20,000 records"]
    assert (value, met) == ("240,100 records", False)
    assert note.startswith("12.01x short; bound: every due deadline fires in one batch")


def test_a_storm_with_terms_missing_or_decided_twice_fails_its_count() -> None:
    """A storm with term ends missing or decided twice fails its count target, with a note saying how many."""
    storm = {**SHAPES["storm"], "term_ended": 199_000, "term_ended_records": 199_500, "timed_out": True, "aborts": 7.0}
    rows = {name: (met, note) for name, _v, met, note in shape_targets({"storm": storm})}
    met, note = rows["month-end storm: 200,000 term ends, each decided TERM_ENDED once"]
    assert met is False
    assert note == "1,000 missing, 500 decided twice when the wait ended; 7 aborted transactions"
    assert rows["month-end storm: readiness → last TERM_ENDED visible ≤ 30 s"][0] is False


def test_shape_sections_are_rendered_into_the_report_and_its_targets() -> None:
    """Each workload shape gets its one section and table rows in the rendered report."""
    giant = {
        "subscriptions": 50_000, "events": 56_000, "process_s": 30.5, "restore_records": 56_001,
        "restore_s": 0.9, "restart_to_next_decision_s": 2.4, "decided_right": True,
        "next_decision": ["CSP_SWITCH_PERMITTED", "SUBSCRIPTION_CANCELLED", "R5"],
        "expected_decision": ["CSP_SWITCH_PERMITTED", "SUBSCRIPTION_CANCELLED", "R5"],
    }  # fmt: skip
    sizes = SHAPES["accounts"]["sizes"][:2]
    shapes = {"accounts": {"sizes": sizes, "giant": giant}, "storm": SHAPES["storm"]}
    report = {
        "date": "2026-12-02", "cores": 2, "kafka": "4.3.1", "python": "3.11.7", "events": 1000, "accounts": 100,
        "partitions": 12, "partner_events": 5, "runs": 1, "variants": {}, "recovery": {}, "peer_check": "not run",
        "profile_seconds": 1, "profile": "", "shapes": shapes, "realistic_workload": {"events": 900, "accounts": 80,
        "partner_events": 7},
        "targets": targets({}, {}, shapes=shapes),
    }  # fmt: skip
    text = render_markdown(report, None)
    for heading in (
        "## Changelog bytes per input event",
        "## One account of 50,000 subscriptions",
        "## Month-end storm",
    ):
        assert text.count(heading) == 1
    assert "| 1,000 | 200 | 200 | 30,000,000 | 150,000 | 5.0 |" in text
    assert "| restart → next decision for the account (s) | 2.4 |" in text
    assert "| decided as the engine decides it | yes |" in text
    assert "| largest transaction (records) | 240,100 |" in text
    assert (
        "| 50,000-subscription account: SIGKILL → its next decision ≤ 3 s, decided right | 2.4 s, right | yes |  |"
        in text
    )
    assert "900 account events over 80 accounts" in text
    assert text.index("## Month-end storm") < text.index("## Targets")


def test_the_largest_transaction_is_exact_only_between_reads_with_one_commit() -> None:
    """Counters (transactions, records) read five times: one commit of 100 records, none, two commits of 70
    together, one of 30. Exact sizes 100 and 30; the pair only bounds its larger one by 70."""
    scrapes = [(0.0, 0.0), (1.0, 100.0), (1.0, 100.0), (3.0, 170.0), (4.0, 200.0)]
    assert transactions_from_scrapes(scrapes) == ([100, 30], 70)
    assert transactions_from_scrapes([]) == ([], None)


def test_storm_accounts_go_to_the_partition_of_their_customers_input() -> None:
    """Kafka's murmur2 (the `murmur2_random` partitioner of the service and the publisher): the hashes of
    librdkafka's own test of it, which are the Java client's, over aligned and unaligned tails."""
    unaligned, short = b"PreAmbleWillBeRemoved,ThePrePartThatIs", b"1234"
    expected = [
        (b"kafka", 0xD067CF64),
        (b"giberish123456789", 0x8F552B0C),
        (short, 0x9FC97B14),
        (short[1:], 0xE7C009CA),
        (short[2:], 0x873930DA),
        (short[3:], 0x5A4B5CA1),
        (unaligned, 0x78424F1C),
        (unaligned[1:], 0x4A62B377),
        (unaligned[2:], 0xE0E4E09E),
        (unaligned[3:], 0x62B8B43F),
        (b"", 0x106E08D9),
    ]
    for key, hashed in expected:
        assert murmur2_partition(key, 1 << 31) == hashed & 0x7FFFFFFF, key
    assert murmur2_partition(b"kafka", 12) == (0xD067CF64 & 0x7FFFFFFF) % 12


def test_a_slow_restart_of_the_big_account_names_its_longest_phases() -> None:
    """A slow restart of the big account fails its target with a note naming the longest phases."""
    giant = {
        "subscriptions": 50_000, "restart_to_next_decision_s": 4.5, "decided_right": True, "restore_records": 26,
        "restore_s": 0.3,
        "breakdown": {"process start and imports": 2.1, "init_transactions": 0.4, "restore": 0.3, "group join": None},
    }  # fmt: skip
    rows = {name: (met, note) for name, _v, met, note in shape_targets({"accounts": {"sizes": [], "giant": giant}})}
    met, note = rows["50,000-subscription account: SIGKILL → its next decision ≤ 3 s, decided right"]
    assert met is False
    assert note == (
        "1.50x short; bound: the restart's longest phases: process start and imports 2.1 s, init_transactions 0.4 s "
        "(the restore read 26 records in 0.3 s)"
    )
