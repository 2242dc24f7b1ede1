"""The log line of the offline tools (trainer, evaluator, benchmarks), configured once at each entry point."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PROGRESS_EVERY_S = 30.0  # the longest the trainer stays silent, whatever stderr is (a terminal, a file, compose logs)


def configure_logging(level: int | str = logging.INFO) -> None:
    """Timestamped lines on stderr; a no-op when the process already configured logging."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


@contextmanager
def timed_step(log: logging.Logger, name: str) -> Iterator[None]:
    """One line when the step starts, one with its time when it ends: a long step is named while it runs."""
    log.info("%s...", name)
    started = time.perf_counter()
    yield
    log.info("%s: %.1f s", name, time.perf_counter() - started)
