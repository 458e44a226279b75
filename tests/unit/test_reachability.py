"""The start-up wait: every failed attempt is logged, even when the first probe takes all the time."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from config.errors import DependencyUnreachable
from config.reachability import _retry
from config.settings import Settings


def test_a_probe_that_hangs_for_its_whole_timeout_still_logs_attempts_before_giving_up() -> None:
    """A dependency that never answers and holds every probe to its timeout (a black-holed address):
    the probes get at most half of what is left, so there are several, each logged with the address,
    and the error names the address and the timeout."""
    settings = Settings(startup_timeout_s=1.0)
    timeouts: list[float] = []

    def hanging_probe(timeout_s: float) -> str:
        timeouts.append(timeout_s)
        time.sleep(timeout_s)  # the dependency does not answer within the probe's timeout
        return "timed out"

    with capture_logs() as logs, pytest.raises(DependencyUnreachable) as raised:
        _retry("kafka_brokers", "10.255.255.1:9092", hanging_probe, settings, stop=lambda: False)
    attempts = [x for x in logs if x["event"] == "kafka_brokers_unavailable"]
    assert len(attempts) == len(timeouts) >= 2
    assert all(a["address"] == "10.255.255.1:9092" for a in attempts)
    assert timeouts[0] <= 0.5 + 1e-9
    assert "10.255.255.1:9092" in str(raised.value) and "within 1 s" in str(raised.value)


def test_an_answer_on_a_later_attempt_is_logged_once_as_available() -> None:
    """Two refusals, then an answer: two attempt lines and one `available` line, no error."""
    answers = iter(["connection refused", "connection refused", None])
    with capture_logs() as logs:
        assert _retry("schema_registry", "http://r:8080", lambda _t: next(answers), Settings(), stop=lambda: False)
    assert [x["event"] for x in logs] == [
        "schema_registry_unavailable",
        "schema_registry_unavailable",
        "schema_registry_available",
    ]
