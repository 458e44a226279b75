"""CSP data shapes against the running service: big accounts, a month-end storm, the realistic workload.

Three measurements of `multichannel bench`, each through the service's public behaviour (its topics, its
log lines and metrics, its process), never through the changelog's encoding, which may change:

- changelog bytes per input event: accounts of several sizes are built through the exactly-once service,
  then a fixed number of further events (new purchases, renewals, cancellations) is sent to each, one
  transaction apiece, and the key and value bytes the changelog gained meanwhile (read_committed) are
  divided by the events;
- one account of `giant` subscriptions: the time to process it, then a SIGKILL and a restart at once:
  the restore (records, seconds) and the time to the account's next decision, checked against the pure
  engine's decision for the same history;
- a month-end storm: `storm_terms` license terms ending at 00:00 UTC today, in state evaluated before that
  instant (built offline with the store, written to the changelog before the service starts; no input):
  the service restores them and every deadline is due at once. From its readiness to the last TERM_ENDED
  decision a read_committed reader sees, the count, and the largest transaction.

This module runs them: the first two are in `benchmarks.big_accounts`, the storm in `benchmarks.storm`, their
events in `benchmarks.shape_events`, their observers in `benchmarks.shape_probes`, and their targets rows and
Markdown in `benchmarks.shape_report`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from benchmarks.big_accounts import measure_big_accounts
from benchmarks.common import ShapeOptions
from benchmarks.shape_report import render_sections, shape_targets
from benchmarks.storm import measure_storm
from benchmarks.variants import Variants, drop_topics
from config.settings import Settings


def run_shapes(
    variants: Variants, settings: Settings, tag: str, opts: ShapeOptions, *, accounts: bool = True
) -> dict[str, Any]:
    """Both measurements of the service on CSP data shapes (`accounts=False`: the storm alone); each
    section's seconds in `seconds`."""
    out: dict[str, Any] = {"options": {**opts.__dict__, "sizes": list(opts.sizes)}, "seconds": {}}
    started = time.monotonic()
    if accounts:
        out["accounts"] = measure_big_accounts(variants, settings, tag, opts)
        out["seconds"]["accounts"] = round(time.monotonic() - started)
        _drop(settings, f"{tag}-accounts")
    started = time.monotonic()
    out["storm"] = measure_storm(variants, settings, tag, opts)
    out["seconds"]["storm"] = round(time.monotonic() - started)
    _drop(settings, f"{tag}-storm")
    return out


def _drop(settings: Settings, label: str) -> None:
    """A finished section's topics, its own input and partner topics too: later sections should not share
    the broker with them."""
    drop_topics(settings, label, f"bench-{label}-input", f"bench-{label}-partners")


def main() -> None:
    """`python -m benchmarks.shapes [--quick]`: the CSP data shape sections alone, on the local stack
    (started when no broker is configured); prints their Markdown and writes it with the JSON under --out."""
    import argparse
    from contextlib import ExitStack
    from dataclasses import replace

    from benchmarks.common import QUICK_SHAPES, BenchOptions, slug
    from config.endpoints import resolve
    from config.settings import PROJECT_ROOT
    from deploy.local.stack import local_stack

    parser = argparse.ArgumentParser(prog="python -m benchmarks.shapes", description=main.__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a trial of a minute or two")
    parser.add_argument("--out", type=str, default=str(PROJECT_ROOT / ".cache" / "bench" / "shapes"))
    parser.add_argument("--sizes", type=str, help="account sizes, comma-separated (e.g. 10,1000)")
    parser.add_argument("--giant", type=int, help="subscriptions of the account that is SIGKILLed and restored")
    parser.add_argument("--further-events", type=int, help="events sent to each account once it is built")
    parser.add_argument("--storm-terms", type=int, help="term ends of the month-end storm")
    parser.add_argument("--storm-accounts", type=int, help="accounts the storm's terms are spread over")
    parser.add_argument("--no-accounts", action="store_true", help="only the storm")
    args = parser.parse_args()
    shape_opts = QUICK_SHAPES if args.quick else ShapeOptions()
    given = {
        "sizes": tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None,
        "giant": args.giant,
        "further_events": args.further_events,
        "storm_terms": args.storm_terms,
        "storm_accounts": args.storm_accounts,
    }
    shape_opts = replace(shape_opts, **{k: v for k, v in given.items() if v is not None})
    base = Settings(auto_register_schemas=True)
    opts = BenchOptions(shapes=shape_opts)
    with ExitStack() as stack:
        if not base.bootstrap_servers:
            stack.enter_context(local_stack(base.cache_dir, base.local_state_dir))
        s = resolve(base).model_copy(update={"input_partitions": opts.partitions, "output_partitions": opts.partitions})
        variants = Variants(s, replace(opts, work_dir=opts.work_dir), None)
        result = run_shapes(variants, s, slug(uuid.uuid4().hex[:6]), shape_opts, accounts=not args.no_accounts)
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shapes.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows = shape_targets(result)
    text = "\n".join(
        [
            *render_sections(result),
            "",
            "| target | measured | met | short by, and what bounds it |",
            "|---|---:|:---:|---|",
            *[
                f"| {n} | {v} | {'n/a' if m is None else ('yes' if m else '**no**')} | {note} |"
                for n, v, m, note in rows
            ],
        ]
    )
    (out / "shapes.md").write_text(text + "\n")
    print(text)
    print(f"seconds per section: {result['seconds']}")


if __name__ == "__main__":
    main()
