"""The Avro schemas of the contract: the single source of truth for every record on Kafka.

Each `<name>.avsc` here is read and parsed once per process (on first use) and served by its
stable name. Subjects follow Confluent's topic-name strategy, `<topic>-value`: one subject per
topic, whatever record types it carries. Keys are plain UTF-8 strings and have no schema.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, get_args

import fastavro

SCHEMAS_DIR: Final = Path(__file__).resolve().parent
V1_DIR: Final = SCHEMAS_DIR / "v1"
"""The schemas of contract version 1, as first registered, never edited: what a version-1 producer writes and a
version-1 reader reads (the files here are contract 1.1's, which read and are read by them)."""

SchemaName = Literal["subscription_event", "partner_event", "subscription_decision", "customer_status", "account_state"]
"""The stem of an `.avsc` file; stable, code refers to schemas only by these names."""

SUBSCRIPTION_EVENT: Final = "subscription_event"
PARTNER_EVENT: Final = "partner_event"
SUBSCRIPTION_DECISION: Final = "subscription_decision"
CUSTOMER_STATUS: Final = "customer_status"
ACCOUNT_STATE: Final = "account_state"
SCHEMA_NAMES: Final[tuple[SchemaName, ...]] = get_args(SchemaName)


def subject_for(topic: str) -> str:
    """The subject of a topic's values under the topic-name strategy."""
    return f"{topic}-value"


def load_dir(directory: Path) -> dict[SchemaName, str]:
    """Every schema's text from `directory` (not cached: the CLI checks a modified copy with it)."""
    texts: dict[SchemaName, str] = {}
    for name in SCHEMA_NAMES:
        path = directory / f"{name}.avsc"
        text = path.read_text(encoding="utf-8")
        try:
            json.loads(text)  # fail here, naming the file, rather than in the registry
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON: {exc}") from exc
        texts[name] = text
    return texts


@cache
def _texts() -> dict[SchemaName, str]:
    return load_dir(SCHEMAS_DIR)


@cache
def _v1_texts() -> dict[SchemaName, str]:
    return load_dir(V1_DIR)


def v1_schema_str(name: SchemaName) -> str:
    """The version-1 text of a schema (`V1_DIR`), to write or read as a version-1 client does."""
    return _v1_texts()[name]


@cache
def _parsed() -> dict[SchemaName, dict[str, Any]]:
    return {name: parse(text) for name, text in _texts().items()}


def parse(text: str) -> dict[str, Any]:
    """A schema text parsed by fastavro (for local schemas, use `parsed_schema`, which is cached)."""
    parsed = fastavro.parse_schema(json.loads(text))
    if not isinstance(parsed, dict):
        raise ValueError(f"not a named Avro type: {text[:80]!r}")
    return parsed


def schema_str(name: SchemaName) -> str:
    """The schema text as in the `.avsc` file: what is registered."""
    return _texts()[name]


def parsed_schema(name: SchemaName) -> dict[str, Any]:
    """The fastavro-parsed schema; the same object on every call (fastavro skips re-parsing it)."""
    return _parsed()[name]
