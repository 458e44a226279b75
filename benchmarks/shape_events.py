"""The events of the CSP data shapes: realistic accounts of a given size, and events on them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from benchmarks.workload import avoid_near_deadlines
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec
from producers.serde import EventEncoder

EventDict = dict[str, Any]


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_of(today: date, months: int) -> str:
    index = today.year * 12 + today.month - 1 + months
    return date(index // 12, index % 12 + 1, 1).isoformat()


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the service's and the publisher's partitioner (`murmur2_random`, Kafka's own) gives a
    key: a storm account's changelog records go where its customer's input records would."""
    m, length = 0x5BD1E995, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= key[tail + 2] << 16
    if extra >= 2:
        h ^= key[tail + 1] << 8
    if extra >= 1:
        h ^= key[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def account_events(size: int, customer_id: str, seed: int) -> tuple[list[EventDict], list[EventDict]]:
    """(partner events, account events) of one realistic account of `size` subscriptions: the generator's
    giant account (an enterprise buying profile), renamed to `customer_id`. Its terms lie in the past or at
    least two days ahead, so no timer fires while it is measured. The partner events are the same for
    every size with the same seed."""
    today = datetime.now(UTC).date()
    spec = WorkloadSpec(
        seed=seed,
        shape="realistic",
        partners=50,
        customers=0,
        giant_accounts=(size,),
        start=datetime.combine(today - timedelta(days=420), datetime.min.time(), tzinfo=UTC),
        days=300,
        bad_rate=0.0,
        duplicate_rate=0.0,
        partner_change_rate=0.0,
    )
    partners: list[EventDict] = []
    events: list[EventDict] = []
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, BadRecord):
            continue
        if item["event_type"] == "partner_program_changed":
            partners.append(item)
            continue
        old = item["customer_id"]
        item["customer_id"] = customer_id
        if "subscription_id" in item:
            item["subscription_id"] = item["subscription_id"].replace(old, customer_id, 1)
        avoid_near_deadlines(item, today)
        events.append(item)
    return partners, events


def further_events(account: list[EventDict], n: int, tag: str) -> list[EventDict]:
    """`n` events on an account already built from `account`: in turn a new license purchase, a renewal of
    a license subscription still open, and a cancellation of a subscription still open (existing ones first,
    then those bought here). Terms end at least a year ahead: no timer fires while they are measured."""
    today = datetime.now(UTC).date()
    pid, cid = account[0]["partner_id"], account[0]["customer_id"]
    cancelled = {e["subscription_id"] for e in account if e["event_type"] == "subscription_cancelled"}
    bought = [e for e in account if e["event_type"] == "subscription_purchased"]
    open_subs = [e["subscription_id"] for e in bought if e["subscription_id"] not in cancelled]
    licenses = [
        e["subscription_id"]
        for e in bought
        if e["billing_model"] == "license" and e["subscription_id"] not in cancelled
    ]
    out: list[EventDict] = []
    renewals = 0
    for i in range(n):
        base = {
            "event_id": f"{tag}-{i}",
            "occurred_at": _ts(datetime.now(UTC)),
            "partner_id": pid,
            "customer_id": cid,
        }
        kind = i % 3
        if kind == 0 or not licenses or not open_subs:
            sid = f"S-{cid}-{tag}-{i}"
            out.append(
                {
                    **base,
                    "event_type": "subscription_purchased",
                    "subscription_id": sid,
                    "offer_id": "O365-E3",
                    "billing_model": "license",
                    "channel": "csp",
                    "seller_partner_id": pid,
                    "quantity": 10,
                    "term_start": _first_of(today, 0),
                    "term_end": _first_of(today, 12),
                }
            )
            open_subs.append(sid)
            licenses.append(sid)
        elif kind == 1:
            sid = licenses[renewals % len(licenses)]
            renewals += 1
            out.append(
                {
                    **base,
                    "event_type": "subscription_renewed",
                    "subscription_id": sid,
                    "term_end": _first_of(today, 24 + renewals),
                }
            )
        else:
            sid = open_subs.pop(0)
            if sid in licenses:
                licenses.remove(sid)
            out.append({**base, "event_type": "subscription_cancelled", "subscription_id": sid})
    return out


def encode_events(encoder: EventEncoder, events: Iterable[EventDict]) -> list[tuple[bytes, bytes]]:
    out = []
    for e in events:
        event = parse_event(e)
        record = event_to_dict(event)
        if isinstance(event, PartnerProgramChanged):
            out.append((event.partner_id.encode(), encoder.encode_partner_event(record)))
        else:
            out.append((event.customer_id.encode(), encoder.encode_subscription_event(record)))
    return out
