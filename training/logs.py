"""The log line of the offline tools (trainer, evaluator, benchmarks), configured once at each entry point."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int | str = logging.INFO) -> None:
    """Timestamped lines on stderr; a no-op when the process already configured logging."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
