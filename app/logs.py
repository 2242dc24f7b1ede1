"""The service's log lines, in uvicorn's style ("INFO:     app.main: ready") so they read as one log with its own."""

from __future__ import annotations

import logging

from uvicorn.logging import DefaultFormatter

LOG_FORMAT = "%(levelprefix)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Once, at the entry point; a no-op when the process already configured logging."""
    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
