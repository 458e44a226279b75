"""The classifier service on a real broker and registry: end to end, crashes, restarts,
rebalances, partner changes, poison pills, readiness and metrics."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from producers.generator import WorkloadGenerator, WorkloadSpec
from tests.integration.pipeline import (
    ServiceProcess,
    by_account,
    by_subscription,
    committed_offsets,
    count_committed,
    expected_outputs,
    input_end_offsets,
    later_terms,
    publish,
    read_outputs,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]


def future_terms(items: list[Any], years: int = 6) -> list[Any]:
    """Move every term end beyond both the stream's clock and the wall clock, so that the service
    (wall-clock timers) and `classify` (event-time timers) see the same terms."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and item.get("term_end"):
            moved = dict(item)
            moved["term_end"] = (date.fromisoformat(item["term_end"]) + timedelta(days=365 * years)).isoformat()
            out.append(moved)
        else:
            out.append(item)
    return out


def workload(seed: int, customers: int, bad_rate: float = 0.0) -> list[Any]:
    spec = WorkloadSpec(seed=seed, partners=40, customers=customers, bad_rate=bad_rate, duplicate_rate=0.02)
    return future_terms(list(WorkloadGenerator(spec).events()))


def realistic_workload(seed: int) -> list[Any]:
    """The realistic shape scaled down: heavy-tailed account sizes with one account of 3,000 subscriptions,
    license terms from the 1st of a month to the 1st of a later one (many ending at the same midnight), late
    partner program changes, duplicates."""
    spec = WorkloadSpec(
        seed=seed,
        partners=40,
        customers=250,
        shape="realistic",
        max_subscriptions=200,
        giant_accounts=(3_000,),
        bad_rate=0.0,
        duplicate_rate=0.02,
        partner_change_rate=0.2,
        late_partner_rate=0.5,
    )
    return later_terms(WorkloadGenerator(spec).events())


def split_partner_first(items: list[Any]) -> tuple[list[Any], list[Any]]:
    partners = [i for i in items if isinstance(i, dict) and i["event_type"] == "partner_program_changed"]
    rest = [i for i in items if not (isinstance(i, dict) and i["event_type"] == "partner_program_changed")]
    return partners, rest


def assert_same_as_classify(settings: Settings, items: list[Any]) -> None:
    decisions, statuses, _dlq = read_outputs(settings)
    want_d, want_s = expected_outputs(items)
    assert len(want_d) > 100 and len(want_s) > 50, "the workload must produce real decisions"
    got, want = by_subscription(decisions), by_subscription(want_d)
    assert set(got) == set(want)
    mismatched = [k for k in want if got[k] != want[k]]
    assert not mismatched, (
        f"{len(mismatched)} subscriptions differ, e.g. {mismatched[0]}: {got[mismatched[0]]} != {want[mismatched[0]]}"
    )
    assert by_account(statuses) == by_account(want_s)
    assert len(decisions) == len(want_d)


@pytest.mark.parametrize(
    ("guarantee", "static_membership"), [("exactly_once_v2", False), ("at_least_once", True)], ids=["eos", "alos"]
)
def test_end_to_end_matches_classify(
    settings_factory: SettingsFactory, tmp_path: Path, guarantee: str, static_membership: bool
) -> None:
    """Both processing guarantees (and static group membership) give the offline command's output."""
    settings = settings_factory(processing_guarantee=guarantee, static_membership=static_membership)
    items = workload(seed=7, customers=300, bad_rate=0.0)
    partners, rest = split_partner_first(items)
    publish(settings, partners)
    svc = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        svc.wait_ready()
        publish(settings, rest)
        wait_until_processed(settings, 120, [svc])
        assert svc.terminate() == 0
    finally:
        if svc.alive():
            svc.kill()
    assert_same_as_classify(settings, partners + rest)


@pytest.mark.parametrize("shape", ["uniform", "realistic"])
def test_sigkill_at_random_points_loses_and_doubles_nothing(
    settings_factory: SettingsFactory, tmp_path: Path, shape: str
) -> None:
    """Ten SIGKILLs and three clean SIGTERMs at seeded points of the processing (by committed
    decisions), a restart after each: the committed output equals the uninterrupted engine's,
    record for record, for small accounts and for the realistic shape (a big account, month-boundary
    terms, late partner changes)."""
    settings = settings_factory(batch_size=40)
    items = workload(seed=11, customers=700) if shape == "uniform" else realistic_workload(seed=11)
    partners, rest = split_partner_first(items)
    want_decisions, _ = expected_outputs(partners + rest)
    publish(settings, partners)
    publish(settings, rest)
    rng = random.Random(1234)
    thresholds = sorted(rng.sample(range(len(want_decisions) // 20, len(want_decisions) * 9 // 10), 13))
    terms = set(rng.sample(range(len(thresholds)), 3))
    kills = 0
    for run, threshold in enumerate(thresholds):
        svc = ServiceProcess(settings, tmp_path / f"service-{run}.log").start()
        if run in terms:  # a clean SIGTERM mid-stream: finish the batch, commit, exit 0
            svc.wait_ready()
            _wait_for_decisions(settings, threshold, svc)
            assert svc.terminate() == 0, svc.log_tail()
            continue
        if _wait_for_decisions(settings, threshold, svc):
            kills += 1
        svc.kill()
    svc = ServiceProcess(settings, tmp_path / "service-final.log").start()
    try:
        svc.wait_ready()
        wait_until_processed(settings, 180, [svc])
        assert svc.terminate() == 0, svc.log_tail()
    finally:
        if svc.alive():
            svc.kill()
    assert kills >= 8, f"only {kills} of 10 kills landed while processing"
    assert_same_as_classify(settings, partners + rest)


def _wait_for_decisions(settings: Settings, count: int, svc: ServiceProcess) -> bool:
    """Block until `count` decisions are committed (True) or the input is all processed (False)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if count_committed(settings, settings.decision_topic) >= count:
            return True
        ends = input_end_offsets(settings)
        done = committed_offsets(settings, list(ends))
        if all(done.get(p, -1) >= e for p, e in ends.items() if e > 0):
            return False
        assert svc.alive(), svc.log_tail()
    raise AssertionError(f"no progress to {count} decisions:\n{svc.log_tail()}")
