"""Typed accessors for consumed messages: a record (not an error event) always has a partition and offset."""

from __future__ import annotations

from confluent_kafka import Message

Headers = list[tuple[str, str | bytes | None]]


def partition_of(msg: Message) -> int:
    p = msg.partition()
    assert p is not None, "a consumed record has a partition"
    return p


def offset_of(msg: Message) -> int:
    o = msg.offset()
    assert o is not None, "a consumed record has an offset"
    return o
