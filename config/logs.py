"""structlog set-up: one JSON object per line on stderr, with level and ISO timestamp.

Log events name customers and partners only by id, and never the client configuration
(it holds credentials). librdkafka's own lines reach the same log through `kafka_client_logger`,
which every Kafka client gets from `Settings.kafka_client_config`.
"""

from __future__ import annotations

import logging
import sys
import threading
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


class _KafkaClientHandler(logging.Handler):
    """Hands each librdkafka line to structlog as a `kafka_client` event.

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
