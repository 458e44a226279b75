"""librdkafka's own lines reach the JSON log through structlog, never raw on stderr."""

from __future__ import annotations

import logging
import re
import time

import pytest
from confluent_kafka import Producer
from structlog.testing import capture_logs

import config.logs
from config.logs import OUTAGE_LOG_INTERVAL_S, kafka_client_logger
from config.settings import Settings


def test_client_lines_become_structlog_events(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client made from the settings hands its refused connection to structlog with facility, client and thread."""
    monkeypatch.setattr(config.logs, "OUTAGES", config.logs._OutageLimiter())  # no outage seen yet
    producer = Producer({**Settings(bootstrap_servers="127.0.0.1:1").kafka_client_config(), "client.id": "probe"})
    with capture_logs() as logs:
        deadline = time.monotonic() + 10
        while not logs and time.monotonic() < deadline:
            producer.poll(0.2)
    assert logs, "no librdkafka line reached structlog"
    first = logs[0]
    assert first["event"] == "kafka_client"
    assert first["log_level"] == "error"
    assert first["facility"] == "FAIL"
    assert first["client"].startswith("probe#producer-")
    assert first["thread"] and "Connection refused" in first["message"]
    assert not re.search(r"^%\d\|", capfd.readouterr().err, re.M), "a raw librdkafka line on stderr"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _client_line(logger: logging.Logger, facility: str, broker: str, text: str) -> None:
    logger.log(logging.ERROR, "%s [%s] %s", facility, "svc#producer-1", f"[thrd:{broker}/1]: {broker}/1: {text}")


def test_an_outage_logs_its_first_error_then_one_line_per_broker_per_interval_then_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connection errors of a broker that is away: the first is logged at once, then at most one per
    interval carrying the count of those not logged, other brokers apart; other lines are never held back;
    the recovery line gives the rest of the count, so every error is accounted for."""
    clock = Clock()
    monkeypatch.setattr(config.logs, "OUTAGES", config.logs._OutageLimiter(clock))
    logger = kafka_client_logger()
    with capture_logs() as logs:
        for _ in range(5):  # within the first interval: the first one only
            _client_line(logger, "FAIL", "10.0.0.1:9092", "Connect to ipv4#10.0.0.1:9092 failed: Connection refused")
            clock.now += 1.0
        _client_line(logger, "FAIL", "10.0.0.2:9092", "Connect to ipv4#10.0.0.2:9092 failed: Connection refused")
        _client_line(logger, "REQTMOUT", "10.0.0.1:9092", "Timed out 1 in-flight request")
        clock.now += OUTAGE_LOG_INTERVAL_S
        _client_line(logger, "FAIL", "10.0.0.1:9092", "Connect to ipv4#10.0.0.1:9092 failed: Connection refused")
        _client_line(logger, "ERROR", "10.0.0.1:9092", "Connect to ipv4#10.0.0.1:9092 failed: Connection refused")
        clock.now += 0.5
        config.logs.OUTAGES.recovered()
        config.logs.OUTAGES.recovered()  # once per outage
        _client_line(logger, "FAIL", "10.0.0.1:9092", "Connect to ipv4#10.0.0.1:9092 failed: Connection refused")
        _client_line(logger, "FAIL", "10.0.0.1:9092", "Connect to ipv4#10.0.0.1:9092 failed: Connection refused")
        config.logs.OUTAGES.unrecovered()  # a stop during the next outage: its count is not lost
    lines = [(e["event"], e.get("facility"), e.get("suppressed"), e.get("broker")) for e in logs]
    assert lines == [
        ("kafka_client", "FAIL", None, None),
        ("kafka_client", "FAIL", None, None),  # another broker: its own first error
        ("kafka_client", "REQTMOUT", None, None),  # not a connection error: never collapsed
        ("kafka_client", "FAIL", 4, None),  # the four of the first interval it stands for
        ("kafka_broker_recovered", None, 1, "10.0.0.1:9092"),
        ("kafka_broker_recovered", None, 0, "10.0.0.2:9092"),
        ("kafka_client", "FAIL", None, None),  # a new outage: its first error at once
        ("kafka_broker_outage_open", None, 1, "10.0.0.1:9092"),
    ]
    assert [e.get("errors") for e in logs[-4:]] == [7, 1, None, 2]
    assert logs[-4]["seconds"] == pytest.approx(5.0 + OUTAGE_LOG_INTERVAL_S + 0.5)
