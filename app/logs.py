"""The service's log lines: uvicorn's style ("INFO:     app.main: ready") or one JSON object per line.

Every line written while a request is handled carries its ID (``REQUEST_ID``, set by app/request_log.py):
appended as ``[id]`` to a text line, the ``request_id`` key of a JSON one. ``configure_logging`` sets up the
service's lines and ``uvicorn_log_config`` uvicorn's, so that both read alike in either format.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Literal

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import DefaultFormatter

LOG_FORMAT = "%(levelprefix)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]
ACCESS_LOGGER = "app.access"  # one line per request (app/request_log.py)

# The ID of the request this task is handling; each request runs in its own task, so its own context.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """On a handler: give every record the ID of the request it was logged in (None outside any request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # the access line brings its own
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(DefaultFormatter):
    """uvicorn's formatter, with `` [request ID]`` after the message when the line is about a request."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # before any traceback, which comes after
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [{request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, an access line's fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)  # the access line's method, path, status, ...
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # ensure_ascii: whatever a message holds, the line is one line of ASCII (newlines escaped)
        return json.dumps(entry, default=str)


def log_handler(log_format: LogFormat, stream: Any = None) -> logging.Handler:
    """A stream handler (stderr by default) writing ``log_format`` lines, each with its request's ID."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Once, at the entry point; a no-op when the process already configured logging."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(log_format)])


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's ``log_config``: its own lines in the service's format; its access log off (app/request_log.py's
    line replaces it).

    Text: uvicorn's configuration and look, with the request's ID appended. JSON: uvicorn's loggers hand their
    records to the root logger, whose handler (``configure_logging``) writes them as JSON.
    """
    if log_format == "json":
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {
                "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
                "uvicorn.error": {"level": "INFO"},
                "uvicorn.access": {"handlers": [], "propagate": False},
            },
        }
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.TextFormatter"
    config["filters"] = {"request_id": {"()": f"{__name__}.RequestIdFilter"}}
    config["handlers"]["default"]["filters"] = ["request_id"]
    config["loggers"]["uvicorn.access"] = {"handlers": [], "propagate": False}
    return config


def configure_uvicorn_logging(log_format: LogFormat) -> None:
    """For a uvicorn the service did not configure (``uvicorn --factory app.main:factory``): as alexnet-serve's."""
    logging.config.dictConfig(uvicorn_log_config(log_format))
