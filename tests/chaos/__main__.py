"""`make chaos`: the full fault run in exactly-once mode, a shorter one in at-least-once mode, the audit of
both, and `docs/reliability.md`. Exit 1 when a guarantee is broken (the report is written either way)."""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from config.logs import configure_logging
from producers.generator import SHAPES
from tests.chaos.audit import AuditReport, audit
from tests.chaos.harness import AT_LEAST_ONCE, FULL, SHORT, ChaosPlan, ChaosResult, ChaosRun
from tests.chaos.report import coverage_failures, markdown, summary
from tests.chaos.soak import read_section, write_section

ROOT = Path(__file__).resolve().parents[2]


def run_plan(plan: ChaosPlan, seed: int, work: Path) -> tuple[ChaosResult, AuditReport]:
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{plan.name} {time.monotonic() - started:6.0f} s] {message}", flush=True)

    with ChaosRun(plan, seed, work / plan.name) as run:
        result = run.run(progress)
        report = audit(result)
    progress(f"audited: {summary(result, report)}")
    return result, report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or random.randrange(1, 10**6)))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--no-at-least-once", action="store_true", help="skip the at-least-once run")
    parser.add_argument("--short", action="store_true", help="the short plan of `make test` (a quick look)")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        help="the workload of every run (default: realistic for exactly-once, uniform for at-least-once)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mc-chaos-"))
    configure_logging("INFO", file=work / "chaos.log")  # the fault log and the clients' lines; stdout has progress
    print(f"seed {args.seed}; logs under {work}", flush=True)
    plans = [SHORT if args.short else FULL, AT_LEAST_ONCE]
    if args.shape is not None:
        plans = [replace(plan, shape=args.shape) for plan in plans]
    result, report = run_plan(plans[0], args.seed, work)
    alos = None if args.no_at_least_once else run_plan(plans[1], args.seed, work)
    soak = read_section(args.out)
    args.out.write_text(markdown(result, report, alos))
    if soak is not None:
        write_section(args.out, soak)
    print(f"wrote {args.out}", flush=True)
    failures = report.failures() + coverage_failures(result, min_rebalances=3 if args.short else 10)
    if alos is not None:
        failures += alos[1].failures()
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
