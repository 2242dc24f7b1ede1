"""Admission by expected wait: under overload a request is answered or refused at once, never left to time out.

The forward pass here sleeps a fixed time per pass, so the batcher's capacity is known: 4 images per
50 ms pass, one worker, 80 images/s. Requests arrive far faster than that, with short deadlines.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import numpy as np
import pytest

from app.admission import Capacity
from app.batcher import Batcher
from app.errors import DeadlineExceeded, Overloaded, QueueFull
from tests.app.test_batcher import images_of, pixel_sums, run_batcher

PASS_S = 0.05


def slow_forward(images: np.ndarray) -> np.ndarray:
    time.sleep(PASS_S)
    return pixel_sums(images)


def test_capacity_follows_the_passes_and_estimates_the_wait() -> None:
    capacity = Capacity(workers=2)
    assert not capacity.measured
    for _ in range(50):
        capacity.record_pass(images=8, seconds=0.1)
    assert capacity.images_per_s == pytest.approx(160)
    assert capacity.expected_wait(ahead=160, images=0) == pytest.approx(1.1)  # drain, plus its own pass
    assert capacity.retry_after(ahead=400) == 3  # 2.5 s to drain, in whole seconds
    assert capacity.retry_after(ahead=0) == 1
    for _ in range(50):  # the machine slows down: the estimate follows within a few dozen passes
        capacity.record_pass(images=8, seconds=0.4)
    assert capacity.images_per_s == pytest.approx(40, rel=0.01)


def test_overload_gets_429s_at_once_and_no_accepted_request_times_out() -> None:
    """20x capacity for one second: every request is answered in time or refused at once, none 504."""

    async def one(batcher: Batcher, value: int) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await batcher.submit(images_of(value), start + 0.5)
        except (Overloaded, QueueFull) as exc:
            assert int(exc.headers["Retry-After"]) >= 1
            return "429", loop.time() - start
        except DeadlineExceeded:
            return "504", loop.time() - start
        return "200", loop.time() - start

    async def scenario(batcher: Batcher) -> list[tuple[str, float]]:
        await batcher.submit(images_of(0, 1, 2, 3), asyncio.get_running_loop().time() + 5)  # measure a pass
        outcomes = []
        for wave in range(20):  # 80 images every 50 ms against a capacity of 4 per 50 ms
            outcomes += await asyncio.gather(*(one(batcher, i % 200) for i in range(wave * 80, wave * 80 + 80)))
        return outcomes

    outcomes = run_batcher(scenario, slow_forward, max_batch_size=4, workers=1, max_queue=1000)
    statuses = Counter(status for status, _ in outcomes)
    slowest = {code: max(s for status, s in outcomes if status == code) for code in statuses}
    assert statuses["504"] == 0, (statuses, slowest)
    assert statuses["200"] >= 10 and statuses["429"] >= len(outcomes) / 2, statuses
    assert slowest["200"] < 0.5 and slowest["429"] < 0.05, slowest  # answered in time, or refused at once


def test_the_door_refuses_before_the_body_when_the_queue_is_already_too_long() -> None:
    async def scenario(batcher: Batcher) -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        await batcher.submit(images_of(1, 2, 3, 4), loop.time() + 5)  # measures 4 images per 50 ms
        waiting = [asyncio.ensure_future(batcher.submit(images_of(*range(4)), loop.time() + 5)) for _ in range(10)]
        await asyncio.sleep(0)  # 40 images queued: about 0.5 s of work ahead
        batcher.admit_arrival(time_left=5)  # fits in 5 s
        with pytest.raises(Overloaded) as refused:
            batcher.admit_arrival(time_left=0.5)
        await asyncio.gather(*waiting)
        return refused.value.headers["Retry-After"], batcher.metrics.shed._value.get()

    retry_after, shed = run_batcher(scenario, slow_forward, max_batch_size=4, workers=1)
    assert retry_after == "1" and shed == 1


def test_an_idle_service_admits_even_after_a_pass_slower_than_the_deadline() -> None:
    """One slow pass must not make the estimate refuse everything: idle, the next request runs and is measured."""
    durations = iter([1.0] + [0.0] * 10)

    def forward(images: np.ndarray) -> np.ndarray:
        time.sleep(next(durations))
        return pixel_sums(images)

    async def scenario(batcher: Batcher) -> float:
        loop = asyncio.get_running_loop()
        await batcher.submit(images_of(1), loop.time() + 5)  # the slow pass: 1 s
        for value in range(3):  # a deadline far under that one pass: still served, idle as it is
            await batcher.submit(images_of(value), loop.time() + 0.5)
        return batcher.capacity.pass_seconds

    assert run_batcher(scenario, forward, workers=1) < 1.0  # the estimate moved on
