"""The service on a secured broker: SASL_SSL (SCRAM-SHA-512 over TLS, a CA made by the test) with ACLs
enforced. With only the shipped ACLs it gives the offline command's output; a missing right, a wrong
password and an unknown CA each end a command at once with one line naming the cause; a canary password
and registry credential appear nowhere; the ops endpoints listen on loopback by default."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from config.settings import Settings
from consumers.topics import ensure_topics
from deploy.acls import apply_acls, service_acls
from deploy.local.kafka import BrokerSecurity, LocalKafka
from tests.integration.conftest import CACHE_DIR, service_settings_values
from tests.integration.pipeline import (
    PROJECT_ROOT,
    ServiceProcess,
    publish,
    settings_env,
    wait_until_processed,
)
from tests.integration.test_service import assert_same_as_classify, split_partner_first, workload
from tests.integration.tls import make_broker_tls, make_ca

CLI = str(PROJECT_ROOT / ".venv" / "bin" / "multichannel")
REFUSAL_DEADLINE_S = 45.0
"""Generous bound on a refused command's run (it fails within seconds; the start-up timeout is far longer)."""
CANARY = f"CANARY{uuid.uuid4().hex[:10]}"
"""Marks every secret of this module, so that a leak of any of them is found by one search."""


@dataclass
class SecuredBroker:
    """A running SASL_SSL broker, its users and its CA."""

    kafka: LocalKafka
    security: BrokerSecurity
    registry_url: str
    other_ca: Path
    """A CA that did not sign the broker's certificate."""
    passwords: dict[str, str] = field(default_factory=dict)

    def settings(self, user: str, prefix: str, **overrides: Any) -> Settings:
        """Settings of `user` (its password unless overridden) with topic names under `prefix`."""
        values = service_settings_values(self.kafka.bootstrap_servers, self.registry_url, prefix)
        values |= {
            "security_protocol": "SASL_SSL",
            "sasl_username": user,
            "sasl_password": SecretStr(self.passwords[user]),
            "ssl_ca_location": str(self.security.truststore),
            "startup_timeout_s": 90.0,  # far beyond REFUSAL_DEADLINE_S: a refusal must not wait for it
        }
        values.update(overrides)
        return Settings(**values)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, schema_registry_url: str) -> Iterator[SecuredBroker]:
    """One secured broker for the module: `admin` (super user), `classifier` (the service, granted the shipped
    ACLs by each test) and `reader` (granted everything but writing the outputs)."""
    work = tmp_path_factory.mktemp("secured")
    tls = make_broker_tls(work / "tls")
    _key, _cert, other_ca = make_ca(work / "other-ca", "unrelated-ca")
    passwords = {name: f"{CANARY}-{name}-{uuid.uuid4().hex[:8]}" for name in ("admin", "classifier", "reader")}
    security = BrokerSecurity(
        keystore=tls.keystore,
        truststore=tls.ca,
        admin_username="admin",
        admin_password=passwords["admin"],
        users={name: passwords[name] for name in ("classifier", "reader")},
    )
    kafka = LocalKafka(CACHE_DIR, work / "kafka", security=security).start()
    try:
        yield SecuredBroker(kafka, security, schema_registry_url, other_ca, passwords)
    finally:
        kafka.stop()


