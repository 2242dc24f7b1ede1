"""The thread policy: a lone caller stays on one thread with every core, concurrent calls spread over the threads
with their share; the plan by device and settings."""

import asyncio
import threading
import time

import pytest
import torch

from app.config import Settings
from app.model_threads import ModelThreads, ThreadPlan, plan_threads

# Two model threads on a CPU: one torch thread each beside the other, two alone
PLAN = ThreadPlan(workers=2, pass_size=16, threads=1, lone_threads=2, lower_priority=False)


def _on_the_loop(workers: ModelThreads, calls: int) -> list[int]:
    """The thread of each of ``calls`` calls made one after another as the batcher makes them: through
    run_in_executor, whose answer comes after the thread is counted free again (a bare Future's may not)."""

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(workers, threading.get_ident) for _ in range(calls)]

    return asyncio.run(main())


def test_calls_one_at_a_time_stay_on_the_first_thread():
    workers = ModelThreads(PLAN, "test-model")
    try:
        warm = [workers.submit(time.sleep, 0.05) for _ in range(2)]  # both threads started, as after the warm-up
        for future in warm:
            future.result(timeout=5)
        threads = set(_on_the_loop(workers, 20))
    finally:
        workers.shutdown()
    assert len(threads) == 1  # taking turns, or the longest idle first, would use both


def test_a_pass_that_starts_alone_gets_every_core_one_beside_another_its_share():
    """torch's real per-thread count, read inside the passes: 2 for a pass with no other under way, 1 for one beside
    another (the first keeps its 2: a pass's count is set when it starts); alone again after. The batcher says
    how many others there are (tests/app/test_batching.py runs it through the service)."""
    started, release = threading.Event(), threading.Event()
    workers = ModelThreads(PLAN, "test-model")

    def hold() -> int:
        started.set()
        assert release.wait(timeout=5)
        return torch.get_num_threads()

    async def passes() -> tuple[int, int, int]:
        first = workers.run(hold, others=0)  # a future: under way at once
        assert await asyncio.to_thread(started.wait, 5)
        beside = await workers.run(torch.get_num_threads, others=1)  # the second thread, while the first holds
        release.set()
        return await first, beside, await workers.run(torch.get_num_threads, others=0)

    before = torch.get_num_threads()
    try:
        assert asyncio.run(passes()) == (2, 1, 2)
    finally:
        release.set()
        workers.shutdown()
    assert torch.get_num_threads() == before  # set in the model threads only, never in this one


def test_the_plan_by_device_and_settings(tiny_checkpoint):
    settings = Settings(checkpoint=str(tiny_checkpoint))
    cuda = plan_threads(settings, torch.device("cuda"))
    assert (cuda.workers, cuda.pass_size, cuda.threads, cuda.lower_priority) == (1, 128, 0, False)
    cpu = plan_threads(settings, torch.device("cpu"))
    assert cpu.pass_size == 16 and cpu.lower_priority and cpu.lone_threads == cpu.threads * cpu.workers
    set_by_hand = Settings(checkpoint=str(tiny_checkpoint), torch_threads=3, max_batch_size=7, model_workers=2)
    by_hand = plan_threads(set_by_hand, torch.device("cpu"))
    assert (by_hand.workers, by_hand.pass_size, by_hand.threads, by_hand.lone_threads) == (2, 7, 3, 3)


def test_a_call_after_shutdown_is_refused_and_leaves_the_counts_as_they_were():
    workers = ModelThreads(PLAN, "test-model")
    workers.shutdown()
    with pytest.raises(RuntimeError):
        workers.submit(threading.get_ident)
    assert workers._busy == [0, 0]
