"""The batcher on its own: arrays in, arrays out, with a forward pass that is not a model at all.

It must know nothing of classes, top-k or responses: here ``forward`` sums each image's pixels, and every
request must get back exactly its own sums, in order, however its images were spread over passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from app.batcher import Batcher, Job
from app.errors import DeadlineExceeded
from app.model_threads import ModelThreads, ThreadPlan


def pixel_sums(images: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N,) int64: one number per image, which only that image determines."""
    return images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)


def run_batcher(scenario: Callable[[Batcher], Awaitable[Any]], forward=pixel_sums, **options: Any) -> Any:
    """Run ``scenario(batcher)`` against a started batcher with two worker threads, then drain it."""
    settings = {"max_batch_size": 16, "max_wait_s": 0.01, "max_queue": 64, "workers": 2, **options}

    async def main() -> Any:
        pool = ModelThreads(ThreadPlan(settings["workers"], 16, threads=0, lone_threads=0, lower_priority=False))
        try:
            batcher = Batcher(forward, pool, **settings)
            batcher.start()
            try:
                return await scenario(batcher)
            finally:
                await batcher.stop()
        finally:
            pool.shutdown()

    return asyncio.run(main())


def images_of(*values: int, size: int = 4) -> np.ndarray:
    """One (size, size, 3) uint8 image per value, every pixel that value."""
    return np.stack([np.full((size, size, 3), v, dtype=np.uint8) for v in values])


def test_each_request_gets_its_own_rows_in_order_across_passes() -> None:
    sizes: list[int] = []

    def forward(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return pixel_sums(images)

    requests = [images_of(*range(start, start + n)) for start, n in ((0, 1), (10, 5), (20, 3), (40, 7), (60, 1))]

    async def scenario(batcher: Batcher) -> list[np.ndarray]:
        deadline = asyncio.get_running_loop().time() + 30
        return await asyncio.gather(*(batcher.submit(r, deadline) for r in requests))

    answers = run_batcher(scenario, forward, max_batch_size=4)
    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, pixel_sums(request))  # its own sums, in its order
    assert max(sizes) <= 4 and sum(sizes) == sum(len(r) for r in requests)  # 17 images in passes of at most 4


def test_outputs_of_any_shape_and_dtype_pass_through() -> None:
    def forward(images: np.ndarray) -> np.ndarray:
        sums = pixel_sums(images).astype(np.float32)
        return np.stack([sums, -sums], axis=1)  # (N, 2)

    async def scenario(batcher: Batcher) -> np.ndarray:
        return await batcher.submit(images_of(1, 2, 3), asyncio.get_running_loop().time() + 30)

    answer = run_batcher(scenario, forward, max_batch_size=2)  # split 2 + 1: assembled from two passes
    assert answer.dtype == np.float32 and answer.shape == (3, 2)
    np.testing.assert_array_equal(answer[:, 0], pixel_sums(images_of(1, 2, 3)))


def test_queued_images_are_shared_among_free_workers() -> None:
    """8 images queued while both workers are free: two passes of 4, not one pass of 8 and an idle worker."""
    sizes: list[int] = []

    def forward(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return pixel_sums(images)

    async def scenario(batcher: Batcher) -> list[np.ndarray]:
        deadline = asyncio.get_running_loop().time() + 30
        return await asyncio.gather(*(batcher.submit(images_of(i), deadline) for i in range(8)))

    answers = run_batcher(scenario, forward)
    assert [int(a[0]) for a in answers] == [int(pixel_sums(images_of(i))[0]) for i in range(8)]
    assert sizes == [4, 4]


def test_a_forward_that_returns_the_wrong_number_of_rows_is_an_internal_error() -> None:
    async def scenario(batcher: Batcher) -> None:
        await batcher.submit(images_of(1, 2), asyncio.get_running_loop().time() + 30)

    with pytest.raises(Exception, match="internal server error"):
        run_batcher(scenario, lambda images: pixel_sums(images)[:1], workers=1)  # one pass of both images


@pytest.mark.parametrize("first", ["request_timed_out", "batcher_expired_it"])
def test_the_two_expiry_paths_of_a_queued_job_never_collide(first: str) -> None:
    """A queued job can be given up by its request (its wait timed out) and by the batcher (it saw it expired),
    in either order in the same turn of the event loop: both must leave the queue consistent, no error."""

    async def scenario(batcher: Batcher) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        job = Job(images_of(1, 2, 3), loop.time() - 1, loop.time(), loop.create_future(), batcher.forward)
        batcher._queue.append(job)
        batcher._queued_images += job.size
        if first == "request_timed_out":
            job.future.cancel()  # what asyncio.wait_for does at the deadline, before it raises TimeoutError
        batcher._take([], 0, limit=16)  # the batcher forms a pass: the job is expired and must not run
        batcher._withdraw(job)  # the request's own handler of its TimeoutError
        if first == "batcher_expired_it":
            assert isinstance(job.future.exception(), DeadlineExceeded)
        return len(batcher._queue), batcher.queued_images

    assert run_batcher(scenario) == (0, 0)
