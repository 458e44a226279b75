"""structlog set-up: one JSON object per line on stderr, with level and ISO timestamp.

Log events name customers and partners only by id, and never the client configuration
(it holds credentials). librdkafka's own lines reach the same log through `kafka_client_logger`,
which every Kafka client gets from `Settings.kafka_client_config`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO, cast

import structlog

KAFKA_CLIENT_LOGGER: Final = "librdkafka"


class _Sink:
    """Where the logs go: the file given to `configure_logging`, else `sys.stderr` as it is at each write
    (pytest and rich's live display replace it after the logs are configured)."""

    def __init__(self) -> None:
        self.file: TextIO | None = None

    def write(self, text: str) -> int:
        return (self.file or sys.stderr).write(text)

    def flush(self) -> None:
        (self.file or sys.stderr).flush()


_SINK: Final = _Sink()
_KAFKA_CLIENT_LOGGER_LOCK: Final = threading.Lock()


def configure_logging(level: str = "INFO", *, json: bool = True, file: Path | None = None) -> None:
    """Route structlog (and the stdlib loggers of libraries) to stderr, or to `file`, at `level`."""
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        _SINK.file = file.open("a", buffering=1)  # open for the rest of the process
    numeric = logging.getLevelName(level)
    # libraries log through the standard library (the registry client's HTTP requests at INFO,
    # librdkafka's lines): only their warnings reach the log unless DEBUG is asked for
    logging.basicConfig(stream=_SINK, level=min(numeric, logging.WARNING), format="%(message)s")
    if numeric > logging.DEBUG:
        logging.getLogger().setLevel(logging.WARNING)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _SINK)),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


OUTAGE_LOG_INTERVAL_S: Final = 10.0
"""During an outage, at most one connection-error line per broker this often; the rest are counted."""

_CONNECTION_FACILITIES: Final = frozenset({"FAIL", "ERROR"})
"""librdkafka's facilities of a broker's connection errors: one line per reconnect attempt while it is away."""


class _OutageLimiter:
    """Collapses librdkafka's repeated connection errors into rate-limited lines, per broker address (every
    client of the process, and the bootstrap and numbered handles of one broker, share it).

    The first error of an outage is logged at once; then at most one per `OUTAGE_LOG_INTERVAL_S`, carrying
    how many like it were not logged before it; and `recovered` logs the end of the outage with the rest of
    the count. Nothing is dropped unseen: every suppressed line is counted in a line that is logged."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._outages: dict[str, list[float]] = {}
        """Broker address -> [first error at, last line logged at, errors, not logged since that line]."""

    def admit(self, broker: str) -> int | None:
        """None when this error is not to be logged; else how many were suppressed before it."""
        now = self._clock()
        with self._lock:
            outage = self._outages.get(broker)
            if outage is None:
                self._outages[broker] = [now, now, 1, 0]
                return 0
            outage[2] += 1
            if now - outage[1] < OUTAGE_LOG_INTERVAL_S:
                outage[3] += 1
                return None
            suppressed = int(outage[3])
            outage[1], outage[3] = now, 0
            return suppressed

    def recovered(self) -> None:
        """The clients work again (a transaction committed, partitions were assigned): one line per broker
        that had an outage, with the rest of its count."""
        self._end("kafka_broker_recovered")

    def unrecovered(self) -> None:
        """The process stops while brokers are still away: their counts are logged, not lost."""
        self._end("kafka_broker_outage_open")

    def _end(self, event: str) -> None:
        if not self._outages:  # the common case, once per batch: no lock, no work
            return
        now = self._clock()
        with self._lock:
            outages, self._outages = self._outages, {}
        log = get_logger(KAFKA_CLIENT_LOGGER)
        for broker, (first, _last, errors, suppressed) in sorted(outages.items()):
            seconds = round(now - first, 3)
            log.warning(event, broker=broker, errors=int(errors), suppressed=int(suppressed), seconds=seconds)


OUTAGES: Final = _OutageLimiter()


def _broker_of(message: str) -> str | None:
    """The broker address a connection-error line is about (`host:port/1: Connect to ...` -> `host:port`)."""
    name, sep, _rest = message.partition(": ")
    if not sep or "/" not in name:
        return None
    return name.partition("/")[0]


class _KafkaClientHandler(logging.Handler):
    """Hands each librdkafka line to structlog as a `kafka_client` event; connection errors go through
    `OUTAGES`.

    confluent-kafka calls `logger.log(level, "%s [%s] %s", facility, client name, text)`, the text
    starting with the librdkafka thread (`[thrd:main]: ...`).
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"message": record.getMessage()}
            if isinstance(record.args, tuple) and len(record.args) == 3:
                facility, client, text = (str(arg) for arg in record.args)
                thread, sep, rest = text.partition("]: ")
                if sep and thread.startswith("[thrd:"):
                    fields = {"facility": facility, "client": client, "thread": thread[6:], "message": rest}
                else:
                    fields = {"facility": facility, "client": client, "message": text}
                broker = _broker_of(fields["message"]) if facility in _CONNECTION_FACILITIES else None
                if broker is not None:
                    suppressed = OUTAGES.admit(broker)
                    if suppressed is None:
                        return
                    if suppressed:
                        fields["suppressed"] = suppressed
            get_logger(KAFKA_CLIENT_LOGGER).log(record.levelno, "kafka_client", **fields)
        except Exception:
            self.handleError(record)


def kafka_client_logger() -> logging.Logger:
    """The stdlib logger for confluent-kafka's `logger` setting, so that librdkafka's lines become JSON
    log events instead of raw `%4|...|FACILITY|...` lines on stderr. With it set, the client delivers
    its lines from poll(), consume() and flush(), in the thread that calls them."""
    logger = logging.getLogger(KAFKA_CLIENT_LOGGER)
    with _KAFKA_CLIENT_LOGGER_LOCK:  # clients are made from several threads: one handler, not two
        if not any(isinstance(handler, _KafkaClientHandler) for handler in logger.handlers):
            logger.addHandler(_KafkaClientHandler())
            logger.propagate = False  # rendered by structlog, not again by the root logger's handlers
    return logger
