"""Creation of the contract's topics (idempotent: existing topics are left as they are)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from config.errors import access_refusal


def ensure_topics(
    client_conf: dict[str, Any],
    specs: dict[str, tuple[int, str]],
    replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Create every topic of `specs` ({name: (partitions, cleanup.policy)}), with the extra topic configs of
    `configs` ({name: {config: value}}); returns name → created|exists. Brokers that refuse the client or
    deny CREATE raise an `AccessRefused` naming the topic."""
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
                continue
            user = str(client_conf.get("sasl.username", ""))
            refused = access_refusal(err, user=user, doing="creating topics", denied=f"CREATE on topic {name}")
            if refused is not None:
                raise refused from None
            raise
    return result
