"""docs/asyncapi.yaml: valid AsyncAPI 3.0 (the spec's own JSON schema, offline), what `multichannel asyncapi`
generates from the settings and the .avsc files, and a faithful account of every topic."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from typer.testing import CliRunner

from cli.main import app
from config.settings import Settings
from consumers.serde import topic_schemas
from deploy.asyncapi import AVRO_FORMAT, DOCUMENT_PATH, asyncapi_document, render, to_yaml
from schemas import schema_str

SPEC_SCHEMA = Path(__file__).resolve().parent / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"


@cache
def _validator() -> Draft7Validator:
    return Draft7Validator(json.loads(SPEC_SCHEMA.read_text(encoding="utf-8")))


def _errors(document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in _validator().iter_errors(document)]


@pytest.fixture
def default_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """No MULTICHANNEL_ variable of the test environment leaks into the defaults' document."""
    names = [name for name in os.environ if name.startswith("MULTICHANNEL_")]
    for name in names:
        monkeypatch.delenv(name)
    return dict.fromkeys(names)


def _committed() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_committed_document_is_valid_asyncapi_3() -> None:
    """docs/asyncapi.yaml validates against the AsyncAPI 3.0.0 JSON schema, Kafka bindings and Avro schemas included."""
    document = _committed()
    assert document["asyncapi"] == "3.0.0"
    assert _errors(document) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("channels", "decisions", "bindings", "kafka", "topicConfiguration", "cleanup.policy"), ["sometimes"]),
        (("channels", "decisions", "bindings", "kafka", "partitions"), 0),
        (("components", "schemas", "CustomerStatus", "schema", "fields"), [{"name": "x", "type": 5}]),
        (("servers", "kafka", "bindings", "kafka", "schemaRegistryHost"), "elsewhere"),
    ],
    ids=["cleanup-policy", "partitions", "avro-field", "server-binding"],
)
def test_the_validation_sees_bindings_and_avro_payloads(path: tuple[str, ...], value: Any) -> None:
    """The spec schema really checks the Kafka bindings and the inline Avro: a broken one is reported."""
    document = _committed()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _errors(document) != []


def test_committed_document_is_what_the_command_generates(default_env: dict[str, str | None]) -> None:
    """No drift: the committed file is byte for byte `render` of the default settings, and `--check` agrees."""
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == render(Settings())
    result = CliRunner().invoke(app, ["asyncapi", "--check"], env=default_env)
    assert result.exit_code == 0, result.output


def test_check_fails_on_a_stale_file_and_a_write_fixes_it(default_env: dict[str, str | None], tmp_path: Path) -> None:
    """`--check` exits 1 on a file that differs (or is missing) and writes nothing; a plain run writes it."""
    target = tmp_path / "asyncapi.yaml"
    runner = CliRunner()
    assert runner.invoke(app, ["asyncapi", "--check", "-o", str(target)], env=default_env).exit_code == 1
    assert not target.exists()
    target.write_text(render(Settings()).replace("partitions: 12", "partitions: 6", 1), encoding="utf-8")
    assert runner.invoke(app, ["asyncapi", "--check", "-o", str(target)], env=default_env).exit_code == 1
    assert runner.invoke(app, ["asyncapi", "-o", str(target)], env=default_env).exit_code == 0
    assert runner.invoke(app, ["asyncapi", "--check", "-o", str(target)], env=default_env).exit_code == 0
    assert target.read_text(encoding="utf-8") == render(Settings())


