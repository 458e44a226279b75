"""librdkafka's own lines reach the JSON log through structlog, never raw on stderr."""

from __future__ import annotations

import re
import time

import pytest
from confluent_kafka import Producer
from structlog.testing import capture_logs

from config.settings import Settings


def test_client_lines_become_structlog_events(capfd: pytest.CaptureFixture[str]) -> None:
    """A client made from the settings hands its refused connection to structlog with facility, client and thread."""
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
