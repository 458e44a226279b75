"""Creation of the contract's topics (idempotent: existing topics are left as they are)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]


def ensure_topics(
    client_conf: dict[str, Any],
    specs: dict[str, tuple[int, str]],
    replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Create every topic of `specs` ({name: (partitions, cleanup.policy)}), with the extra topic configs of
    `configs` ({name: {config: value}}); returns name → created|exists."""
    admin = AdminClient(client_conf)
    extra = configs or {}
    new = [
        NewTopic(name, partitions, replication_factor, config={"cleanup.policy": policy, **extra.get(name, {})})
        for name, (partitions, policy) in specs.items()
    ]
    result: dict[str, str] = {}
    for name, future in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            future.result()
            result[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise
    return result
