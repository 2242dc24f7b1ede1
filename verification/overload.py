"""Overload, bounded and repeatable: the real service at several times its capacity, with a short deadline.

    python -m verification.overload                      # about 5 minutes: 5x and 10x, recovery, a 3-minute soak
    python -m verification.overload --soak-s 0 --seconds 10   # the short version (about a minute)

On loopback only: ``alexnet-serve`` starts on a free port (a random serving-size checkpoint unless
``--checkpoint``), with ``ALEXNET_REQUEST_TIMEOUT_S`` at ``--deadline``. Its capacity is measured first
(closed loop, 32 clients, images/s); then requests arrive open-loop, each on a new connection, at 5x and
10x that rate for ``--seconds`` each, while /health/live is probed every 200 ms and the server's memory is
sampled. Then: how soon full throughput returns after the load drops, and a soak at 5x for ``--soak-s``.
What counts: every request's status (200, 429, 504, other 5xx, connection errors), the 200s' latency
against the deadline, the slowest /health/live, the server's RSS over time. Written to
docs/reliability/overload.json; docs/reliability.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.loadgen import LoadSpec, build_requests, event_loop_runner, read_full_response, run_load
from benchmarks.machine import describe_machine
from benchmarks.payloads import make_uploads, multipart_body
from benchmarks.servers.catalog import service_spec
from benchmarks.servers.launch import LOOPBACK, start_server
from benchmarks.stats import percentile
from models.checkpoint import save_random_checkpoint

RUN = event_loop_runner()  # uvloop where installed: the client costs the shared cores less
OUTPUT = Path("docs/reliability/overload.json")
PROBE_EVERY_S = 0.2


@dataclass
class Phase:
    """One open-loop load level as the clients saw it."""

    name: str
    rate_per_s: float
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)
    latency_200_ms: dict[str, float] = field(default_factory=dict)
    latency_429_ms: dict[str, float] = field(default_factory=dict)
    slowest_live_ms: float = 0.0
    rss_mib: dict[str, float] = field(default_factory=dict)
    retry_after_s: list[int] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_request(port: int, request: bytes, timeout_s: float) -> tuple[str, float, int | None]:
    """(status or error kind, seconds, Retry-After) of one request on a connection of its own."""
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), timeout_s)
        try:
            writer.write(request)
            status, headers, _ = await asyncio.wait_for(read_full_response(reader), timeout_s)
        finally:
            writer.close()
    except TimeoutError:
        return "client-timeout", time.monotonic() - start, None
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return "connection", time.monotonic() - start, None
    retry = headers.get("retry-after")
    return str(status), time.monotonic() - start, int(retry) if retry else None


async def probe_live(port: int, stop: asyncio.Event) -> float:
    """The slowest GET /health/live, in seconds, while the load runs."""
    request = f"GET /health/live HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode()
    slowest = 0.0
    while not stop.is_set():
        status, seconds, _ = await one_request(port, request, 10)
        slowest = max(slowest, seconds if status == "200" else float("inf"))
        await asyncio.sleep(PROBE_EVERY_S)
    return slowest


async def sample_memory(pid: int, stop: asyncio.Event, into: list[float]) -> None:
    while not stop.is_set():
        into.append(rss_mib(pid))
        await asyncio.sleep(0.5)


async def open_loop(phase: Phase, port: int, pid: int, requests: list[bytes], timeout_s: float) -> Phase:
    """Send ``rate_per_s`` requests a second for ``seconds``, whatever the answers; collect everything."""
    stop, memory = asyncio.Event(), []
    probe = asyncio.create_task(probe_live(port, stop))
    sampler = asyncio.create_task(sample_memory(pid, stop, memory))
    tasks, start = [], time.monotonic()
    for index in range(int(phase.rate_per_s * phase.seconds)):
        await asyncio.sleep(max(0.0, start + index / phase.rate_per_s - time.monotonic()))
        tasks.append(asyncio.create_task(one_request(port, requests[index % len(requests)], timeout_s)))
    results = await asyncio.gather(*tasks)
    stop.set()
    phase.slowest_live_ms = 1000 * await probe
    await sampler
    return summarize_phase(phase, results, memory)


def summarize_phase(phase: Phase, results: list[tuple[str, float, int | None]], memory: list[float]) -> Phase:
    phase.statuses = dict(Counter(status for status, _, _ in results))
    for status, into in (("200", phase.latency_200_ms), ("429", phase.latency_429_ms)):
        seconds = [s for code, s, _ in results if code == status]
        into.update({q: 1000 * percentile(seconds, p) for q, p in (("p50", 50), ("p99", 99), ("max", 100))})
    phase.retry_after_s = sorted({r for code, _, r in results if code == "429" and r is not None})
    phase.rss_mib = {"start": memory[0], "max": max(memory), "end": memory[-1]} if memory else {}
    return phase


async def closed_loop(port: int, requests: list[bytes], seconds: float) -> list[float]:
    """When each 200 came, from 32 clients sending one request after another, each on a new connection."""
    begin, answered = time.monotonic(), []

    async def client(index: int) -> None:
        while time.monotonic() < begin + seconds:
            status, _, _ = await one_request(port, requests[index % len(requests)], 10)
            if status == "200":
                answered.append(time.monotonic() - begin)
            index += 32

    await asyncio.gather(*(client(i) for i in range(32)))
    return answered


def recovery_s(answered: list[float], baseline_per_s: float, step_s: float = 0.25) -> float:
    """The end of the first ``step_s`` window, after the load dropped, with 90% of the quiet rate."""
    for step in range(int(3 / step_s)):
        count = sum(step * step_s <= t < (step + 1) * step_s for t in answered)
        if count / step_s >= 0.9 * baseline_per_s:
            return (step + 1) * step_s
    return float("inf")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m verification.overload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to serve (default: random, serving size)")
    parser.add_argument("--deadline", type=float, default=2.0, help="ALEXNET_REQUEST_TIMEOUT_S (s)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each overload level (s)")
    parser.add_argument("--soak-s", type=float, default=180.0, help="length of the soak at 5x (s; 0: none)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or save_random_checkpoint(Path(scratch) / "random.safetensors", with_rule=True)
        env = {
            "ALEXNET_CHECKPOINT": str(checkpoint),
            "ALEXNET_DEVICE": "cpu",
            "ALEXNET_REQUEST_TIMEOUT_S": str(args.deadline),
        }
        spec = service_spec(sys.executable, env)
        with start_server(spec, Path(scratch) / "server.log") as server:
            result = run_levels(args, server.port, server.process.pid)
    result["machine"] = describe_machine("cpu")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def run_levels(args: argparse.Namespace, port: int, pid: int) -> dict:
    uploads = make_uploads("cifar", 64)
    bodies = tuple(multipart_body([u])[0] for u in uploads)
    content_type = multipart_body(uploads[:1])[1]
    spec = LoadSpec(LOOPBACK, port, bodies, content_type, 1, concurrency=32, warmup_s=2, duration_s=6)
    capacity = run_load(spec).summary.images_per_s
    requests = build_requests(spec)
    quiet_per_s = len(RUN(closed_loop(port, requests, 3))) / 3  # as recovery is measured
    timeout = args.deadline + 30  # a client gives up far later than the service's deadline: lost answers show
    phases = []
    for multiple in (5, 10):
        phase = Phase(f"{multiple}x", multiple * capacity, args.seconds)
        phases.append(RUN(open_loop(phase, port, pid, requests, timeout)))
    recovered = recovery_s(RUN(closed_loop(port, requests, 3)), quiet_per_s)
    if args.soak_s > 0:
        phases.append(RUN(open_loop(Phase("soak 5x", 5 * capacity, args.soak_s), port, pid, requests, timeout)))
    return {
        "deadline_s": args.deadline,
        "capacity_images_per_s": capacity,
        "recovery_s": recovered,
        "quiet_rate_new_connections_per_s": quiet_per_s,
        "phases": [asdict(p) for p in phases],
    }


if __name__ == "__main__":
    main()
