"""A real Kafka broker and Schema Registry for integration tests.

Order of choice for each: the environment (`KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`) →
a Docker engine (testcontainers) → the local Maven-fetched JVMs of `deploy/local` (one of each
per test session, started side by side). A failing test prints the local broker's log tail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from config.settings import PROJECT_ROOT, Settings
from consumers.topics import ensure_topics

CACHE_DIR = Path(os.environ.get("MULTICHANNEL_CACHE_DIR", str(PROJECT_ROOT / ".cache")))


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


class _Backends:
    """Starts what the environment does not provide; stops it at the end of the session."""

    def __init__(self) -> None:
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        self.registry = os.environ.get("SCHEMA_REGISTRY_URL", "")
        self._stops: list[Callable[[], None]] = []
        self.log_tails: list[Callable[[], str]] = []

    def start(self) -> None:
        if self.bootstrap and self.registry:
            return
        if docker_available():
            self._start_docker()
            return
        from deploy.local.kafka import LocalKafka
        from deploy.local.registry import LocalRegistry

        jobs: dict[str, Future[Any]] = {}
        with ThreadPoolExecutor(2) as pool:
            if not self.bootstrap:
                jobs["kafka"] = pool.submit(LocalKafka(CACHE_DIR).start)
            if not self.registry:
                jobs["registry"] = pool.submit(LocalRegistry(CACHE_DIR).start)
        for name, job in jobs.items():
            service = job.result()
            self._stops.append(service.stop)
            self.log_tails.append(service.log_tail)
            if name == "kafka":
                self.bootstrap = service.bootstrap_servers
            else:
                self.registry = service.url

    def _start_docker(self) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        from deploy.local.process import free_port

        if not self.bootstrap:
            port = free_port()
            kafka = (
                DockerContainer("apache/kafka:4.3.1")
                .with_bind_ports(9092, port)
                .with_envs(
                    KAFKA_NODE_ID="1",
                    KAFKA_PROCESS_ROLES="broker,controller",
                    KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
                    KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{port}",
                    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
                    KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
                    KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
                    KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
                    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
                    KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
                    KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
                )
                .waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))
            )
            kafka.start()
            self._stops.append(kafka.stop)
            self.bootstrap = f"localhost:{port}"
        if not self.registry:
            rport = free_port()
            registry = (
                DockerContainer("apicurio/apicurio-registry:3.3.3")
                .with_bind_ports(8080, rport)
                .waiting_for(LogMessageWaitStrategy("started in").with_startup_timeout(120))
            )
            registry.start()
            self._stops.append(registry.stop)
            self.registry = f"http://localhost:{rport}/apis/ccompat/v7"

    def stop(self) -> None:
        for stop in reversed(self._stops):
            stop()


_backends: _Backends | None = None


@pytest.fixture(scope="session")
def backends() -> Iterator[_Backends]:
    global _backends  # noqa: PLW0603 - the report hook below needs the session's backends
    b = _Backends()
    b.start()
    _backends = b
    yield b
    b.stop()
    _backends = None


@pytest.fixture(scope="session")
def kafka_bootstrap(backends: _Backends) -> str:
    return backends.bootstrap


@pytest.fixture(scope="session")
def schema_registry_url(backends: _Backends) -> str:
    return backends.registry


@pytest.fixture
def unique_name() -> str:
    """A fresh prefix for topics, groups and subjects, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:12]}"


def make_settings(kafka_bootstrap: str, schema_registry_url: str, prefix: str, **overrides: Any) -> Settings:
    """Settings with topic names under `prefix` on the test broker (topics created), 3 partitions each."""
    values = service_settings_values(kafka_bootstrap, schema_registry_url, f"{prefix}-{uuid.uuid4().hex[:4]}")
    values.update(overrides)
    settings = Settings(**values)
    ensure_topics(settings.kafka_client_config(), settings.topic_specs, 1, settings.topic_configs)
    return settings


def service_settings_values(kafka_bootstrap: str, schema_registry_url: str, p: str) -> dict[str, Any]:
    """The settings of a service under test: topics and application id under `p`, 3 partitions, quick batches."""
    return {
        "bootstrap_servers": kafka_bootstrap,
        "schema_registry_url": schema_registry_url,
        "subscription_topic": f"{p}.subscription-events",
        "partner_topic": f"{p}.partner-events",
        "decision_topic": f"{p}.decisions",
        "status_topic": f"{p}.customer-status",
        "dead_letter_topic": f"{p}.dead-letters",
        "application_id": f"{p}-app",
        "input_partitions": 3,
        "output_partitions": 3,
        "partner_partitions": 2,
        "metrics_port": 0,
        "auto_register_schemas": True,
        "batch_timeout_ms": 50,
        "punctuate_interval_ms": 200,
    }


@pytest.fixture
def settings_factory(kafka_bootstrap: str, schema_registry_url: str, unique_name: str) -> Callable[..., Settings]:
    """Settings with unique topic names on the test broker (topics created), 3 partitions each."""

    def make(**overrides: Any) -> Settings:
        return make_settings(kafka_bootstrap, schema_registry_url, unique_name, **overrides)

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and _backends is not None:
        for log_tail in _backends.log_tails:
            report.sections.append(("local broker/registry log", log_tail()))
    return report
