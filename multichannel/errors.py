"""One error hierarchy for bad input, each kind with the stable reason code of the contract.

The codes travel in the dead-letter topic's `error.reason` header and in `classify`'s
`dead_letter` lines, so they never change once published.
"""

from __future__ import annotations

from typing import ClassVar

MAX_MESSAGE_CHARS = 1000
"""Longest `message` kept: it quotes input values, and it travels in a dead letter's header, a log line
and a line on stderr, so a huge bad value must not make a huge message."""


class InvalidEvent(Exception):
    """An input record that cannot be applied; it goes to the dead-letter topic."""

    reason: ClassVar[str] = "INVALID_EVENT"

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        super().__init__(message)
        self.message = message


class SchemaMismatch(InvalidEvent):
    """Bytes that are not a record of the topic's schema: bad JSON, wrong magic byte, unknown schema id."""

    reason = "SCHEMA_MISMATCH"


class UnknownEventType(InvalidEvent):
    """A well-formed record whose `event_type` names no event of the contract."""

    reason = "UNKNOWN_EVENT_TYPE"


class InvalidField(InvalidEvent):
    """A missing, mistyped or impossible field (e.g. `term_end` not after `term_start`)."""

    reason = "INVALID_FIELD"


class KeyMismatch(InvalidEvent):
    """The record key differs from the payload's `customer_id` (or `partner_id` on the partner topic)."""

    reason = "KEY_MISMATCH"


class RecordRefused(InvalidEvent):
    """A valid event whose account's output or state record the brokers do not take (larger than the
    target topic's record size limit): the account's events of the batch are not applied, so that the
    partition goes on. Raised by the service only, never by the core."""

    reason = "RECORD_REFUSED"


REASON_CODES: tuple[str, ...] = tuple(
    cls.reason for cls in (SchemaMismatch, UnknownEventType, InvalidField, KeyMismatch, RecordRefused)
)
