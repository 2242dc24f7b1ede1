"""Where the model's passes run: how many at once, of how many images, with how many torch threads, at what
priority, and on which thread. The thread policy, in one place; the batcher only hands passes to ``ModelThreads``.

On a CPU the passes and the event loop share the cores:
- Two single-threaded passes beat one two-threaded pass on the 2-core dev machine (no barrier waits between
  threads, and the event loop steals a core from one pass, not from both): docs/serving.md. Their size, 16
  images each, peaked there (docs/benchmarks.md).
- A pass that starts while no other runs uses every core: a lone request in one of two single-threaded passes
  took 37 ms against 25 ms on both cores (batch 1, docs/benchmarks.md); under load the passes overlap and each
  keeps its share. torch's thread count is per thread, so it is set in the model thread before each pass.
- The model threads run at a lower priority than the event loop: under overload the loop must win, to accept
  connections, shed what cannot be served with a 429 in microseconds, answer /health/live and feed the model;
  starved, it lets connections pile up in the kernel's accept queue, where no deadline can see them
  (docs/reliability.md). With the cores free, nothing changes.
- Each pass goes to the first free thread, not to whichever idled longest: with a ThreadPoolExecutor a lone
  client's passes moved between the two threads, and one client saw p99 33.8-35.4 ms that way against
  26.4-28.0 ms with this order (three interleaved rounds, docs/benchmarks.md). Our reading, not traced: each
  model thread has its own team of torch (OpenMP) threads, and a team left idle has gone to sleep by the time
  it is needed again. Under load every thread is busy and the order does not matter.
On a GPU: one pass at a time of 128 images, large enough to fill the GPU, small enough to keep a pass in the
milliseconds; torch's default threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from app.config import Settings

MODEL_THREAD_NICENESS = 5  # CPU model threads: about a third of the event loop's share of a contended core
CPU_PASS_SIZE = 16
CUDA_PASS_SIZE = 128


@dataclass(frozen=True)
class ThreadPlan:
    workers: int  # passes at once, each in a thread of its own
    pass_size: int  # images per pass at most (with batching)
    threads: int  # torch threads of a pass beside another (0: torch's default, untouched)
    lone_threads: int  # torch threads of a pass that starts alone
    lower_priority: bool  # the model threads yield to the event loop (a CPU)


def plan_threads(settings: Settings, device: torch.device) -> ThreadPlan:
    """The settings where given (``ALEXNET_MODEL_WORKERS``, ``_TORCH_THREADS``, ``_MAX_BATCH_SIZE``), else the
    measured defaults of the device's kind; a thread count set by hand is kept for every pass."""
    if device.type != "cpu":
        workers, pass_size = settings.model_workers or 1, settings.max_batch_size or CUDA_PASS_SIZE
        return ThreadPlan(workers, pass_size, settings.torch_threads, settings.torch_threads, lower_priority=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = settings.model_workers or (2 if cores >= 2 else 1)
    threads = settings.torch_threads or max(1, cores // workers)
    lone = threads if settings.torch_threads else threads * workers
    return ThreadPlan(workers, settings.max_batch_size or CPU_PASS_SIZE, threads, lone, lower_priority=True)


class ModelThreads(Executor):
    """``plan.workers`` model threads, each a one-thread executor. ``run`` runs a pass with the torch threads the
    plan gives a pass alone or beside another; ``submit`` runs any call on the free thread with the lowest
    number."""

    def __init__(self, plan: ThreadPlan, name: str = "alexnet-model") -> None:
        self.plan = plan
        self._threads = [
            ThreadPoolExecutor(1, name, initializer=_set_up_thread, initargs=(plan,)) for _ in range(plan.workers)
        ]
        self._busy = [0] * plan.workers  # calls submitted to each thread and not yet done
        self._lock = threading.Lock()  # done callbacks run in the model threads

    def run(self, fn: Callable[..., Any], /, *args: Any, others: int) -> asyncio.Future:
        """On the event loop: ``fn(*args)`` in a model thread, as one pass, whose result the returned future
        gives (a plain function, not a coroutine: one frame fewer to resume). ``others``: the passes the caller
        has under way besides this one (formed, running, or ended and not yet answered). With none, the pass gets
        every core. Counted any later (at the model threads' own ends, say), a pass formed while the last was
        finishing counted as alone under load too and took every core beside the next one: 57% of the passes
        against 2% (4,000 requests, 32 at once, model-free, in-process), and half again the CPU per request
        (300 -> 450-530 us)."""
        threads = self.plan.threads if others else self.plan.lone_threads
        return asyncio.wrap_future(self.submit(_with_threads, threads, fn, *args))

    async def on_every_thread(self, fn: Callable[..., Any], /, *args: Any) -> list[Any]:
        """On the event loop: ``fn(*args)`` once in each model thread (warm-ups), submitted together so that
        ``submit`` gives each call a different thread; their results."""
        calls = (asyncio.wrap_future(self.submit(fn, *args)) for _ in range(self.plan.workers))
        return list(await asyncio.gather(*calls))

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


def _with_threads(threads: int, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # this thread's count only
    return fn(*args, **kwargs)


def _set_up_thread(plan: ThreadPlan) -> None:
    if plan.threads:
        torch.set_num_threads(plan.threads)
    if plan.lower_priority and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):  # lowering a thread's own priority needs no privilege; if refused, carry on
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MODEL_THREAD_NICENESS)
