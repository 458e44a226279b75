"""A partition's new owner waits for its previous owner's open transaction before it restores the partition.

A previous owner frozen (SIGSTOP, a long GC pause) after it sent its batch's offsets to the transaction, but
before its changelog records left the client, wakes up after the partition has moved and commits: the
records land after the new owner read the changelog, while the offsets it then fetches (stable offsets,
`read_committed`) already include that batch. Restoring first would start from the late offsets with the
state from before them; found by the fault suite's zombie."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from consumers.changelog import account_key_bytes
from consumers.state_format import encode_account
from multichannel.engine import Classifier
from multichannel.parse import parse_event
from tests.integration.pipeline import (
    ServiceProcess,
    by_subscription,
    expected_outputs,
    publish,
    read_outputs,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]

FROZEN_AFTER_ASSIGNMENT_S = 3.0
"""How long the previous owner stays frozen after the new owner got the partition (the fault itself)."""

PARTNER = {
    "event_type": "partner_program_changed",
    "event_id": "p-direct",
    "occurred_at": "2025-01-01T00:00:00Z",
    "partner_id": "PD",
    "program": "csp_direct",
    "indirect_provider_ids": [],
}
BUY = {
    "event_type": "subscription_purchased",
    "event_id": "buy-1",
    "occurred_at": "2025-01-02T10:00:00Z",
    "partner_id": "PD",
    "customer_id": "C1",
    "subscription_id": "S1",
    "offer_id": "O365-E3",
    "billing_model": "license",
    "channel": "microsoft_direct",
    "quantity": 5,
    "term_start": "2025-01-01",
    "term_end": "2031-12-31",
}
CANCEL = {
    "event_type": "subscription_cancelled",
    "event_id": "cancel-1",
    "occurred_at": "2025-02-01T10:00:00Z",
    "partner_id": "PD",
    "customer_id": "C1",
    "subscription_id": "S1",
}


def _account_after_buy() -> bytes:
    """The changelog value the previous owner wrote for C1's account after the purchase."""
    engine = Classifier()
    now = datetime.now(UTC)
    engine.apply(parse_event(PARTNER), now)
    engine.commit()
    engine.apply(parse_event(BUY), now)
    [(_key, account)] = engine.changed_accounts()
    return encode_account(account, engine.account_view(account))


def _wait_assigned(settings: Settings, deadline_s: float = 60.0) -> None:
    """Until the group is stable with the input partition assigned to a member."""
    admin = AdminClient(settings.kafka_client_config())
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        [group] = admin.describe_consumer_groups([settings.application_id]).values()
        description: Any = group.result()
        if description.state == ConsumerGroupState.STABLE and any(
            m.assignment.topic_partitions for m in description.members
        ):
            return
        time.sleep(0.1)  # polling the broker's view of the group: nothing to block on
    raise AssertionError("the new owner was not assigned the partition")


def test_new_owner_restores_after_the_previous_owners_late_commit(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """The previous owner's transaction (offsets sent, changelog record still unsent) commits after the new
    owner was assigned the partition: the new owner's decision for the next event is the engine's, made on
    the state that includes the late transaction."""
    settings = settings_factory(input_partitions=1, output_partitions=1)
    publish(settings, [PARTNER, BUY])
    conf = settings.kafka_client_config()
    group = Consumer({**conf, "group.id": settings.application_id})
    previous = Producer({**conf, "transactional.id": f"{settings.application_id}-previous"})
    previous.init_transactions(30)
    previous.begin_transaction()
    # the previous owner processed the purchase: its offset is sent, its changelog record not yet
    previous.send_offsets_to_transaction(
        [TopicPartition(settings.subscription_topic, 0, 1)], group.consumer_group_metadata(), 30
    )
    service = ServiceProcess(settings, tmp_path / "service.log", instance_id="new").start()
    try:
        _wait_assigned(settings)
        time.sleep(FROZEN_AFTER_ASSIGNMENT_S)  # the fault itself: the previous owner is still frozen
        previous.produce(settings.changelog_topic, key=account_key_bytes("PD", "C1"), value=_account_after_buy())
        previous.commit_transaction(30)
        service.wait_ready()
        publish(settings, [CANCEL])
        wait_until_processed(settings, 60, [service])
        assert service.terminate() == 0, service.log_tail()
    finally:
        group.close()
        if service.alive():
            service.kill()
    decisions, _statuses, _dead = read_outputs(settings)
    want, _ = expected_outputs([PARTNER, BUY, CANCEL])
    after_cancel = [d for d in want if d["caused_by_event_id"] == "cancel-1"]
    assert after_cancel, "the cancellation must change the subscription's decision"
    assert by_subscription(d for d in decisions if d["caused_by_event_id"] == "cancel-1") == by_subscription(
        after_cancel
    )
