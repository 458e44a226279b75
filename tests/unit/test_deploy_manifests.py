"""The manifests cannot run here (no container engine), so check what can be checked: they parse,
every MULTICHANNEL_ variable they set is a real setting, and probes and ports match the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTING_VARS = {f"MULTICHANNEL_{name.upper()}" for name in Settings.model_fields}


def _env_names(doc: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(key, str) and key.startswith("MULTICHANNEL_"):
                found.add(key)
            if key == "name" and isinstance(value, str) and value.startswith("MULTICHANNEL_"):
                found.add(value)
            found |= _env_names(value)
    elif isinstance(doc, list):
        for item in doc:
            found |= _env_names(item)
    return found


def test_kubernetes_manifests_parse_and_use_real_settings() -> None:
    """The Kubernetes manifests parse, name only real settings, probe /healthz and /readyz, keep secrets apart."""
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "classifier.yaml").read_text()))
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "Secret", "StatefulSet", "PodDisruptionBudget", "ScaledObject"} <= kinds
    names = set().union(*(_env_names(d) for d in docs))
    assert names and names <= SETTING_VARS, names - SETTING_VARS
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    container = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    port = next(p for p in container["ports"] if p["name"] == "ops")["containerPort"]
    assert int(config["MULTICHANNEL_METRICS_PORT"]) == port
    assert config["MULTICHANNEL_METRICS_HOST"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "MULTICHANNEL_SASL_PASSWORD" not in config, "secrets live in the Secret"


def test_compose_file_parses_and_uses_real_settings() -> None:
    """The compose file parses, has every service, and names only real settings."""
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert {"kafka", "schema-registry", "classifier-0", "classifier-1", "generator", "tail"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.3.1"
    names = _env_names(doc)
    assert names <= SETTING_VARS, names - SETTING_VARS
    assert "/healthz" in " ".join(services["classifier-0"]["healthcheck"]["test"])


def test_dockerfile_runs_as_non_root_from_the_lock_file() -> None:
    """The image is built in two stages from the lock file, runs as a non-root user, and sets only real settings."""
    text = (DEPLOY / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in text
    assert "USER 10001" in text
    assert text.count("FROM ") == 2, "multi-stage"
    for line in text.splitlines():
        if line.strip().startswith("MULTICHANNEL_") or " MULTICHANNEL_" in line:
            var = line.split("MULTICHANNEL_", 1)[1].split("=", 1)[0]
            assert f"MULTICHANNEL_{var}" in SETTING_VARS
