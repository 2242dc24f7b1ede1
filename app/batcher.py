"""Batching across requests: concurrent uploads share forward passes, run off the event loop.

The batcher moves arrays and nothing else: each request submits its images, an (n, ...) array, and gets back
its rows of ``forward``'s output, (n, ...), in order. It knows nothing of classes, top-k or responses;
what a request asked for is applied to its rows after the pass, by the route.

How a batch forms. Requests queue their decoded images. When a model worker is free, the batcher takes
queued images, oldest first, up to ``max_batch_size`` per pass; a request with more images than fit is
split over several passes (and so over several workers) and answered when its last piece is done. If a
pass is not full while the service is busy (uploads being received or decoded, or another pass running),
it waits for more, at most ``max_wait_s``; when nothing else is happening it runs at once, so a lone
request never waits. While a pass runs, the next one fills (the event loop keeps receiving and decoding):
that overlap is where the throughput comes from. With ``workers`` > 1 that many passes run at once, each
in its own thread (on a CPU, two single-threaded passes of 16 keep two cores busier than one two-threaded
pass of 32: see docs/serving.md). Without batching, a pass holds one whole request and nothing else.

Back-pressure. A request is refused at once (429, with a ``Retry-After``) when the model could not answer
it before its deadline at the rate it is draining now (``app.admission``): checked at the door, before the
body is read, and again when its images join the queue. The queue is also bounded in images. A request
still queued at its deadline (the rate fell after it was admitted) is answered 504 and never reaches the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.admission import SAFETY, Capacity
from app.errors import DeadlineExceeded, InternalError, NotReady, Overloaded, QueueFull
from app.metrics import Metrics
from app.model_threads import ModelThreads

logger = logging.getLogger(__name__)

Forward = Callable[[np.ndarray], np.ndarray]  # (N, ...) images -> (N, ...) outputs, one row per image, in order


@dataclass(eq=False)
class Job:
    """One request's images waiting for the model; its pieces may run in different passes."""

    images: np.ndarray  # (n, ...)
    deadline: float  # event-loop time
    enqueued: float  # event-loop time
    future: asyncio.Future[np.ndarray]
    forward: Forward  # the model it runs through: a pass holds pieces of one forward only
    taken: int = 0  # images handed to passes so far
    withdrawn: bool = False  # out of the queue unrun (expired, cancelled or timed out): nothing of it is queued
    output: np.ndarray | None = None  # (n, ...) rows, filled as the job's pieces return
    unanswered: int = 0  # images whose pass has not returned yet

    def __post_init__(self) -> None:
        self.unanswered = len(self.images)

    @property
    def size(self) -> int:
        return len(self.images)

    @property
    def queued(self) -> int:
        return 0 if self.withdrawn else self.size - self.taken


@dataclass(frozen=True)
class Piece:
    """Images ``start:stop`` of one job, in one pass."""

    job: Job
    start: int
    stop: int

    @property
    def images(self) -> np.ndarray:
        return self.job.images[self.start : self.stop]  # a view, no copy


