"""structlog set-up: one JSON object per line on stderr, with level and ISO timestamp.

Log events name customers and partners only by id, and never the client configuration
(it holds credentials).
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog (and the stdlib loggers of libraries) to stderr at `level`."""
    numeric = logging.getLevelName(level)
    # libraries log through the standard library (the registry client's HTTP requests at INFO):
    # only their warnings reach the log unless DEBUG is asked for
    logging.basicConfig(stream=sys.stderr, level=min(numeric, logging.WARNING), format="%(message)s")
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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
