"""The model threads: a lone caller stays on one thread, concurrent calls spread over all of them."""

import asyncio
import threading
import time

import pytest

from app.model_workers import ModelWorkers


def _on_the_loop(workers: ModelWorkers, calls: int) -> list[int]:
    """The thread of each of ``calls`` calls made one after another as the batcher makes them: through
    run_in_executor, whose answer comes after the thread is counted free again (a bare Future's may not)."""

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(workers, threading.get_ident) for _ in range(calls)]

    return asyncio.run(main())


def test_calls_one_at_a_time_stay_on_the_first_thread():
    workers = ModelWorkers(2, "test-model")
    try:
        warm = [workers.submit(time.sleep, 0.05) for _ in range(2)]  # both threads started, as after the warm-up
        for future in warm:
            future.result(timeout=5)
        threads = set(_on_the_loop(workers, 20))
    finally:
        workers.shutdown()
    assert len(threads) == 1  # taking turns, or the longest idle first, would use both


def test_concurrent_calls_get_a_thread_each_and_every_thread_runs_the_initializer():
    started, release = threading.Barrier(3), threading.Event()
    initialised = []
    workers = ModelWorkers(2, "test-model", initializer=lambda tag: initialised.append((tag, threading.get_ident())),
                           initargs=("ready",))  # fmt: skip

    def hold() -> int:
        started.wait(timeout=5)  # both calls must be running at once to pass this barrier
        release.wait(timeout=5)
        return threading.get_ident()

    try:
        first, second = workers.submit(hold), workers.submit(hold)
        started.wait(timeout=5)
        release.set()
        assert first.result(timeout=5) != second.result(timeout=5)
        assert _on_the_loop(workers, 1) == [first.result()]  # both free again: the first thread
    finally:
        workers.shutdown()
    assert sorted(initialised) == sorted(("ready", ident) for ident in (first.result(), second.result()))


def test_a_call_after_shutdown_is_refused_and_leaves_the_counts_as_they_were():
    workers = ModelWorkers(2, "test-model")
    workers.shutdown()
    with pytest.raises(RuntimeError):
        workers.submit(threading.get_ident)
    assert workers._busy == [0, 0]
