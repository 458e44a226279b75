"""The one settings object of the service and the CLI.

Every field is read from a `MULTICHANNEL_`-prefixed environment variable (for example
`MULTICHANNEL_BOOTSTRAP_SERVERS`), except the tracing fields, which read OpenTelemetry's standard `OTEL_*`
names (`env_name` gives a field's variable); the defaults run the embedded local demo. The README's
configuration table documents every field.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.logs import kafka_client_logger

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration of brokers, registry, topics, batching and operations."""

    model_config = SettingsConfigDict(env_prefix="MULTICHANNEL_", extra="ignore", frozen=True, validate_by_name=True)

    # --- connections ---------------------------------------------------------------------------
    bootstrap_servers: str = Field(
        "", description="Kafka bootstrap servers; empty means the local broker started by `broker start`."
    )
    schema_registry_url: str = Field(
        "", description="Schema Registry URL (Confluent API); empty means the local Apicurio registry."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers."
    )
    sasl_mechanism: str = Field("SCRAM-SHA-512", description="SASL mechanism when a SASL protocol is used.")
    sasl_username: str = Field("", description="SASL user of the service.")
    sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (never logged).")
    ssl_ca_location: str = Field("", description="PEM file of the CA that signed the brokers' certificates.")
    schema_registry_basic_auth: SecretStr = Field(
        SecretStr(""), description="`user:password` for the Schema Registry, if it needs one."
    )

    # --- topics ----------------------------------------------------------------------------------
    subscription_topic: str = Field(
        "billing.subscription-events.v1", description="Input: subscription and relationship events."
    )
    partner_topic: str = Field("partner.program-events.v1", description="Input: partner-change events (compacted).")
    decision_topic: str = Field("multichannel.decisions.v1", description="Output: subscription decisions.")
    status_topic: str = Field("multichannel.customer-status.v1", description="Output: customer status (compacted).")
    dead_letter_topic: str = Field("multichannel.dead-letters.v1", description="Output: undecodable or invalid input.")
    input_partitions: int = Field(12, ge=1, description="Partitions of the subscription topic and changelog.")
    output_partitions: int = Field(12, ge=1, description="Partitions of the decision and status topics.")
    partner_partitions: int = Field(3, ge=1, description="Partitions of the partner topic.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of topics created by `topics create`.")
    dead_letter_max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest dead letter: the dead-letter topic's `max.message.bytes` (set by `topics create`) and "
        "the service producer's `message.max.bytes`. Larger than the input topics' limit (1 MiB by default), so an "
        "input record fits in its dead letter with the reason headers; a bigger one is cut, and `error.truncated` "
        "says what was cut.",
    )
    redrive_group: str = Field(
        "",
        description="Consumer group of `dead-letters replay` on the dead-letter topic (its offsets say how far "
        "every dead letter is re-driven) and its transactional.id; empty means `<application id>-redrive`.",
    )
    redrive_audit_topic: str = Field(
        "",
        description="Where `dead-letters replay` records each re-driven dead letter, in the transaction that "
        "re-drives it (compacted, one key per dead letter); empty means `<application id>-redrive-audit`.",
    )

    # --- service -----------------------------------------------------------------------------------
    output_record_max_bytes: int = Field(
        0,
        ge=0,
        description="Largest decision, status or changelog record the service produces; 0 reads each topic's "
        "max.message.bytes at start (capped by the producer's message.max.bytes). An account whose record "
        "is larger has its events of the batch dead-lettered (RECORD_REFUSED) instead of stopping the partition.",
    )
    rulebook: Literal["seed", "current"] = Field(
        "seed",
        description="The rule book that decides: `seed` (the multichannel page as written, version 2026-11.1) or "
        "`current` (Partner Center as it is now, version 2026-12.1). Restarting every instance with the other book "
        "re-evaluates each restored account once and emits only the decisions that change (docs/architecture.md).",
    )
    application_id: str = Field(
        "multichannel-classifier", description="Consumer group id and prefix of internal topics."
    )
    instance_id: str = Field(
        "0", description="Stable id of this replica; the transactional.id is `<application id>-<instance id>`."
    )
    processing_guarantee: Literal["exactly_once_v2", "at_least_once"] = Field(
        "exactly_once_v2",
        description="exactly_once_v2: one transaction per batch (outputs, changelog, offsets). at_least_once: "
        "outputs flushed, then offsets committed; a crash can repeat a batch's decisions.",
    )
    static_membership: bool = Field(
        True,
        description="Join the group with group.instance.id = the transactional id (each replica's stable id), so "
        "that a restarted replica takes its partitions back at once, without a rebalance. A replica that stops "
        "for good gives its partitions up after the session timeout (10 s).",
    )
    batch_size: int = Field(2000, ge=1, description="Most input records processed in one transaction.")
    batch_timeout_ms: int = Field(
        100,
        ge=1,
        description="Longest wait for the first record of a batch; a batch closes as soon as the records the "
        "client has fetched are taken (up to the batch size), so a light load is not held back.",
    )
    transaction_timeout_ms: int = Field(
        10_000, ge=1000, description="transaction.timeout.ms: how long a crashed instance can hold readers back."
    )
    punctuate_interval_ms: int = Field(1000, ge=10, description="How often due term-end timers are fired.")
    timer_batch_records: int = Field(
        5000,
        ge=1,
        description="Most records that due timers emit in one transaction. While more are due (a month-end storm), "
        "each batch fires the next slice in the rule book's timer order and reads no new input. Restored accounts "
        "waiting for a re-evaluation (every account after a switch of rule book) go the same way, in key order.",
    )
    auto_register_schemas: bool = Field(
        False, description="Register output schemas on start (local demo); otherwise `schemas register` does it."
    )
    dedup_window: int = Field(
        256,
        ge=1,
        description="Event ids remembered per account (and per partner) to detect duplicates; also used by "
        "`classify`. A repeat of an older id is applied again.",
    )
    accounts_in_use: int = Field(
        100_000,
        ge=1,
        description="Accounts an instance keeps as working objects (a few KB each, more with many "
        "subscriptions); the least recently used others are held compressed (under 1 KB for ten events) and "
        "rebuilt at their next use.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address of the ops endpoints (0.0.0.0 in containers).")
    metrics_port: int = Field(9464, ge=0, description="Port of /metrics, /healthz and /readyz; 0 picks a free port.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Level of the JSON logs.")
    shutdown_timeout_s: float = Field(
        8.0, gt=0, description="Longest wait for outstanding deliveries when the service closes its producer."
    )
    startup_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest wait for the brokers and the Schema Registry to answer when a command starts (one "
        "log line per attempt, with backoff); past it the command exits with code 3 and a one-line error.",
    )

    # --- tracing (OpenTelemetry's own variable names) -----------------------------------------------
    otel_sdk_disabled: bool = Field(
        False, validation_alias="OTEL_SDK_DISABLED", description="true: no tracing, whatever else is set."
    )
    otel_traces_exporter: str = Field(
        "none",
        validation_alias="OTEL_TRACES_EXPORTER",
        description="Where spans go: `none` (the default here, unlike the SDK's: nothing is traced or exported), "
        "`otlp` (OTLP over HTTP/protobuf), `console` (JSON on stdout), or both comma-separated.",
    )
    otel_exporter_otlp_endpoint: str = Field(
        "",
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="Base URL of the OTLP collector; spans go to `<endpoint>/v1/traces`. Empty means "
        "`http://localhost:4318`.",
    )
    otel_exporter_otlp_traces_endpoint: str = Field(
        "",
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="Full URL for spans, used as it is instead of the base URL above.",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        "http/protobuf",
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
        description="OTLP transport; only `http/protobuf` is installed (no gRPC).",
    )
    otel_service_name: str = Field(
        "multichannel-classifier", validation_alias="OTEL_SERVICE_NAME", description="`service.name` of the spans."
    )
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field(
        "parentbased_always_on",
        validation_alias="OTEL_TRACES_SAMPLER",
        description="Which batches are sampled; `parentbased_*` follows an input record's sampled flag for its span.",
    )
    otel_traces_sampler_arg: float = Field(
        1.0, ge=0, le=1, validation_alias="OTEL_TRACES_SAMPLER_ARG", description="Ratio of the traceidratio samplers."
    )

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        names = {n.strip() for n in value.split(",") if n.strip()} or {"none"}
        unknown = names - {"none", "otlp", "console"}
        if unknown:
            raise ValueError(f"unknown exporter {', '.join(sorted(unknown))}: use none, otlp or console")
        return ",".join(sorted(names - {"none"})) or "none"

    # --- dashboard -------------------------------------------------------------------------------
    dashboard_host: str = Field(
        "127.0.0.1", description="Address the dashboard listens on (loopback only unless set otherwise)."
    )
    dashboard_port: int = Field(8765, ge=0, le=65535, description="Port of the dashboard; 0 picks a free port.")
    dashboard_token: SecretStr = Field(
        SecretStr(""),
        description="When set, every dashboard page and API asks for it: `Authorization: Bearer <token>`, "
        "`?token=<token>` once (it sets a cookie), or that cookie.",
    )
    dashboard_preview_file: str = Field(
        "",
        description="A rule-book preview (`multichannel rules preview --to current --output FILE.jsonl`) that the "
        'dashboard\'s page "What changes under rule book X" (`/preview`) shows, read again whenever the file changes; '
        "empty: the page says how to write one.",
    )
    dashboard_metrics_url: str = Field(
        "",
        description="The service's Prometheus endpoint the dashboard reads lag and throughput from; empty means "
        "`http://127.0.0.1:<MULTICHANNEL_METRICS_PORT>/metrics`.",
    )

    # --- local tooling -----------------------------------------------------------------------------
    cache_dir: Path = Field(PROJECT_ROOT / ".cache", description="Maven repository, Kafka and Apicurio jars.")
    local_state_dir: Path = Field(
        PROJECT_ROOT / ".cache" / "local", description="Data and logs of the local broker and registry."
    )
    maven_repo: str = Field(
        "",
        description="Maven's local repository for the Kafka and Apicurio downloads; empty means Maven's own "
        "`~/.m2/repository`, so clones on one machine download once.",
    )
    java_home: str = Field(
        "",
        description="JDK of the local broker and registry; empty means `JAVA_HOME`, then `java` on PATH, then the "
        "newest under /usr/lib/jvm (the first of at least the version each one needs).",
    )

    @property
    def tracing(self) -> bool:
        """Spans are made and exported: an exporter is named and the SDK is not disabled."""
        return self.otel_traces_exporter != "none" and not self.otel_sdk_disabled

    @property
    def changelog_topic(self) -> str:
        """The compacted state changelog, co-partitioned with the subscription topic."""
        return f"{self.application_id}-state-changelog"

    @property
    def partner_table_topic(self) -> str:
        """The service's own compacted partner table: per partner, the entry that wins by (occurred_at,
        event_id) with its dedup window, whatever order the partner topic's records arrived in."""
        return f"{self.application_id}-partner-table"

    @property
    def redrive_group_id(self) -> str:
        """The re-drive group and transactional id of `dead-letters replay`."""
        return self.redrive_group or f"{self.application_id}-redrive"

    @property
    def redrive_audit_topic_name(self) -> str:
        """The audit of re-driven dead letters."""
        return self.redrive_audit_topic or f"{self.application_id}-redrive-audit"

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once_v2"

    @property
    def transactional_id(self) -> str:
        return f"{self.application_id}-{self.instance_id}"

    @cached_property
    def topic_specs(self) -> dict[str, tuple[int, str]]:
        """Every topic of the contract with its partition count and cleanup policy."""
        return {
            self.subscription_topic: (self.input_partitions, "delete"),
            self.partner_topic: (self.partner_partitions, "compact"),
            self.decision_topic: (self.output_partitions, "delete"),
            self.status_topic: (self.output_partitions, "compact"),
            self.dead_letter_topic: (self.output_partitions, "delete"),
            self.changelog_topic: (self.input_partitions, "compact"),
            self.partner_table_topic: (self.partner_partitions, "compact"),
            self.redrive_audit_topic_name: (1, "compact"),
        }

    @property
    def topic_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs beyond partitions and cleanup policy that `topics create` sets."""
        return {self.dead_letter_topic: {"max.message.bytes": str(self.dead_letter_max_bytes)}}

    def to_env(self) -> dict[str, str]:
        """These settings as the variables that give a child process the same ones."""
        env: dict[str, str] = {}
        for name, raw in self.model_dump().items():
            value = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
            env[env_name(name)] = str(value)
        return env

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every client (never log the result: it holds secrets)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "broker.address.family": "v4",
            "logger": kafka_client_logger(),  # librdkafka's lines as JSON log events, not raw on stderr
        }
        if self.security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def schema_registry_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"url": self.schema_registry_url}
        auth = self.schema_registry_basic_auth.get_secret_value()
        if auth:
            conf["basic.auth.user.info"] = auth
        return conf


def env_name(field: str) -> str:
    """The environment variable of a settings field: `MULTICHANNEL_<FIELD>`, or its `OTEL_*` name."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"MULTICHANNEL_{field.upper()}"


_ALIASED = {a: name for name, f in Settings.model_fields.items() if isinstance(a := f.validation_alias, str)}
"""`OTEL_*` name -> field, for errors reported under the variable's name."""


def describe_invalid_settings(error: ValidationError) -> str:
    """One line per invalid variable, named as it is set (`MULTICHANNEL_BATCH_SIZE: ...`); the values
    of secret fields are not shown."""
    lines: list[str] = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        field = _ALIASED.get(field, field)
        info = Settings.model_fields.get(field)
        secret = info is not None and info.annotation is SecretStr
        if not field:  # a check of the settings as a whole
            lines.append(item["msg"])
            continue
        shown = "" if secret else f" (got {item['input']!r})"
        lines.append(f"{env_name(field)}: {item['msg']}{shown}")
    return "\n".join(lines)