def _run_cli(args: list[str], settings: Settings, **env_extra: str) -> subprocess.Popen[bytes]:
    env = settings_env(settings) | {"COLUMNS": "300", **env_extra}
    return subprocess.Popen([CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes], deadline_s: float = REFUSAL_DEADLINE_S) -> tuple[int, str, str]:
    """Wait (bounded) for a command; its exit code, stdout and stderr."""
    out, err = proc.communicate(timeout=deadline_s)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _one_error_line(stderr: str, reason: str) -> str:
    """A refused CLI command's stderr: its one line, starting with the reason code, and no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith(f"{reason}: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "%3|" not in stderr, stderr
    return lines[0]


def _service_error(svc: ServiceProcess, event: str) -> str:
    """A refused service's log: it ended with exit code 4 and one `event` line; returns that line's error."""
    assert svc.proc is not None
    try:
        code = svc.proc.wait(REFUSAL_DEADLINE_S)
    finally:
        if svc.alive():
            svc.kill()
    text = svc.log_path.read_text()
    assert code == 4, text
    assert "Traceback" not in text, text
    errors = [json.loads(line) for line in text.splitlines() if f'"event": "{event}"' in line]
    assert len(errors) == 1, text
    message: str = errors[0]["error"]
    assert "did not answer" not in message
    return message


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as exc:
        return exc.read()


@dataclass
class Captured:
    """Everything a run of the secured service let out, for the leak search."""

    settings: Settings
    admin: Settings
    """The same topics, seen by the super user (to publish and to read back)."""
    items: list[Any]
    outputs: dict[str, bytes] = field(default_factory=dict)
    listening: list[tuple[str, int]] = field(default_factory=list)
    applied_acls: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def service_run(secured: SecuredBroker, tmp_path_factory: pytest.TempPathFactory) -> Captured:
    """Topics created by the admin, the shipped ACLs applied by `multichannel acls --apply`, then the service
    as `classifier` (canary password, canary registry credential, ops host left to its default) over a
    workload, stopped and restarted half-way so that it restores its state under the same ACLs."""
    logs = tmp_path_factory.mktemp("service-run")
    prefix = f"s{uuid.uuid4().hex[:8]}"
    registry_auth = SecretStr(f"{CANARY}-registry-user:{CANARY}-registry-secret")
    settings = secured.settings("classifier", prefix, schema_registry_basic_auth=registry_auth)
    admin = secured.settings("admin", prefix)
    ensure_topics(admin.kafka_client_config(), admin.topic_specs)
    applying = _run_cli(["acls", "--json", "--apply", "--principal", "User:classifier"], admin)
    code, out, err = _finish(applying)
    assert code == 0, err
    captured = Captured(settings, admin, [], {"acls --apply stdout": out.encode(), "acls --apply stderr": err.encode()})
    captured.applied_acls = [json.loads(line) for line in out.splitlines()]
    items = workload(seed=23, customers=240)
    partners, rest = split_partner_first(items)
    half = len(rest) // 2
    captured.items = partners + rest
    publish(admin, partners + rest[:half])
    for run, batch in enumerate((rest[half:], [])):
        svc = ServiceProcess(settings, logs / f"service-{run}.log", defaults=("metrics_host",)).start()
        assert svc.proc is not None
        try:
            base = svc.wait_ready()
            connections = psutil.Process(svc.proc.pid).net_connections(kind="tcp")
            captured.listening += [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
            if batch:
                publish(admin, batch)
            wait_until_processed(admin, 120, [svc])
            for path in ("/metrics", "/healthz", "/readyz"):
                captured.outputs[f"run {run} {path}"] = _fetch(base + path)
            assert svc.terminate(30) == 0, svc.log_tail()
        finally:
            if svc.alive():
                svc.kill()
        captured.outputs[f"run {run} log"] = svc.log_path.read_bytes()
    return captured


def test_the_service_with_only_the_shipped_acls_matches_classify(service_run: Captured) -> None:
    """Under exactly the ACLs `multichannel acls` ships, across a restart, the decisions equal the engine's."""
    restored = [
        json.loads(line)
        for line in service_run.outputs["run 1 log"].decode().splitlines()
        if '"partitions_restored"' in line
    ]
    assert sum(r["changelog_records"] for r in restored) > 0, "the second run must restore from the changelog"
    assert_same_as_classify(service_run.admin, service_run.items)


def test_the_applied_acls_are_the_shipped_set(service_run: Captured) -> None:
    """`acls --apply --json` prints and applies the set derived from the settings: READ on the inputs, WRITE on
    the outputs, READ and WRITE on the changelog, the group, and the transactional-id prefix; nothing on the
    cluster."""
    expected = [a.as_dict() for a in service_acls(service_run.settings, "User:classifier")]
    assert service_run.applied_acls == expected
    rights = {(a["resource_type"], a["resource_name"], a["operation"]) for a in service_run.applied_acls}
    s = service_run.settings
    assert {("TOPIC", s.decision_topic, "WRITE"), ("TOPIC", s.subscription_topic, "READ")} <= rights
    assert ("TRANSACTIONAL_ID", f"{s.application_id}-", "WRITE") in rights
    assert not any(kind == "BROKER" or op in {"ALL", "CREATE", "ALTER"} for kind, _name, op in rights)


def test_no_secret_reaches_logs_metrics_errors_or_help(secured: SecuredBroker, service_run: Captured) -> None:
    """Every byte the service, its ops endpoints, a refused command and `--help` write is free of every
    password and of the registry credential (all marked with one canary)."""
    outputs = dict(service_run.outputs)
    wrong = service_run.settings.model_copy(update={"sasl_password": SecretStr(f"{CANARY}-wrong")})
    refused = _run_cli(["topics", "create"], wrong)
    helps = {
        " ".join(args): _run_cli(args, service_run.settings)
        for args in (["--help"], ["run", "--help"], ["acls", "--help"], ["topics", "create", "--help"])
    }
    for name, proc in helps.items():
        code, out, err = _finish(proc)
        assert code == 0, err
        outputs[name] = (out + err).encode()
    code, out, err = _finish(refused)
    assert code == 4
    outputs["refused topics create"] = (out + err).encode()
    outputs["settings repr"] = f"{service_run.settings!r} {service_run.settings}".encode()
    assert len(outputs) >= 12 and all(outputs.values())
    secrets = [*secured.passwords.values(), f"{CANARY}-wrong", CANARY]
    leaks = [(name, secret) for name, data in outputs.items() for secret in secrets if secret.encode() in data]
    assert leaks == []


