"""Where the exactly-once service spends its time: cProfile of a catching-up run."""

from __future__ import annotations

import pstats
import subprocess
from contextlib import suppress
from io import StringIO
from pathlib import Path

from benchmarks.common import BenchError
from benchmarks.variants import Variants, running
from config.settings import PROJECT_ROOT


def profile_service(variants: Variants, input_topic: str, seconds: float) -> tuple[str, Path]:
    """cProfile of the exactly-once service for `seconds` of catching up on the input."""
    launch, _s = variants.service("profile", input_topic, "exactly_once_v2")
    out = variants.run_dir / "service-eos.prof"
    launch.argv = [str(PROJECT_ROOT / ".venv" / "bin" / "python"), "-m", "cProfile", "-o", str(out), *launch.argv]
    with running(launch) as proc, suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)
    if not out.exists():
        raise BenchError(f"profile not written; see {launch.log}")
    text = StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(25)
    body = text.getvalue()
    return body[body.index("   ncalls") :] if "   ncalls" in body else body, out
