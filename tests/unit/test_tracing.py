"""Tracing off costs nothing: no tracing object, no OpenTelemetry module loaded."""

from __future__ import annotations

import subprocess
import sys


def test_tracing_off_builds_nothing_and_imports_no_sdk() -> None:
    """With no OTEL_TRACES_EXPORTER the service holds no tracing, and importing and configuring it loads no
    OpenTelemetry module (a fresh interpreter, so this process's imports do not count)."""
    code = (
        "import sys; from config.settings import Settings; from consumers.service import ClassifierService; "
        "from consumers.tracing import Tracing; assert Tracing.from_settings(Settings()) is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {"PATH": "/usr/bin:/bin", "OTEL_SERVICE_NAME": "x"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]", done.stdout
