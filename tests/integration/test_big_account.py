"""An account of 50,000 subscriptions on a real broker: the service decides every subscription of it as the
offline `classify` does, keeps serving the other accounts of its input partition, and after a SIGKILL and a
restart decides new events on the big account and on another one without emitting anything again."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings
from consumers.classify_runner import classify_stream
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec
from tests.integration.pipeline import (
    ServiceProcess,
    by_account,
    by_subscription,
    input_end_offsets,
    later_terms,
    publish,
    read_outputs,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]
BIG = 50_000
INPUT_PARTITIONS = 3


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the producers' `murmur2_random` partitioner (Kafka's default) gives a key."""
    m, length = 0x5BD1E995, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[length - length % 4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def big_account_stream() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], str]:
    """(partner events, the big account's purchases, every later event) of the accounts whose customer shares
    the big account's input partition, and that customer. The big account buys mostly Azure usage through an
    Enterprise Agreement, some licenses."""
    spec = WorkloadSpec(
        seed=23, partners=20, customers=240, shape="realistic", max_subscriptions=40, giant_accounts=(BIG,)
    )
    spec.bad_rate, spec.duplicate_rate = 0.0, 0.005
    items = [i for i in WorkloadGenerator(spec).events() if not isinstance(i, BadRecord)]
    big = f"C{spec.customers:07d}"
    partition = murmur2_partition(big.encode(), INPUT_PARTITIONS)
    partners = [i for i in items if i["event_type"] == "partner_program_changed"]
    accounts = [
        i
        for i in later_terms(items)
        if isinstance(i, dict)
        and i["event_type"] != "partner_program_changed"
        and murmur2_partition(i["customer_id"].encode(), INPUT_PARTITIONS) == partition
    ]
    purchases = [i for i in accounts if i["customer_id"] == big and i["event_type"] == "subscription_purchased"]
    bought = {id(i) for i in purchases}
    return partners, purchases, [i for i in accounts if id(i) not in bought], big


def after_restart(big: str, purchases: list[dict[str, Any]], later: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A cancellation of a running license of the big account and a purchase on another account of its
    partition, after everything else."""
    cancelled = {i["subscription_id"] for i in later if i["event_type"] == "subscription_cancelled"}
    license_ = next(i for i in purchases if i["billing_model"] == "license" and i["subscription_id"] not in cancelled)
    other = next(i for i in later if i["customer_id"] != big and i["event_type"] == "subscription_purchased")
    return [
        {
            "event_type": "subscription_cancelled",
            "event_id": "after-restart-big",
            "occurred_at": "2027-06-01T10:00:00Z",
            "partner_id": license_["partner_id"],
            "customer_id": big,
            "subscription_id": license_["subscription_id"],
        },
        {
            "event_type": "subscription_purchased",
            "event_id": "after-restart-other",
            "occurred_at": "2027-06-01T10:00:01Z",
            "partner_id": other["partner_id"],
            "customer_id": other["customer_id"],
            "subscription_id": "S-after-restart",
            "offer_id": "O365-E3",
            "billing_model": "license",
            "channel": "microsoft_direct",
            "quantity": 3,
            "term_start": "2035-01-01",
            "term_end": "2036-01-01",
        },
    ]


def classify(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(decisions, statuses) of the offline `classify` command for the stream in this order."""
    out = io.BytesIO()
    counts = classify_stream((orjson.dumps(i) for i in items), out)
    assert counts.dead_letters == 0
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return (
        [r for r in records if r["record_type"] == "subscription_decision"],
        [r for r in records if r["record_type"] == "customer_status"],
    )


def caused_by(records: list[dict[str, Any]], event_ids: set[str], *, inside: bool) -> list[dict[str, Any]]:
    return [r for r in records if (r["caused_by_event_id"] in event_ids) is inside]


def test_big_account_is_decided_as_classify_decides_it_and_survives_a_restart(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """50,000 subscriptions on one account, then later events on it and on the other accounts of its input
    partition: every decision and status equals classify's, the service never exits, and after a SIGKILL and a
    restart two new events are decided as classify decides them with nothing emitted again."""
    started = time.monotonic()
    settings = settings_factory(input_partitions=INPUT_PARTITIONS, output_partitions=INPUT_PARTITIONS)
    partners, purchases, later, big = big_account_stream()
    others = {i["customer_id"] for i in later if i["customer_id"] != big}
    assert len(purchases) >= BIG * 0.95 and len(others) >= 20, "the stream must hold the big account and others"
    more = after_restart(big, purchases, later)
    new = {e["event_id"] for e in more}
    want_d, want_s = classify(partners + purchases + later + more)
    before_d, before_s = caused_by(want_d, new, inside=False), caused_by(want_s, new, inside=False)
    assert {d["customer_id"] for d in caused_by(want_d, new, inside=True)} == {big, more[1]["customer_id"]}
    publish(settings, partners)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        service.wait_ready(120)
        publish(settings, purchases)
        publish(settings, later)
        ends = input_end_offsets(settings)
        assert sorted(p for p, end in ends.items() if end > 0) == [murmur2_partition(big.encode(), INPUT_PARTITIONS)]
        wait_until_processed(settings, 240, [service])
        assert service.alive(), service.log_tail()
        decisions, statuses, dead = read_outputs(settings)
        got, want = by_subscription(decisions), by_subscription(before_d)
        assert (len(decisions), len(statuses)) == (len(before_d), len(before_s))
        assert set(got) == set(want)
        mismatched = [k for k in want if got[k] != want[k]]
        assert not mismatched, f"{len(mismatched)} subscriptions differ, e.g. {mismatched[0]}"
        assert sum(1 for k in got if k[1] == big) >= BIG * 0.95
        assert {k[1] for k in got} >= others, "every other account of the partition is decided"
        assert by_account(statuses) == by_account(before_s)
        assert dead == []

        service.kill()
        service = ServiceProcess(settings, tmp_path / "service-restarted.log").start()
        service.wait_ready(180)
        publish(settings, more)
        wait_until_processed(settings, 120, [service])
        assert service.terminate() == 0, service.log_tail()
    finally:
        if service.alive():
            service.kill()
    after_d, after_s, _dead = read_outputs(settings)
    assert by_subscription(caused_by(after_d, new, inside=False)) == got, "a decision was emitted again"
    assert by_account(caused_by(after_s, new, inside=False)) == by_account(statuses), "a status was emitted again"
    assert by_subscription(caused_by(after_d, new, inside=True)) == by_subscription(caused_by(want_d, new, inside=True))
    assert by_account(caused_by(after_s, new, inside=True)) == by_account(caused_by(want_s, new, inside=True))
    print(f"big account test: {time.monotonic() - started:.1f} s")  # the run time, read with -s
