"""structlog set-up, done once at the program's edge (CLI or server start).

In JSON mode every line is one JSON object, exceptions included (their traceback is the
`exception` field, never loose lines). `capture_stdlib=True` sends the standard library's
logging (uvicorn, libraries) through the same processors, so a server's output is JSON
throughout. Every event passes through a `Redactor` before it is rendered: URL user-info,
tokens and credential headers never reach the log.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from analyzer.redaction import Redactor

LEVELS = ("debug", "info", "warning", "error")
_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def parse_level(level: str) -> int:
    """The numeric level of `debug`, `info`, `warning` or `error`; ValueError otherwise."""
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"choose one of {', '.join(LEVELS)}, got {level!r}")
    return int(getattr(logging, name.upper()))


def _redacting(redactor: Redactor) -> structlog.typing.Processor:
    def processor(logger: Any, method: str, event: Any) -> Any:
        return redactor.value(event)

    return processor


def configure(
    *,
    json: bool,
    level: str = "warning",
    redactor: Redactor | None = None,
    capture_stdlib: bool = False,
) -> None:
    numeric = parse_level(level) if level.strip().lower() in LEVELS else logging.WARNING
    redact = _redacting(redactor or Redactor())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if capture_stdlib:
        # One handler (one lock) writes every line, structlog's and the standard library's,
        # so lines from different threads never interleave.
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                *shared,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.stdlib.LoggerFactory(),
            cache_logger_on_first_use=False,
        )
        _capture_stdlib(numeric, shared, redact, renderer)
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _capture_stdlib(
    numeric: int,
    shared: list[structlog.typing.Processor],
    redact: structlog.typing.Processor,
    renderer: structlog.typing.Processor,
) -> None:
    """Route the standard library's records (uvicorn's included) through structlog's chain."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _STDLIB_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
