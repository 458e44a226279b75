"""The test broker itself: records go in and come back, and the contract's topics are created right."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from config.settings import Settings
from consumers.topics import ensure_topics


def test_produce_and_consume_on_the_real_broker(settings_factory: Callable[..., Settings]) -> None:
    """Fifty keyed records produced to the local broker are all consumed back, key for key."""
    settings = settings_factory()
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    sent = {f"C{i}".encode(): f"value-{i}".encode() for i in range(50)}
    for key, value in sent.items():
        producer.produce(settings.subscription_topic, key=key, value=value)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": "probe",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.subscription_topic])
    received: dict[bytes, bytes] = {}
    for _ in range(60):
        for msg in consumer.consume(100, timeout=1.0):
            if msg.error() is None:
                received[msg.key() or b""] = msg.value() or b""
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent


def test_topics_have_the_contract_policies_and_partitions(settings_factory: Callable[..., Settings]) -> None:
    """Every topic has the contract's cleanup policy, partitions and configs; creating them again is a no-op."""
    settings = settings_factory()
    conf = settings.kafka_client_config()
    assert set(ensure_topics(conf, settings.topic_specs).values()) == {"exists"}, "second creation is idempotent"
    admin = AdminClient(conf)
    metadata = admin.list_topics(timeout=10)
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in settings.topic_specs]
    for resource, future in admin.describe_configs(resources).items():
        partitions, policy = settings.topic_specs[resource.name]
        configs = future.result()
        assert configs["cleanup.policy"].value == policy, resource.name
        assert len(metadata.topics[resource.name].partitions) == partitions, resource.name
        for name, value in settings.topic_configs.get(resource.name, {}).items():
            assert configs[name].value == value, (resource.name, name)
    assert settings.topic_configs[settings.dead_letter_topic] == {"max.message.bytes": str(4 * 1024 * 1024)}
    assert settings.topic_specs[settings.partner_topic][1] == "compact"
    assert settings.topic_specs[settings.status_topic][1] == "compact"
    assert settings.topic_specs[settings.changelog_topic][1] == "compact"
    assert settings.topic_specs[settings.decision_topic][1] == "delete"