class Batcher:
    """Runs ``forward`` on batches gathered from concurrent ``submit`` calls, ``workers`` passes at a time."""

    def __init__(
        self,
        forward: Forward,
        executor: ModelThreads,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        batching: bool = True,
        workers: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        self.forward = forward
        self.executor = executor  # has ``workers`` threads (app.model_threads: which thread, how many torch threads)
        self.workers = workers
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.batching = batching
        self.metrics = metrics or Metrics()
        self.capacity = Capacity(workers)
        self._queue: deque[Job] = deque()
        self._queued_images = 0
        self._waiter: asyncio.Future[None] | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._free_workers: asyncio.Semaphore | None = None
        self._passes: dict[asyncio.Task[None], float] = {}  # running passes and when they started (loop time)
        # Requests being received or decoded, about to submit (leaving wakes the pass being formed, which may
        # stop waiting for them); and of those, the ones whose body is in
        self._arriving = _Counting(on_exit=self._wake)
        self._decoding = _Counting()
        self.last_expected_wait = 0.0  # seconds: the last admission estimate
        # Read when /metrics is scraped, not set per request: a gauge's set takes a lock, several times a request
        self.metrics.queue_depth.set_function(lambda: self._queued_images)
        self.metrics.expected_wait.set_function(lambda: self.last_expected_wait)

    def start(self) -> None:
        self._free_workers = asyncio.Semaphore(self.workers)
        self._task = asyncio.get_running_loop().create_task(self._run_forever(), name="alexnet-batcher")

    async def stop(self) -> None:
        """Refuse new work, finish everything queued and running, then return."""
        self._stopping = True
        self._wake()
        if self._task is not None:
            await self._task

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def admit_arrival(self, time_left: float) -> None:
        """At the door, before the body is read: 429 unless one more image could be answered in ``time_left`` s.

        The requests being decoded count as ahead of this one, at the average images per request (those
        still receiving do not: a stalled client must not make the service refuse others); the exact check,
        with this request's images, is ``submit``'s.
        """
        ahead = self._queued_images + self._decoding.count * self.capacity.request_images
        self._admit(ahead, 1, time_left)

    def _admit(self, ahead: float, images: int, time_left: float) -> None:
        if not self.capacity.measured:
            return  # just started: the queue's length alone bounds admission until passes are measured
        if not self._passes and not self._queued_images:
            # Idle: this request runs at once, whatever the estimate says. Refusing it would also freeze
            # the estimate (no pass, no new measurement) after one slow pass: every later request refused.
            return
        wait = self.capacity.expected_wait(ahead, images, self._worker_free_in())
        self.last_expected_wait = wait
        if wait > SAFETY * time_left:
            self.metrics.shed.inc()
            raise Overloaded(wait, time_left, self.capacity.retry_after(ahead))

    def _worker_free_in(self) -> float:
        """Seconds until a model worker is expected to be free: 0 if one is, else the soonest end of a pass."""
        if len(self._passes) < self.workers:
            return 0.0
        now = asyncio.get_running_loop().time()
        return max(0.0, min(self._passes.values()) + self.capacity.pass_seconds - now)

    def arriving(self) -> _Counting:
        """Around receiving and decoding a request: tells the batcher a submit is on its way."""
        return self._arriving

    def decoding(self) -> _Counting:
        """Around decoding a request whose body has arrived: its images will join the queue shortly."""
        return self._decoding

    async def submit(self, images: np.ndarray, deadline: float, forward: Forward | None = None) -> np.ndarray:
        """Queue one request's images (n, ...); return its n rows of output, in order. Raises 429/503/504.

        ``forward``: the model the request runs through (default: the batcher's own). Requests of different
        forwards (a model loaded while others were queued) never share a pass."""
        if self._stopping:
            raise NotReady("the service is shutting down")
        if self._queued_images + len(images) > self.max_queue:
            self.metrics.shed.inc()
            raise QueueFull(self._queued_images, self.max_queue, self.capacity.retry_after(self._queued_images))
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.capacity.record_request(len(images))
        if now >= deadline:
            raise DeadlineExceeded(DeadlineExceeded.BEFORE_QUEUE)
        self._admit(self._queued_images, len(images), deadline - now)
        job = Job(images, deadline, now, loop.create_future(), forward or self.forward)
        self._queue.append(job)
        self._queued_images += job.size
        self._wake()
        try:
            async with asyncio.timeout_at(deadline):  # cheaper than wait_for: no waiter future of its own
                return await job.future
        except TimeoutError:
            ran = job.taken > 0
            self._withdraw(job)
            raise DeadlineExceeded(DeadlineExceeded.LATE if ran else DeadlineExceeded.NOT_RUN) from None
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    def _withdraw(self, job: Job) -> None:
        """Take what is still queued of a job out of the queue (its running pieces finish unheard)."""
        if job.queued:
            self._queue.remove(job)
            self._queued_images -= job.queued
            job.withdrawn = True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, self._wake) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _run_forever(self) -> None:
        assert self._free_workers is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._free_workers.acquire()  # a batch is only taken when a worker can run it at once
            batch = await self._next_batch()
            if not batch:
                self._free_workers.release()
                if batch is None:
                    break
                continue
            task = loop.create_task(self._run(batch))
            self._passes[task] = loop.time()
        if self._passes:
            await asyncio.wait(list(self._passes))

    def _pass_ended(self) -> None:
        """Called by the pass itself before it answers: a request answered by it, submitting again at once,
        finds its worker free and the service idle (a done callback would run after that request)."""
        self._passes.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        assert self._free_workers is not None
        self._free_workers.release()

    async def _next_batch(self) -> list[Piece] | None:
        """The next pass's pieces; None once stopping with nothing left. Empty when every job had expired."""
        while not self._queue:
            if self._stopping:
                return None
            await self._wait()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.max_wait_s
        batch: list[Piece] = []
        images = 0
        limit = self._pass_limit()
        while True:
            images = self._take(batch, images, limit)
            if not self.batching or images >= limit or self._queue:
                break  # full, or (without batching) the next request starts the next pass
            remaining = give_up_at - loop.time()
            idle = self._arriving.count == 0 and not self._passes
            if idle or remaining <= 0 or self._stopping:
                break  # nothing else is happening (a lone request never waits), or we waited long enough
            await self._wait(remaining)
        return batch

    def _pass_limit(self) -> int:
        """Images for the pass being formed: the queue shared fairly among the workers free right now.

        Without this, one free worker would take everything queued while the others sit idle (8 queued
        images: one pass of 8 on one core, instead of two passes of 4 on two).
        """
        free = self.workers - len(self._passes)  # this pass's worker included
        if free <= 1:
            return self.max_batch_size  # the last free worker: fill the pass (waiting a little if busy)
        fair_share = -(-self._queued_images // free)  # ceiling division
        return max(1, min(self.max_batch_size, fair_share))

    def _take(self, batch: list[Piece], images: int, limit: int) -> int:
        """Move queued images into ``batch`` while they fit; answer expired jobs 504. Returns the image count."""
        now = asyncio.get_running_loop().time()
        while self._queue:
            job = self._queue[0]
            if batch and not self.batching:
                break  # without batching a pass holds one request
            room = limit - images if self.batching else job.queued
            if room <= 0:
                break
            if job.taken == 0 and self._expired(job, now):
                self._queue.popleft()
                self._queued_images -= job.size
                job.withdrawn = True  # so that the request's own expiry does not remove it again
                continue
            if batch and job.forward != batch[0].job.forward:  # (bound methods: equal, never the same object)
                break  # another model's request: the next pass
            if job.taken == 0:
                self.metrics.queue_wait.observe(now - job.enqueued)
            count = min(room, job.queued)
            batch.append(Piece(job, job.taken, job.taken + count))
            job.taken += count
            images += count
            self._queued_images -= count
            if not job.queued:
                self._queue.popleft()
        return images

    @staticmethod
    def _expired(job: Job, now: float) -> bool:
        """A job whose request gave up (cancelled), or is past its deadline: it must not reach the model."""
        if job.future.done():
            return True
        if now >= job.deadline:
            job.future.set_exception(DeadlineExceeded(DeadlineExceeded.NOT_RUN))
            return True
        return False

    async def _run(self, batch: list[Piece]) -> None:
        size = sum(piece.stop - piece.start for piece in batch)
        start = time.perf_counter()
        try:
            images = [p.images for p in batch]
            forward = batch[0].job.forward
            outputs = await self.executor.run(self._forward_batch, forward, images, others=len(self._passes) - 1)
            if len(outputs) != size:
                raise ValueError(f"forward returned {len(outputs)} rows for {size} images")
        except Exception:
            logger.exception("forward pass over %d requests failed", len(batch))
            for piece in batch:
                if not piece.job.future.done():
                    piece.job.future.set_exception(InternalError())
            return
        finally:
            self._pass_ended()  # before the answers below, which is what this is for
        seconds = time.perf_counter() - start
        self.capacity.record_pass(size, seconds)
        self.metrics.forward_seconds.observe(seconds)
        self.metrics.batch_size.observe(size)
        self.metrics.forward_passes.inc()
        self.metrics.images.inc(size)
        offset = 0
        for piece in batch:
            rows = outputs[offset : offset + piece.stop - piece.start]  # a view, no copy
            offset += len(rows)
            self._answer(piece, rows)

    @staticmethod
    def _answer(piece: Piece, rows: np.ndarray) -> None:
        """Put a piece's rows in its job's output; answer the request when its last piece is in."""
        job = piece.job
        if len(rows) == job.size:
            job.output = rows  # the whole job ran in this pass: nothing to assemble
        else:
            if job.output is None:
                job.output = np.empty((job.size, *rows.shape[1:]), dtype=rows.dtype)
            job.output[piece.start : piece.stop] = rows
        job.unanswered -= len(rows)
        if job.unanswered == 0 and not job.future.done():
            job.future.set_result(job.output)

    @staticmethod
    def _forward_batch(forward: Forward, images: list[np.ndarray]) -> np.ndarray:
        # In the model thread: the concatenation copies a few KB per image, off the event loop too.
        batch = images[0] if len(images) == 1 else np.concatenate(images)  # (N, ...)
        return forward(batch)


class _Counting:
    """``Batcher.arriving()`` and ``decoding()``: how many requests are inside the block. A plain class, not
    @contextmanager, whose generator cost about 20 us a request."""

    def __init__(self, on_exit: Callable[[], None] | None = None) -> None:
        self.count = 0
        self.on_exit = on_exit

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.on_exit is not None:
            self.on_exit()
