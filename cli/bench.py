"""`multichannel bench`: the side-by-side benchmark (not part of the pass/fail suite)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from config.settings import PROJECT_ROOT, Settings

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Attach `bench` to the main app."""

    @app.command("bench")
    def bench_command(
        events: Annotated[int, typer.Option(help="Account events in the workload.")] = 1_000_000,
        accounts: Annotated[int, typer.Option(help="Accounts the events are spread over.")] = 100_000,
        partitions: Annotated[int, typer.Option(help="Partitions of the input topic.")] = 12,
        runs: Annotated[int, typer.Option(help="Throughput runs per variant (the median is reported).")] = 3,
        latency_seconds: Annotated[float, typer.Option(help="Length of each paced latency run.")] = 20.0,
        profile_seconds: Annotated[float, typer.Option(help="Length of the profiled service run.")] = 30.0,
        peer: Annotated[bool, typer.Option(help="Include the Quix Streams peer (own virtualenv).")] = True,
        scale: Annotated[
            bool,
            typer.Option(
                help="Instead of the comparison: the exactly-once service once over the workload, then its "
                "restore (all partitions and one alone); writes docs/benchmarks-scale.md."
            ),
        ] = False,
        docs_dir: Annotated[Path, typer.Option(help="Where benchmarks.md/.json/.png are written.")] = PROJECT_ROOT
        / "docs",
        shapes: Annotated[
            str,
            typer.Option(
                help="The CSP data shape sections and the realistic-workload row: `full` (accounts of 10 to "
                "50,000 subscriptions, a 200,000-term storm), `quick` (small sizes, for a trial) or `none`."
            ),
        ] = "full",
    ) -> None:
        """Raw passthrough, the service at-least-once and exactly-once, a Quix Streams peer, and recovery,
        on one local broker; writes docs/benchmarks.md, .json and .png."""
        from benchmarks.common import QUICK_SHAPES, BenchError, BenchOptions, ShapeOptions
        from benchmarks.suite import run_bench
        from config.endpoints import resolve
        from consumers.runtime import tune_gc
        from deploy.local.stack import local_stack

        uv = PROJECT_ROOT / ".cache" / "uv" / "bin" / "uv"
        if peer and not scale and not uv.exists():
            console.print(f"[red]{uv} is missing: run `make install` first (the peer's virtualenv needs uv)[/red]")
            raise typer.Exit(2)
        shape_options = {"full": ShapeOptions(), "quick": QUICK_SHAPES, "none": None}
        if shapes not in shape_options:
            console.print(f"[red]--shapes must be full, quick or none, not {shapes!r}[/red]")
            raise typer.Exit(2)
        tune_gc()
        base = Settings(auto_register_schemas=True)
        opts = BenchOptions(
            events=events,
            accounts=accounts,
            partitions=partitions,
            runs=runs,
            latency_seconds=latency_seconds,
            profile_seconds=profile_seconds,
            peer=peer,
            docs_dir=docs_dir,
            shapes=shape_options[shapes],
        )
        with ExitStack() as stack:
            if not base.bootstrap_servers:
                with console.status("starting local Kafka 4.3.1 and Apicurio Registry…"):
                    stack.enter_context(local_stack(base.cache_dir, base.local_state_dir))
            settings = resolve(base)
            try:
                if scale:
                    from benchmarks.scale import run_scale

                    report = run_scale(settings, opts)
                    console.print((docs_dir / "benchmarks-scale.md").read_text())
                    return
                report = run_bench(settings, opts, uv)
            except BenchError as exc:
                console.print(f"[red]benchmark failed: {exc}[/red]")
                raise typer.Exit(1) from exc
        console.print((docs_dir / "benchmarks.md").read_text())
        console.print(f"done in {report['wall_seconds']} s; wrote {docs_dir}/benchmarks.md, .json and .png")
