"""The service's own per-event work with Kafka taken away: the ceiling the exactly-once service is
measured against.

The same input values are read into memory first; then, batch by batch as the service does:
bytes → Avro → event → classify → decision, status and changed account state → Avro → bytes, with
the service's own codec (`consumers.codec.ServiceCodec`) and engine (transactional, one commit per
batch). No client, no broker, no transaction: what is left is the Python work per event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config.settings import Settings
from consumers.changelog import account_key_bytes
from consumers.codec import ServiceCodec
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent
from multichannel.records import SubscriptionDecision


class _Record:
    """The two methods of a consumed message the codec reads."""

    __slots__ = ("_key", "_value")

    def __init__(self, key: bytes, value: bytes) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


@dataclass
class CeilingResult:
    events_per_s: float
    seconds: float
    records_out: int


def measure_ceiling(
    settings: Settings,
    partner_messages: list[tuple[bytes, bytes]],
    account_messages: list[tuple[bytes, bytes]],
    batch_size: int,
) -> CeilingResult:
    """One pass over the input in batches of `batch_size`, on a fresh engine (the partner table is
    loaded first, outside the timing, as the service catches up before it processes)."""
    codec = ServiceCodec(settings)
    engine = Classifier(dedup_window=settings.dedup_window)
    now = datetime.now(UTC)
    partners: Any = [_Record(k, v) for k, v in partner_messages]
    for item in codec.decode_partner_batch(partners):
        if not isinstance(item, InvalidEvent):
            engine.apply(item, now)
    engine.commit()
    records: Any = [_Record(k, v) for k, v in account_messages]
    out = 0
    started = time.perf_counter()
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        encoded: list[tuple[bytes, bytes]] = []
        for fired in engine.fire_due(now):
            encoded.append((b"", codec.encode_decision(fired) if isinstance(fired, SubscriptionDecision) else b""))
        for item in codec.decode_subscription_batch(batch):
            if isinstance(item, InvalidEvent):
                continue  # the service dead-letters it: the original bytes, no encoding
            for rec in engine.apply(item, now) or ():
                if isinstance(rec, SubscriptionDecision):
                    encoded.append((rec.customer_id.encode(), codec.encode_decision(rec)))
                else:
                    encoded.append((account_key_bytes(rec.partner_id, rec.customer_id), codec.encode_status(rec)))
        for key, acct in engine.changed_accounts():
            encoded.append((account_key_bytes(*key), codec.encode_account(acct, engine.account_view(acct))))
        engine.commit()
        out += len(encoded)
    seconds = time.perf_counter() - started
    return CeilingResult(len(records) / seconds if seconds else 0.0, seconds, out)
