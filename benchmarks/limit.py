"""The ceiling a server can approach: the inference pass in-process, and what decoding costs.

The limit runs the service's own pass (``models.Classifier.predict``: ``Preprocess``, the network, the softmax
and the checkpoint's abstention score, under the service's precision policy) on pre-decoded uint8 CIFAR
images already in memory, at each
batch size of a sweep, with no HTTP, no decoding and no queue. A server that decodes its uploads too can only
come near it when decoding is cheap (32x32 PNGs); for photos the decode cost, measured here per image on one
thread, adds to every image.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from benchmarks.payloads import Upload
from models import Checkpoint, Classifier, Preprocess, load_image

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
LAYOUTS = ("contiguous", "channels_last")  # the service runs channels_last: the best of both is the limit


def time_repeated(step: Callable[[], object], min_seconds: float, min_repeats: int = 3) -> tuple[float, int]:
    """(seconds per call, calls) after one untimed call: repeats until both minimums are met."""
    step()
    repeats, started = 0, time.perf_counter()
    while repeats < min_repeats or time.perf_counter() - started < min_seconds:
        step()
        repeats += 1
    return (time.perf_counter() - started) / repeats, repeats


def forward_sweep(
    checkpoint: Checkpoint,
    images: Sequence[np.ndarray],
    device: torch.device,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds_per_size: float = 3.0,
    layouts: Sequence[str] = LAYOUTS,
) -> list[dict[str, float]]:
    """images/s of the inference pass at each batch size and memory layout of the weights, on pre-decoded images.

    The precision is the service's default: bf16 autocast on CUDA, float32 on the CPU.
    """
    preprocess = Preprocess(checkpoint.preprocess).to(device)
    pool = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(device)  # (M, 3, 32, 32) uint8
    rows = []
    for layout in layouts:
        memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        served = Classifier.from_checkpoint(checkpoint, device)  # its calibration and rule, as the service runs it
        model = served.model.to(memory_format=memory_format)
        classifier = Classifier(model, preprocess, device, temperature=served.temperature, abstention=served.abstention)
        for size in batch_sizes:
            batch = pool[torch.arange(size) % len(pool)]  # (size, 3, 32, 32)

            def step(batch: torch.Tensor = batch, classifier: Classifier = classifier) -> None:
                classifier.predict(batch)  # back on the CPU, as the service gets it: no sync needed

            seconds, repeats = time_repeated(step, seconds_per_size)
            rows.append(
                {
                    "layout": layout,
                    "batch_size": size,
                    "images_per_s": size / seconds,
                    "in_flight": size,
                    "ms_per_batch": seconds * 1000,
                    "repeats": repeats,
                }
            )
    return rows


def parallel_sweep(
    checkpoint: Checkpoint,
    images: Sequence[np.ndarray],
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds_per_size: float = 3.0,
    passes: int = 2,
) -> list[dict[str, float]]:
    """CPU only: ``passes`` single-threaded forward passes at once, one per core, channels_last.

    On a few cores this can beat one multi-threaded pass (no barrier waits between threads), and it is how
    the service runs on the CPU, so the limit must include it.
    """
    classifier = Classifier.from_checkpoint(checkpoint, torch.device("cpu"))  # as the service runs it
    pool = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (M, 3, 32, 32) uint8
    rows = []
    for size in batch_sizes:
        batch = pool[torch.arange(size) % len(pool)]  # (size, 3, 32, 32)
        counts = [0] * passes

        def worker(index: int, stop_at: float, batch: torch.Tensor = batch, counts: list[int] = counts) -> None:
            torch.set_num_threads(1)  # this thread's passes: one core each
            while time.perf_counter() < stop_at:
                classifier.predict(batch)
                counts[index] += 1

        for phase_seconds in (min(1.0, seconds_per_size), seconds_per_size):  # a warm-up, then the timed run
            counts[:] = [0] * passes
            stop_at = time.perf_counter() + phase_seconds
            threads = [threading.Thread(target=worker, args=(i, stop_at)) for i in range(passes)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        images_per_s = size * sum(counts) / elapsed
        rows.append(
            {
                "layout": f"{passes} passes x 1 thread",
                "batch_size": size,
                "images_per_s": images_per_s,
                "in_flight": size * passes,  # each pass holds its own batch
                "ms_per_batch": 1000 * elapsed / max(1, sum(counts)) * passes,
                "repeats": sum(counts),
            }
        )
    return rows


def decode_costs(uploads_by_kind: dict[str, list[Upload]], input_size: int, seconds: float = 1.5) -> dict[str, dict]:
    """ms per image, on one thread: the project's ``load_image`` and the tutorial's full-size decode."""
    tutorial = transforms.Compose([transforms.Resize((input_size, input_size)), transforms.ToTensor()])
    costs = {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ToTensor's conversion would otherwise spread over the cores
    try:
        for kind, uploads in uploads_by_kind.items():
            blobs = [u.data for u in uploads]
            turns = itertools.cycle(blobs)  # a different picture each call

            def ours(turns: Iterator[bytes] = turns) -> None:
                load_image(next(turns))

            def theirs(turns: Iterator[bytes] = turns) -> None:
                tutorial(Image.open(io.BytesIO(next(turns))).convert("RGB"))

            costs[kind] = {
                "mean_bytes": sum(map(len, blobs)) / len(blobs),
                "load_image_ms": time_repeated(ours, seconds)[0] * 1000,
                "tutorial_decode_ms": time_repeated(theirs, seconds)[0] * 1000,
            }
    finally:
        torch.set_num_threads(previous_threads)
    return costs
