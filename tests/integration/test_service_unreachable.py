"""Unreachable dependencies at start are waited for, not a crash: the service retries with one log line
per attempt naming what is unreachable and where, stays not ready, stops cleanly on SIGTERM, and past
MULTICHANNEL_STARTUP_TIMEOUT_S exits 3 with a one-line error."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from deploy.local.process import free_port
from tests.integration.pipeline import ServiceProcess

SettingsFactory = Callable[..., Settings]


def test_registry_down_at_start_is_retried_with_readiness_false(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """Three attempts are logged naming the registry URL; /readyz answers 503 meanwhile; SIGTERM exits 0."""
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"  # nothing listens there
    settings = settings_factory().model_copy(update={"schema_registry_url": url})
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        base = service.ops_url()
        attempts: list[dict[str, str]] = []
        while len(attempts) < 3:  # each attempt is a log line; the child paces them (2 s apart)
            assert service.alive(), service.log_tail()
            lines = service.log_path.read_text(errors="replace").splitlines()
            attempts = [json.loads(x) for x in lines if '"schema_registry_unavailable"' in x]
            if len(attempts) < 3:
                try:
                    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
                        raise AssertionError(f"ready while the registry is down: {resp.status}")
                except urllib.error.HTTPError as exc:
                    assert exc.code == 503
                time.sleep(0.2)  # pacing the probe of a child process's log
        assert all(a["address"] == url for a in attempts)
        assert service.terminate(30) == 0, service.log_tail()
    finally:
        if service.alive():
            service.kill()
    assert "Traceback" not in service.log_path.read_text()


def test_brokers_that_never_answer_end_the_start_with_one_line_and_exit_3(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """A bootstrap address where nothing listens: a few attempts logged with the address, then one
    `dependency_unreachable` line naming it, exit code 3, no traceback and no raw client log."""
    address = f"127.0.0.1:{free_port()}"
    settings = settings_factory().model_copy(update={"bootstrap_servers": address, "startup_timeout_s": 4.0})
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    assert service.proc is not None
    assert service.proc.wait(60) == 3, service.log_tail()
    text = service.log_path.read_text()
    lines = [json.loads(x) for x in text.splitlines()]
    attempts = [x for x in lines if x["event"] == "kafka_brokers_unavailable"]
    [final] = [x for x in lines if x["event"] == "dependency_unreachable"]
    assert attempts and all(a["address"] == address for a in attempts)
    assert address in final["error"] and "4 s" in final["error"]
    assert len(lines) < 20, text
    assert "Traceback" not in text
