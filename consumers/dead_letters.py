"""Dead-letter records: the input record's key, value and headers, then why and where it came from,
fitted to the dead-letter topic's record size limit.

An input record can be larger than the input topic's limit once uncompressed, and its dead letter
adds headers, so a dead letter that the brokers refused would abort its batch again and again. The
topic is created with a larger `max.message.bytes` (`MULTICHANNEL_DEAD_LETTER_MAX_BYTES`), so every
record the input topics take fits as it is; one that still does not fit is cut, and says so:

    key      kept; cut only if the key alone leaves no room
    headers  the record's own headers, dropped if they do not fit beside the key
    value    its first bytes, as many as fit
    error.truncated         what was cut (`key`, `headers`, `value`, comma-separated)
    source.key.bytes, source.value.bytes, source.headers.bytes   the original sizes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from config.logs import get_logger
from consumers.messages import Headers, offset_of, partition_of
from multichannel.errors import InvalidEvent

log = get_logger("multichannel.dead_letters")

_HEADER_OVERHEAD: Final = 16
"""Bytes a record spends on one header besides its key and value (varint lengths), rounded up."""
_RECORD_OVERHEAD: Final = 1024
"""Bytes of record and batch framing reserved besides key, value and headers, rounded up."""

DeadLetter = tuple[bytes | None, bytes | None, Headers]


def _size(headers: Sequence[tuple[str, str | bytes | None]]) -> int:
    total = 0
    for key, value in headers:
        total += len(key.encode()) + _HEADER_OVERHEAD
        if value is not None:
            total += len(value.encode() if isinstance(value, str) else value)
    return total


def dead_letter(msg: Message, error: InvalidEvent, limit: int) -> DeadLetter:
    """The dead letter of `msg`: (key, value, headers), at most `limit` bytes on the wire."""
    ts_type, ts = msg.timestamp()
    raw = msg.headers()
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    own: Headers = [(str(k), v) for k, v in pairs]
    why: Headers = [
        ("error.reason", error.reason.encode()),
        ("error.message", error.message.encode()),
        ("source.topic", (msg.topic() or "").encode()),
        ("source.partition", str(partition_of(msg)).encode()),
        ("source.offset", str(offset_of(msg)).encode()),
        ("source.timestamp", str(ts if ts_type else -1).encode()),
    ]
    return fit(msg.key(), msg.value(), own, why, limit)


def fit(key: bytes | None, value: bytes | None, own: Headers, why: Headers, limit: int) -> DeadLetter:
    """Key, value and the record's own headers unchanged when they fit in `limit` with `why`; else cut
    as the module docstring says. The budget keeps 1/64 of the limit for compression that does not
    shrink (lz4 can grow random bytes by 0.4 %) and 1 KiB for the framing."""
    budget = limit - limit // 64 - _RECORD_OVERHEAD
    k, v = key or b"", value or b""
    if len(k) + len(v) + _size(own) + _size(why) <= budget:
        return key, value, [*own, *why]
    sizes: Headers = [
        ("source.key.bytes", str(len(k)).encode()),
        ("source.value.bytes", str(len(v)).encode()),
        ("source.headers.bytes", str(_size(own)).encode()),
    ]
    room = budget - _size(why) - _size(sizes) - _size([("error.truncated", b"key,headers,value")])
    cut: list[str] = []
    if len(k) > room:
        k, key = k[: max(room, 0)], k[: max(room, 0)]
        cut.append("key")
    room -= len(k)
    if own and _size(own) > room:
        own = []
        cut.append("headers")
    room -= _size(own)
    if len(v) > room:
        value = v[: max(room, 0)]
        cut.append("value")
    return key, value, [*own, *why, ("error.truncated", ",".join(cut).encode()), *sizes]


def truncated_parts(headers: Headers) -> str | None:
    """What `fit` cut from a dead letter (`error.truncated`), or None when it is whole."""
    for key, value in headers:
        if key == "error.truncated":
            return value.decode() if isinstance(value, bytes) else value
    return None


def dead_letter_limit(client_conf: dict[str, Any], topic: str, configured: int) -> int:
    """The record size limit dead letters are fitted to: `configured`, or the topic's own
    `max.message.bytes` when that is smaller (a topic created before the setting existed)."""
    admin = AdminClient(client_conf)
    try:
        found = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=10)
        entries = next(iter(found.values())).result(timeout=15)
        topic_limit = int(entries["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError, TimeoutError) as exc:
        log.warning("dead_letter_limit_unknown", topic=topic, error=str(exc), using=configured)
        return configured
    if topic_limit < configured:
        log.warning("dead_letter_topic_limit_smaller", topic=topic, topic_limit=topic_limit, configured=configured)
    return min(topic_limit, configured)
