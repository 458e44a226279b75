"""A single-node KRaft Kafka (broker + controller) from Maven jars, on loopback.

Static quorum (no `--standalone` needed), replication factor 1 for the internal topics so that
groups and transactions work on one node, storage formatted in a fresh data directory per start.
With a `BrokerSecurity` the client listener is SASL_SSL (SCRAM-SHA-512 over TLS) and ACLs are enforced
by the StandardAuthorizer; the controller listener stays on loopback and authenticates with SASL PLAIN
(KRaft controllers cannot use SCRAM), so no listener is left unauthenticated.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from config.logs import kafka_client_logger
from deploy.local.artifacts import kafka_libs
from deploy.local.process import free_port, java_binary, stop_process, tail

_LOG4J2 = """Configuration:
  Appenders:
    File: {name: FILE, fileName: "${sys:kafka.logs.dir}/server.log", PatternLayout: {pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {level: INFO, AppenderRef: [{ref: FILE}]}
    Logger: [{name: kafka.request.logger, level: WARN}, {name: org.apache.kafka.clients, level: WARN}]
"""

_TOOLS_LOG4J2 = """Configuration:
  Appenders:
    Console: {name: STDERR, target: SYSTEM_ERR, PatternLayout: {pattern: "%p %m%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: STDERR}]}
"""


def cluster_id() -> str:
    """Kafka's Uuid text form (URL-safe base64, no padding), never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class BrokerSecurity:
    """A secured client listener: SASL_SSL with SCRAM-SHA-512, and ACLs enforced.

    `keystore` is a PEM file with the broker's unencrypted PKCS#8 key and certificate chain (its
    certificate names `localhost` and 127.0.0.1), `truststore` the PEM of the CA that signed it. The
    admin user is the super user and the broker's own inter-broker identity; it and `users` get their
    SCRAM credentials when the storage is formatted, so they exist before the broker answers. Passwords
    must not contain a comma or a double quote (the format tool and the JAAS line cannot hold them).
    """

    keystore: Path
    truststore: Path
    admin_username: str
    admin_password: str
    users: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, password in {self.admin_username: self.admin_password, **self.users}.items():
            if any(c in name + password for c in ',"=[]'):
                raise ValueError(f'SCRAM user {name!r}: names and passwords cannot hold , " = [ or ]')

    def server_properties(self, port: int, controller_port: int) -> dict[str, str]:
        admin, password = self.admin_username, self.admin_password
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            # the certificate's names: clients verify the host they connect to against them
            "advertised.listeners": f"SASL_SSL://localhost:{port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{admin}" password="{password}";'
            ),
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{admin}" password="{password}" user_{admin}="{password}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",  # the broker connects to itself (transaction markers)
            "ssl.truststore.location": str(self.truststore),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{admin}",
        }

    def scram_arguments(self) -> list[str]:
        """`--add-scram` options of the storage format tool, one per user."""
        args: list[str] = []
        for name, password in {self.admin_username: self.admin_password, **self.users}.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return args

    def client_config(self, username: str, password: str) -> dict[str, Any]:
        """librdkafka settings of a client that logs in as `username`."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": username,
            "sasl.password": password,
            "ssl.ca.location": str(self.truststore),
        }


class LocalKafka:
    """Start, wait for, and stop one local broker; `log_tail()` for failing tests."""

    def __init__(
        self,
        cache_dir: Path,
        work_dir: Path | None = None,
        heap: str = "512m",
        security: BrokerSecurity | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="mc-kafka-"))
        self.heap = heap
        self.security = security
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        # a secured listener is reached by the name in its certificate
        return f"{'localhost' if self.security else '127.0.0.1'}:{self.port}"

    def admin_client_config(self) -> dict[str, Any]:
        """librdkafka settings of a client with every right on this broker (the super user when secured)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "broker.address.family": "v4"}
        if self.security is not None:
            conf.update(self.security.client_config(self.security.admin_username, self.security.admin_password))
        return conf

    @property
    def log_file(self) -> Path:
        return self.work_dir / "logs" / "server.log"

    def _write_config(self) -> Path:
        self.port, self.controller_port = free_port(), free_port()
        data = self.work_dir / "data"
        shutil.rmtree(data, ignore_errors=True)
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": "1000",
        }
        if self.security is not None:
            props.update(self.security.server_properties(self.port, self.controller_port))
        config = self.work_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.work_dir / "log4j2.yaml").write_text(_LOG4J2)
        (self.work_dir / "tools-log4j2.yaml").write_text(_TOOLS_LOG4J2)
        return config

    def start(self, timeout_s: float = 90.0, *, keep_data: bool = False) -> LocalKafka:
        """Fetch jars if needed, format storage, start the JVM and wait until the broker answers.

        `keep_data` restarts a stopped broker on its old ports and data (tests of broker outages).
        """
        libs = kafka_libs(self.cache_dir)
        classpath = f"{libs}/*"
        java = java_binary()
        config = self.work_dir / "server.properties"
        if not (keep_data and config.exists()):
            self._format(java, classpath, self._write_config())
        self._launch(java, classpath, config)
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _format(self, java: str, classpath: str, config: Path) -> None:
        fmt = subprocess.run(
            [
                java,
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self.work_dir / 'tools-log4j2.yaml'}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id(),
                "-c",
                str(config),
                *(self.security.scram_arguments() if self.security else []),
            ],
            capture_output=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format failed: {fmt.stderr.decode(errors='replace')[-2000:]}")

    def _launch(self, java: str, classpath: str, config: Path) -> None:
        out = (self.work_dir / "logs" / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [
                java,
                f"-Xms{self.heap}",
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.work_dir / 'logs'}",
                f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.yaml'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Ready when a metadata request lists the broker (client listeners open only once it is unfenced)."""
        conf: dict[str, Any] = {
            **self.admin_client_config(),
            "log_level": 0,  # the refused connections until the broker listens are expected
            "logger": kafka_client_logger(),
        }
        admin = AdminClient(conf)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if admin.list_topics(timeout=2).brokers:
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker not ready in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, *, remove_data: bool = True) -> None:
        stop_process(self.proc)
        self.proc = None
        if remove_data:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_file, lines) + "\n" + tail(self.work_dir / "logs" / "stdout.log", 20)