def test_ops_endpoints_listen_on_loopback_unless_configured(service_run: Captured) -> None:
    """The default ops host is 127.0.0.1, and the running service (its host left unset) listens there only."""
    assert Settings.model_fields["metrics_host"].default == "127.0.0.1"
    assert service_run.listening, "the service listened on nothing"
    assert {ip for ip, _port in service_run.listening} == {"127.0.0.1"}
    metrics = service_run.outputs["run 1 /metrics"].decode()
    assert "multichannel_decisions_total" in metrics


@pytest.mark.parametrize("guarantee", ["exactly_once_v2", "at_least_once"], ids=["eos", "alos"])
def test_a_principal_without_write_on_the_outputs_is_stopped_with_one_line(
    secured: SecuredBroker, tmp_path: Path, guarantee: str
) -> None:
    """`reader` holds every shipped right but WRITE on the outputs: `run` exits 4 at its first batch, naming the
    denied topic, instead of retrying the batch (in a transaction or not); `topics create` as `reader` exits 4
    naming CREATE."""
    prefix = f"w{uuid.uuid4().hex[:8]}"
    settings = secured.settings("reader", prefix, processing_guarantee=guarantee)
    admin = secured.settings("admin", prefix)
    ensure_topics(admin.kafka_client_config(), admin.topic_specs)
    outputs = {settings.decision_topic, settings.status_topic, settings.dead_letter_topic}
    granted = [a for a in service_acls(settings) if not (a.operation == "WRITE" and a.resource_name in outputs)]
    apply_acls(admin.kafka_client_config(), granted)
    partners, rest = split_partner_first(workload(seed=5, customers=20))
    publish(admin, partners + rest)
    svc = ServiceProcess(settings, tmp_path / "service.log").start()
    creating = _run_cli(["topics", "create"], settings)
    message = _service_error(svc, "authorization_denied")
    assert "'reader'" in message and f"WRITE on topic {settings.decision_topic}" in message
    code, _out, err = _finish(creating)
    assert code == 4
    line = _one_error_line(err, "AUTHORIZATION_DENIED")
    assert f"CREATE on topic {settings.subscription_topic}" in line and "'reader'" in line


def test_a_wrong_password_is_refused_at_once_with_one_line(secured: SecuredBroker, tmp_path: Path) -> None:
    """A wrong password: `run` and `topics create` exit 4 within seconds (not after the start-up timeout) with
    one AUTHENTICATION_FAILED line naming the user, not the password."""
    settings = secured.settings("classifier", "unused", sasl_password=SecretStr(f"{CANARY}-wrong"))
    started = time.monotonic()
    svc = ServiceProcess(settings, tmp_path / "service.log").start()
    creating = _run_cli(["topics", "create"], settings)
    message = _service_error(svc, "authentication_failed")
    code, _out, err = _finish(creating)
    assert time.monotonic() - started < settings.startup_timeout_s
    assert code == 4
    line = _one_error_line(err, "AUTHENTICATION_FAILED")
    for text in (message, line):
        assert "'classifier'" in text and "credentials" in text and CANARY not in text


def test_an_unknown_ca_is_refused_at_once_with_one_line(secured: SecuredBroker, tmp_path: Path) -> None:
    """A CA that did not sign the broker's certificate: `run` and `tail` exit 4 within seconds with one
    TLS_HANDSHAKE_FAILED line naming MULTICHANNEL_SSL_CA_LOCATION."""
    settings = secured.settings("classifier", "unused", ssl_ca_location=str(secured.other_ca))
    svc = ServiceProcess(settings, tmp_path / "service.log").start()
    tailing = _run_cli(["tail", "--json"], settings)
    message = _service_error(svc, "tls_handshake_failed")
    code, out, err = _finish(tailing)
    assert code == 4 and out == ""
    line = _one_error_line(err, "TLS_HANDSHAKE_FAILED")
    for text in (message, line):
        assert "MULTICHANNEL_SSL_CA_LOCATION" in text and "certificate verify failed" in text
