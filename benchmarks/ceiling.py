"""The service's own per-event work with Kafka taken away: the ceiling the exactly-once service is
measured against.

The same input values are read into memory first; then, batch by batch as the service does:
bytes → Avro → event → classify → decision, status and changed account state → Avro → bytes, with
the service's own codec (`consumers.codec.ServiceCodec`) and engine (transactional, one commit per
batch). No client, no broker, no transaction: what is left is the Python work per event.
"""

from __future__ import annotations

import functools
import gc
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config.settings import PROJECT_ROOT, Settings
from consumers.changelog import account_key_bytes
from consumers.codec import ServiceCodec
from consumers.runtime import freeze_survivors
from consumers.state_format import entity_records, freeze_account, thaw
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
        window = engine.dedup_window
        for key, acct, subscription_ids, appended, moved in engine.changes():  # as `AccountStore.changelog_records`
            hash(tuple(engine.account_view(acct).items()))  # the store's check of the view last written
            encoded += entity_records(
                account_key_bytes(*key), acct, subscription_ids, appended, window, fields_moved=moved
            )
        engine.commit()
        freeze_survivors()  # as the service does after each committed batch
        out += len(encoded)
    seconds = time.perf_counter() - started
    return CeilingResult(len(records) / seconds if seconds else 0.0, seconds, out)


@dataclass
class StateMemory:
    accounts: int
    bytes_per_account: int
    """Held (not in use): frozen, as the engine holds an account past `accounts_in_use` or a restored one."""
    in_use_bytes_per_account: int
    """In use: the account's working objects."""
    sites: list[tuple[str, int]]
    """(allocation site, bytes per account), largest first: what an account's memory is made of."""


def measure_state_memory(
    settings: Settings, partner_messages: list[tuple[bytes, bytes]], account_messages: list[tuple[bytes, bytes]]
) -> StateMemory:
    """The Python memory the engine holds per account after the whole input, traced by allocation site
    (tracemalloc; a pass of its own, as tracing slows the work). The input values are decoded one batch
    at a time, so what remains traced at the end is the state, not the input."""
    codec = ServiceCodec(settings)
    now = datetime.now(UTC)
    tracemalloc.start()
    try:
        engine = Classifier(dedup_window=settings.dedup_window)
        partners: Any = [_Record(k, v) for k, v in partner_messages]
        for item in codec.decode_partner_batch(partners):
            if not isinstance(item, InvalidEvent):
                engine.apply(item, now)
        engine.commit()
        size = settings.batch_size
        for start in range(0, len(account_messages), size):
            batch: Any = [_Record(k, v) for k, v in account_messages[start : start + size]]
            for item in codec.decode_subscription_batch(batch):
                if not isinstance(item, InvalidEvent):
                    engine.apply(item, now)
            engine.commit()
        del batch
        gc.collect()
        in_use = tracemalloc.take_snapshot()
        engine.keep_in_use(1, freeze_account, functools.partial(thaw, window=engine.dedup_window))
        engine.evict()  # every account but one held frozen, as past the service's accounts_in_use
        gc.collect()
        held = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    accounts = max(len(engine), 1)
    root = str(PROJECT_ROOT) + "/"
    untraced = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = in_use.filter_traces(untraced).statistics("lineno")
    total = sum(st.size for st in stats)
    sites = [
        (f"{st.traceback[0].filename.removeprefix(root)}:{st.traceback[0].lineno}", round(st.size / accounts))
        for st in stats[:8]
    ]
    held_total = sum(st.size for st in held.filter_traces(untraced).statistics("lineno"))
    return StateMemory(accounts, round(held_total / accounts), round(total / accounts), sites)
