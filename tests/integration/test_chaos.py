"""The fault suite's short version (`make chaos` runs the full one): the same kinds of fault with small counts,
the same audit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.audit import audit
from tests.chaos.harness import SHORT, ChaosRun
from tests.chaos.report import coverage_failures, markdown


@pytest.mark.timeout(420)
def test_short_fault_run_loses_and_doubles_nothing(tmp_path: Path, schema_registry_url: str) -> None:
    """Six instance kills, a broker restart, a zombie, a registry outage and a burst under a steady load with
    bad records and duplicates: every subscription's committed decisions equal the engine's, no repeat, no gap,
    one dead letter per bad record; the zombie's late writes never show."""
    seed = int(os.environ.get("CHAOS_SEED", "20261125"))
    with ChaosRun(SHORT, seed, tmp_path, registry_url=schema_registry_url) as run:
        result = run.run()
        report = audit(result)
    (tmp_path / "reliability.md").write_text(markdown(result, report, None))
    assert report.failures() == []
    assert coverage_failures(result, min_rebalances=3) == []
    assert report.lost == 0 and report.duplicated == 0
    assert report.bad_records > 0 and report.duplicates > 0, "the workload must hold bad records and duplicates"
