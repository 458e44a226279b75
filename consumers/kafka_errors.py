"""How the service reacts to client errors: the three transactional error classes of librdkafka.

`fatal()` → the producer is unusable: the process exits non-zero so a supervisor restarts it.
`txn_requires_abort()` → abort the transaction, roll state back, re-read the batch.
A timed-out commit or abort leaves the outcome unknown: the service drops its clients and
state and starts a new session (a new producer with the same transactional.id fences the
old epoch; state is restored from the committed changelog, so nothing is lost or doubled).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from config.errors import CommandError


class ServiceError(CommandError):
    """Base of the service's own errors."""

    reason = "SERVICE_ERROR"
    exit_code = 3


class FatalClientError(ServiceError):
    """The Kafka client cannot go on (fenced producer, fatal transactional state)."""

    reason = "FATAL_CLIENT_ERROR"


class UncertainTransaction(ServiceError):
    """A commit or abort did not complete in time: its outcome is unknown (a new session follows)."""

    reason = "UNCERTAIN_TRANSACTION"


class RecordsRefused(ServiceError):
    """The brokers refused records of the batch for what they are (e.g. their size): the batch is repeated
    without the accounts they belong to."""

    reason = "RECORDS_REFUSED"


def kafka_error(exc: KafkaException) -> KafkaError | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


_FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


def is_fenced(err: KafkaError | None) -> bool:
    """The producer's epoch was bumped: by a newer producer with its transactional.id, or by the
    transaction coordinator aborting a transaction that outlived transaction.timeout.ms."""
    return err is not None and err.code() in _FENCED_CODES


def is_fatal(err: KafkaError | None) -> bool:
    """Fatal, or a transactional error that is neither abortable nor retriable (treated as fatal)."""
    if err is None:
        return True
    return bool(err.fatal()) or not (err.txn_requires_abort() or err.retriable())


_RECORD_REFUSAL_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
    }
)


def is_record_refusal(err: KafkaError | None) -> bool:
    """The brokers (or the client, before sending) refused one record for what it is, e.g. its size: producing
    the same record again is refused again, so the service refuses the record's account instead of retrying."""
    return err is not None and err.code() in _RECORD_REFUSAL_CODES
