"""The Schema Registry client every component builds from its settings."""

from __future__ import annotations

from confluent_kafka.schema_registry import SchemaRegistryClient

from config.settings import Settings


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """A registry client for resolved settings (a `mock://` URL gives an in-process mock)."""
    return SchemaRegistryClient.new_client(settings.schema_registry_config())
