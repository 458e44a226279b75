"""How each variant is started: its command line, its topics, its process, and the peer's virtualenv."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from benchmarks.common import BenchOptions
from config.settings import PROJECT_ROOT, Settings
from consumers.topics import ensure_topics


@dataclass
class Launch:
    """How to start one run of a variant; `group` is the group whose commits measure progress."""

    argv: list[str]
    env: dict[str, str]
    group: str
    decision_topic: str
    log: Path


class Variants:
    """Builds the command line of each variant for a given input topic and run label."""

    def __init__(self, settings: Settings, opts: BenchOptions, peer_python: Path | None) -> None:
        self.settings = settings
        self.opts = opts
        self.peer_python = peer_python
        self.run_dir = opts.work_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _topics(self, label: str) -> Settings:
        s = self.settings.model_copy(
            update={
                "application_id": f"bench-{label}",
                "decision_topic": f"bench-{label}-decisions",
                "status_topic": f"bench-{label}-status",
                "dead_letter_topic": f"bench-{label}-dead-letters",
                "input_partitions": self.opts.partitions,
                "output_partitions": self.opts.partitions,
            }
        )
        ensure_topics(s.kafka_client_config(), s.topic_specs, 1, s.topic_configs)
        return s

    def service(self, label: str, input_topic: str, guarantee: str, **extra: Any) -> tuple[Launch, Settings]:
        s = self._topics(label).model_copy(
            update={
                "subscription_topic": input_topic,
                "processing_guarantee": guarantee,
                "auto_register_schemas": True,
                "metrics_port": 0,
                "log_level": "INFO",
                **extra,
            }
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")}
        env.update(s.to_env())
        argv = [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "run"]
        return Launch(argv, env, s.application_id, s.decision_topic, self.run_dir / f"{label}.log"), s

    def passthrough(self, label: str, input_topic: str) -> Launch:
        s = self._topics(label)
        argv = [
            sys.executable,
            "-m",
            "benchmarks.passthrough",
            s.bootstrap_servers,
            input_topic,
            s.decision_topic,
            s.application_id,
        ]
        return Launch(argv, dict(os.environ), s.application_id, s.decision_topic, self.run_dir / f"{label}.log")

    def peer(self, label: str, input_topic: str) -> Launch:
        assert self.peer_python is not None
        s = self._topics(label)
        conf = {
            "bootstrap_servers": s.bootstrap_servers,
            "schema_registry_url": s.schema_registry_url,
            "group": s.application_id,
            "input_topic": input_topic,
            "partner_topic": s.partner_topic,
            "decision_topic": s.decision_topic,
            "status_topic": s.status_topic,
            "state_dir": str(self.run_dir / f"{label}-state"),
        }
        path = self.run_dir / f"{label}.json"
        path.write_text(json.dumps(conf))
        argv = [str(self.peer_python), str(Path(__file__).with_name("peer_quix.py")), str(path)]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        return Launch(argv, env, s.application_id, s.decision_topic, self.run_dir / f"{label}.log")


def drop_topics(settings: Settings, label: str, *extra: str) -> None:
    """Delete a finished run's topics (its outputs, changelog and partner table, and `extra`): the later runs
    should not share the broker with the logs, compaction and partitions of every earlier one."""
    names = [
        f"bench-{label}-{suffix}"
        for suffix in ("decisions", "status", "dead-letters", "state-changelog", "partner-table")
    ]
    admin = AdminClient(settings.kafka_client_config())
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in [*names, *extra] if t in existing]
    for future in admin.delete_topics(doomed, operation_timeout=30).values() if doomed else ():
        with suppress(KafkaException):
            future.result()


@contextmanager
def running(launch: Launch) -> Iterator[subprocess.Popen[bytes]]:
    """The variant's process, stopped with SIGTERM (then SIGKILL) however the block ends."""
    with launch.log.open("wb") as log:
        proc = subprocess.Popen(launch.argv, env=launch.env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


QUIX_REQUIREMENT = "quixstreams==3.28.*"


def peer_python(opts: BenchOptions, uv: Path) -> Path:
    """A virtual environment of its own for Quix Streams (its pins clash with the product's)."""
    venv = opts.work_dir / "quix-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists() or marker.read_text() != QUIX_REQUIREMENT:
        subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        subprocess.run([str(uv), "pip", "install", "--quiet", QUIX_REQUIREMENT], check=True, env=env)
        marker.write_text(QUIX_REQUIREMENT)
    return python
