"""What batching across requests buys: the real service, 32 concurrent single-image clients, batching on vs off.

    flock /work/heavy.lock python benchmarks/batching_on_off.py            # about 2 minutes on 2 cores
    python benchmarks/batching_on_off.py --seconds 5 --clients 8 --input-size 64   # a quick look

Writes a random-weight checkpoint (the 224x224 input of the real model; weights do not change the speed),
measures the model alone in this process (the ceiling), then starts ``alexnet-serve`` in a subprocess once
with ALEXNET_BATCHING=true and once with false. Each client is a keep-alive HTTP/1.1 connection sending one
32x32 PNG per request, the next as soon as the answer arrives (a closed loop). The client is raw asyncio
sockets so that it costs the 2 shared cores as little as possible. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.predictor import Predictor  # noqa: E402
from models import CIFAR10_CLASSES, AlexNet, PreprocessSpec, save_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32, help="concurrent single-image clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per mode (after warm-up)")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="load before measuring")
    parser.add_argument("--input-size", type=int, default=224, help="the checkpoint's input size (pixels)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="ALEXNET_MAX_BATCH_SIZE")
    parser.add_argument("--extra-env", default="", help="more ALEXNET_ settings for the server, KEY=V,KEY=V")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "random.safetensors"
        torch.manual_seed(0)
        model_args = {"num_classes": len(CIFAR10_CLASSES), "dropout": 0.5}
        save_checkpoint(
            checkpoint,
            AlexNet(**model_args),
            model_args=model_args,
            classes=CIFAR10_CLASSES,
            preprocess=PreprocessSpec(input_size=args.input_size),
        )
        ceiling = model_alone(checkpoint, args.max_batch_size)
        rows = []
        for batching in (True, False):
            env = {"ALEXNET_BATCHING": str(batching).lower(), "ALEXNET_MAX_BATCH_SIZE": str(args.max_batch_size)}
            env.update(dict(kv.split("=", 1) for kv in args.extra_env.split(",") if kv))
            rows.append(("on" if batching else "off", *serve_and_load(checkpoint, env, args)))
    report(args, ceiling, rows)


def model_alone(checkpoint: Path, batch_size: int, seconds: float = 4.0) -> dict[str, float]:
    """Images/s of Predictor.classify in this process, no HTTP: the ceiling the service is measured against.

    At batch 1 and at the largest batch, with one pass at a time on all cores and with two single-threaded
    passes at once (what the service runs on a 2-core CPU); the best of these is the ceiling.
    """
    predictor = Predictor.load(checkpoint, "cpu")
    cores = os.cpu_count() or 1
    speeds = {}
    for size in (1, batch_size):
        images = np.random.default_rng(0).integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
        for workers, threads in ((1, cores), (2, max(1, cores // 2))):
            speeds[f"batch {size}, {workers} pass(es) x {threads} thread(s)"] = passes_per_second(
                predictor, images, workers, threads, seconds
            )
    return speeds


def passes_per_second(predictor: Predictor, images: np.ndarray, workers: int, threads: int, seconds: float) -> float:
    counts = [0] * workers

    def loop(worker: int, stop_at: float) -> None:
        torch.set_num_threads(threads)
        predictor.classify(images, 5)  # warm this thread
        while time.perf_counter() < stop_at:
            predictor.classify(images, 5)
            counts[worker] += len(images)

    start = time.perf_counter()
    threads_ = [threading.Thread(target=loop, args=(w, start + seconds)) for w in range(workers)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join()
    torch.set_num_threads(os.cpu_count() or 1)
    return sum(counts) / (time.perf_counter() - start)


def serve_and_load(checkpoint: Path, env: dict[str, str], args: argparse.Namespace) -> tuple[float, ...]:
    """Start the service, drive it with the clients; (images/s, p50 ms, p99 ms, mean batch size)."""
    port = free_port()
    command = [sys.executable, "-c", "from app.cli import serve; serve()"]
    command += ["--checkpoint", str(checkpoint), "--device", "cpu", "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        body, content_type = png_request_body()
        asyncio.run(drive(port, body, content_type, args.clients, args.warmup_seconds))
        before = forward_stats(port)
        latencies, elapsed = asyncio.run(drive(port, body, content_type, args.clients, args.seconds))
        after = forward_stats(port)
    finally:
        server.terminate()
        server.wait(30)
    passes, images = after[0] - before[0], after[1] - before[1]
    q = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, 1000 * q[49], 1000 * q[98], images / max(passes, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not become ready")


def forward_stats(port: int) -> tuple[float, float]:
    """(forward passes, images classified) so far, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    passes = re.search(r"^alexnet_forward_passes_total (\S+)$", text, re.M)
    images = re.search(r"^alexnet_images_classified_total (\S+)$", text, re.M)
    return float(passes.group(1)), float(images.group(1))  # type: ignore[union-attr]


def png_request_body() -> tuple[bytes, str]:
    """A multipart body with one random 32x32 PNG (about the size of a CIFAR PNG)."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    boundary = "benchmarkboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + buffer.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def drive(port: int, body: bytes, content_type: str, clients: int, seconds: float) -> tuple[list[float], float]:
    """Closed-loop clients for ``seconds``; every request must succeed. Returns (latencies in s, elapsed s)."""
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    latencies: list[float] = []
    start = time.perf_counter()
    stop_at = start + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                writer.write(request)
                status, length = await read_head(reader)
                payload = await reader.readexactly(length)
                if status != 200:
                    raise RuntimeError(f"status {status}: {payload[:200]!r}")
                latencies.append(time.perf_counter() - sent)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - start


async def read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, length


def report(args: argparse.Namespace, ceiling: dict[str, float], rows: list[tuple]) -> None:
    print(f"\n{args.clients} concurrent single-image clients, {args.seconds:.0f} s per mode, ", end="")
    print(f"input {args.input_size}px\n")
    print("| model alone, in process | images/s |\n| --- | ---: |")
    for name, rate in ceiling.items():
        print(f"| {name} | {rate:.0f} |")
    best = max(ceiling.values())
    print("\n| batching | images/s | p50 latency | p99 latency | mean batch | vs best model-alone |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, rate, p50, p99, batch in rows:
        print(f"| {mode} | {rate:.0f} | {p50:.0f} ms | {p99:.0f} ms | {batch:.1f} | {rate / best:.0%} |")
    print(json.dumps({"ceiling": ceiling, "rows": rows}))


if __name__ == "__main__":
    main()
