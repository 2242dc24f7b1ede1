"""The model threads: one single-thread executor each, and every pass goes to the first free one.

With a ThreadPoolExecutor the idle thread that takes the next call is whichever its queue wakes, so a lone
client's passes moved between the two model threads. On the 2-core dev machine one client saw p99
33.8-35.4 ms that way against 26.4-28.0 ms with this order (three interleaved rounds, docs/benchmarks.md).
Our reading, not traced: each model thread has its own team of torch (OpenMP) threads, and a team left
idle has gone to sleep by the time it is needed again. Sending each pass to the lowest-numbered free thread keeps a lone
client on one warm team; under load every thread is busy and the order does not matter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any


class ModelWorkers(Executor):
    """``workers`` model threads; ``submit`` runs the call on the free thread with the lowest number."""

    def __init__(
        self,
        workers: int,
        name: str,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self._threads = [
            ThreadPoolExecutor(1, name, initializer=initializer, initargs=initargs) for _ in range(workers)
        ]
        self._busy = [0] * workers  # calls submitted to each thread and not yet done
        self._lock = threading.Lock()  # done callbacks run in the model threads

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            index = self._busy.index(min(self._busy))  # the first free thread; if none, the first least busy
            self._busy[index] += 1
        try:
            future = self._threads[index].submit(fn, *args, **kwargs)
        except BaseException:  # shut down: nothing was queued
            self._done(index)
            raise
        future.add_done_callback(lambda _: self._done(index))
        return future

    def _done(self, index: int) -> None:
        with self._lock:
            self._busy[index] -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for thread in self._threads:
            thread.shutdown(wait, cancel_futures=cancel_futures)
