"""Structured logs: one JSON object per line, one line per event.

A line is a constant name in `msg` (`delivery`, `review`, `review.retry`...) plus fields passed
with `log_event` (`event` is GitHub's event: `pull_request`, `ping`); nothing is formatted into
the message, so every line can be filtered by field.
Tokens, the webhook secret and the private key are never given to a logger: the scheduler and
the token cache log installation ids and outcomes only.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

__all__ = ["LOGGER_NAME", "JsonFormatter", "configure_logging", "log_event", "uvicorn_log_config"]

LOGGER_NAME = "asyncguard.server"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def log_event(logger: logging.Logger, level: int, msg: str, /, **fields: Any) -> None:
    """Log the line `msg` with `fields` (None values left out)."""
    if logger.isEnabledFor(level):
        kept = {key: value for key, value in fields.items() if value is not None}
        logger.log(level, msg, extra={"fields": kept})


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and the server: JSON lines on stdout, uvicorn's
    per-request access log off (the `delivery` event says more)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "asyncguard": {"handlers": ["json"], "level": level.upper(), "propagate": False},
        },
    }


def configure_logging(level: str, name: str = "asyncguard") -> None:
    """JSON lines on stdout for logger `name` and below ("" is the root logger, as in a worker
    process, where anything the review logs should come out the same way)."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    if name:
        logger.propagate = False