def test_every_topic_is_a_channel_with_its_partitions_cleanup_and_schema(default_env: dict[str, str | None]) -> None:
    """Each topic of the settings is one channel: address, partitions, replicas, cleanup policy and topic configs as
    `topics create` makes them, and its Avro value schema (the service's, inline and equal to the .avsc)."""
    settings = Settings()
    document = _committed()
    by_topic = {c["address"]: c for c in document["channels"].values()}
    assert set(by_topic) == set(settings.topic_specs)
    for topic, (partitions, policy) in settings.topic_specs.items():
        kafka = by_topic[topic]["bindings"]["kafka"]
        assert (kafka["partitions"], kafka["replicas"]) == (partitions, settings.replication_factor), topic
        assert kafka["topicConfiguration"]["cleanup.policy"] == [policy], topic
        for config, value in settings.topic_configs.get(topic, {}).items():
            assert str(kafka["topicConfiguration"][config]) == value, (topic, config)
    components = document["components"]
    avro_topics: dict[str, str] = {}
    for topic, channel in by_topic.items():
        for ref in channel["messages"].values():
            message = components["messages"][ref["$ref"].rsplit("/", 1)[1]]
            key = message["bindings"]["kafka"]["key"]
            assert key["type"] == "string" and key["description"], topic
            payload_ref = message["payload"].get("$ref")
            if payload_ref is None:
                assert message["payload"]["format"] == "binary", topic
                continue
            schema = components["schemas"][payload_ref.rsplit("/", 1)[1]]
            assert schema["schemaFormat"] == AVRO_FORMAT
            assert message["bindings"]["kafka"]["schemaIdLocation"] == "payload"
            avro_topics[topic] = schema["schema"]["name"]
    expected = {topic: json.loads(schema_str(name)) for topic, name in topic_schemas(settings).items()}
    assert avro_topics == {topic: schema["name"] for topic, schema in expected.items()}
    for schema in components["schemas"].values():
        assert schema["schema"] in expected.values(), "inline schemas are the .avsc files, unchanged"
    registry = document["servers"]["kafka"]["bindings"]["kafka"]
    assert registry["schemaRegistryVendor"] == "confluent" and registry["schemaRegistryUrl"].endswith("/ccompat/v7")


def test_dead_letters_document_every_reason_code() -> None:
    """The dead-letter message's headers name every reason code of the contract and the source's position."""
    from multichannel.errors import REASON_CODES

    headers = _committed()["components"]["messages"]["deadLetter"]["headers"]
    assert headers["properties"]["error.reason"]["enum"] == list(REASON_CODES)
    assert {"source.topic", "source.partition", "source.offset", "source.timestamp"} <= set(headers["required"])


def test_a_deployment_document_follows_its_settings() -> None:
    """Other settings (SASL over TLS, own topics, replication 3, registry URL) give a valid document saying so."""
    settings = Settings(
        bootstrap_servers="kafka-0:9093,kafka-1:9093",
        schema_registry_url="https://registry:8081",
        security_protocol="SASL_SSL",
        decision_topic="acme.decisions",
        application_id="acme",
        replication_factor=3,
        input_partitions=24,
    )
    document = asyncapi_document(settings)
    assert _errors(document) == []
    server = document["servers"]["kafka"]
    assert (server["host"], server["protocol"]) == ("kafka-0:9093,kafka-1:9093", "kafka-secure")
    assert server["bindings"]["kafka"]["schemaRegistryUrl"] == "https://registry:8081"
    assert document["components"]["securitySchemes"]["sasl"]["type"] == "scramSha512"
    assert document["channels"]["decisions"]["address"] == "acme.decisions"
    changelog = document["channels"]["stateChangelog"]
    assert changelog["address"] == "acme-state-changelog"
    assert (changelog["bindings"]["kafka"]["partitions"], changelog["bindings"]["kafka"]["replicas"]) == (24, 3)
    operations = document["operations"].values()
    groups = {op["bindings"]["kafka"]["groupId"]["enum"][0] for op in operations if "bindings" in op}
    assert groups == {"acme", "acme-partners", "acme-restore"}


def test_yaml_output_reads_back_as_the_same_data() -> None:
    """The emitter's YAML loads back equal, strings YAML would read otherwise (true, 1.1, null, `a: b`) included."""
    tricky = {
        "words": ["true", "No", "null", "~", "1.1", "0x1f", "2026-11.1", "a: b", "#x", "- x", "", " lead", "é ü"],
        "quote": 'say "hi"\nnext line\ttab \\ end',
        "nested": [{"a": [], "b": {}}, [1, [2]], {"$ref": "#/x"}],
        "numbers": [0, -1, 4194304],
        "flags": [True, False, None],
        "cleanup.policy": ["delete"],
    }
    assert yaml.safe_load(to_yaml(tricky)) == tricky
    assert yaml.safe_load(render(Settings())) == asyncapi_document(Settings())
