"""What swapping checkpoints while serving costs: latency under load with and without swaps, and memory over many.

    python -m verification.swap_check --out docs/benchmarks/swaps.json

Starts ``alexnet-serve`` (CPU, model control on) on one of two checkpoints of random weights (a Mahalanobis rule
each, as the benchmarks' checkpoint) in a scratch folder, then:
1. ``--clients`` closed-loop clients of one CIFAR-size PNG each for ``--seconds``, no swap; then the same with a
   load request every ``--swap-every-s`` seconds, alternating the two files: p50/p99 latency and errors of each;
2. ``--swaps`` loads in a row: the server's RSS after the first and after the last.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.loadgen import LoadSpec, run_load
from benchmarks.machine import describe_machine
from benchmarks.payloads import make_uploads, multipart_body
from benchmarks.servers.catalog import service_spec
from benchmarks.servers.launch import LOOPBACK, start_server
from models import save_random_checkpoint
from training.logs import configure_logging
from verification.probes import rss_mib

logger = logging.getLogger(__name__)
FILES = ("a.safetensors", "b.safetensors")


def load(port: int, name: str) -> float:
    """Seconds the load request took (it answers once the new checkpoint serves)."""
    started = time.perf_counter()
    answer = httpx.post(
        f"http://{LOOPBACK}:{port}/v2/repository/models/alexnet/load",
        json={"parameters": {"checkpoint": name}},
        timeout=300,
    )
    answer.raise_for_status()
    return time.perf_counter() - started


def latency_window(port: int, args: argparse.Namespace, swap_every_s: float | None) -> dict:
    body, content_type = multipart_body(make_uploads("cifar", 1, Path("none")))
    spec = LoadSpec(LOOPBACK, port, (body,), content_type, 1, args.clients, 1.0, args.seconds, timeout_s=30)
    swaps: list[float] = []
    stop = threading.Event()

    def swapping() -> None:
        i = 0
        while not stop.wait(swap_every_s):
            swaps.append(load(port, FILES[i % 2]))
            i += 1

    thread = threading.Thread(target=swapping) if swap_every_s else None
    if thread:
        thread.start()
    result = run_load(spec, 1)
    stop.set()
    if thread:
        thread.join()
    summary = result.summary.to_dict()
    return {
        "swaps": len(swaps),
        "swap_seconds": [round(s, 2) for s in swaps],
        "requests": summary["requests"],
        "errors": summary["error_count"],
        "latency_ms": summary["latency_ms"],
    }


def main(argv: list[str] | None = None) -> dict:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--swap-every-s", type=float, default=2.0)
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/swaps.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for seed, name in enumerate(FILES):
            save_random_checkpoint(folder / name, input_size=args.input_size, seed=seed, with_rule=True)
        env = {"ALEXNET_CHECKPOINT": str(folder / FILES[0]), "ALEXNET_DEVICE": "cpu", "ALEXNET_MODEL_CONTROL": "true"}
        with start_server(service_spec(sys.executable, env), folder / "server.log") as server:
            quiet = latency_window(server.port, args, None)
            swapping = latency_window(server.port, args, args.swap_every_s)
            load(server.port, FILES[1])
            rss_first = rss_mib(server.process.pid)
            seconds = [load(server.port, FILES[i % 2]) for i in range(args.swaps - 1)]
            rss_last = rss_mib(server.process.pid)
    result = {
        "command": "python -m verification.swap_check " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine("cpu"),
        "without_swaps": quiet,
        "with_swaps": swapping,
        "rss_mib_after_first_swap": rss_first,
        "rss_mib_after_last_swap": rss_last,
        "swaps": args.swaps,
        "swap_seconds_median": sorted(seconds)[len(seconds) // 2] if seconds else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info(
        "p99 %.1f ms without swaps, %.1f ms with %d; RSS %.0f MiB after the first swap, %.0f after %d",
        quiet["latency_ms"]["p99"],
        swapping["latency_ms"]["p99"],
        swapping["swaps"],
        rss_first,
        rss_last,
        args.swaps,
    )
    return result


if __name__ == "__main__":
    main()
