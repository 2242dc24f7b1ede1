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

    python -m verification.overload --storm --hold both --rounds 3   # retry storms, before/after (about 4 minutes)

``--storm``: a retry storm instead (verification/storm.py): ``--clients`` keep-alive clients that send the same
request again ``--retry-ms`` after each 429 (or as told, ``--honour-retry-after``), ``--polite`` clients that
wait as told beside them, for ``--seconds``; capacity measured first at 32 well-behaved clients, the goodput
reported as a share of it. ``--hold both`` interleaves fresh services with ``ALEXNET_HOLD_AFTER_429`` off and
on; ``--attach PORT`` storms whatever listens there (nginx in front of replicas: verification/lb_check.sh
--storm). Written to docs/reliability/storm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.loadgen import LoadSpec, build_requests, event_loop_runner, run_load
from benchmarks.machine import describe_machine
from benchmarks.payloads import make_uploads, multipart_body
from benchmarks.servers.catalog import service_spec
from benchmarks.servers.launch import LOOPBACK, RunningServer, start_server
from benchmarks.stats import percentile
from models.checkpoint import save_random_checkpoint
from verification.probes import memory_summary, one_request, sample_memory, slowest_get
from verification.storm import StormSpec, storm, storm_result

RUN = event_loop_runner()  # uvloop where installed: the client costs the shared cores less
OUTPUT = Path("docs/reliability/overload.json")
STORM_OUTPUT = Path("docs/reliability/storm.json")


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


async def open_loop(phase: Phase, port: int, pid: int, requests: list[bytes], timeout_s: float) -> Phase:
    """Send ``rate_per_s`` requests a second for ``seconds``, whatever the answers; collect everything."""
    stop, memory = asyncio.Event(), []
    probe = asyncio.create_task(slowest_get(port, "/health/live", stop))
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
    phase.rss_mib = memory_summary(memory)
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
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each overload level or storm (s)")
    parser.add_argument("--soak-s", type=float, default=180.0, help="length of the soak at 5x (s; 0: none)")
    parser.add_argument("--output", type=Path, help=f"default: {OUTPUT}; --storm: {STORM_OUTPUT}; --attach: none")
    storm = parser.add_argument_group("retry storm (--storm): keep-alive clients retrying soon after each 429")
    storm.add_argument("--storm", action="store_true", help="run storms instead of the fixed-rate levels")
    storm.add_argument("--clients", type=int, default=StormSpec.clients, help="storming clients")
    storm.add_argument("--retry-ms", type=float, default=StormSpec.retry_ms, help="how soon they retry a 429 (ms)")
    storm.add_argument("--honour-retry-after", action="store_true", help="the storming clients wait as told")
    storm.add_argument("--polite", type=int, default=StormSpec.polite, help="clients that always honour Retry-After")
    hold_help = "ALEXNET_HOLD_AFTER_429 of the service it starts; both: off, then on, in each round"
    storm.add_argument("--hold", choices=("on", "off", "both"), default="on", help=hold_help)
    storm.add_argument("--rounds", type=int, default=1, help="storms per setting of --hold, interleaved")
    storm.add_argument("--capacity-s", type=float, default=6.0, help="capacity measurement at 32 clients (s)")
    storm.add_argument("--attach", type=int, metavar="PORT", help="storm what listens on 127.0.0.1:PORT (no start)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        if args.storm:
            result = storm_rounds(args, Path(scratch))
        else:
            with serving(args, Path(scratch)) as server:
                result = run_levels(args, server.port, server.process.pid)
    result["machine"] = describe_machine("cpu")
    output = args.output or (None if args.attach is not None else STORM_OUTPUT if args.storm else OUTPUT)
    if output is not None:  # a storm of something else (--attach) is written only where asked
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


@contextlib.contextmanager
def serving(args: argparse.Namespace, scratch: Path, settings: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """``alexnet-serve`` on a free port with the run's checkpoint and deadline (and ``settings``)."""
    checkpoint = args.checkpoint or scratch / "random.safetensors"
    if not checkpoint.exists():
        save_random_checkpoint(checkpoint, with_rule=True)
    env = {
        "ALEXNET_CHECKPOINT": str(checkpoint),
        "ALEXNET_DEVICE": "cpu",
        "ALEXNET_REQUEST_TIMEOUT_S": str(args.deadline),
        **(settings or {}),
    }
    with start_server(service_spec(sys.executable, env), scratch / "server.log") as server:
        yield server


def measure_capacity(port: int, seconds: float = 6.0) -> tuple[float, list[bytes]]:
    """Images (= requests) per second at 32 keep-alive clients, and the one-image requests every run sends."""
    uploads = make_uploads("cifar", 64)
    bodies = tuple(multipart_body([u])[0] for u in uploads)
    content_type = multipart_body(uploads[:1])[1]
    spec = LoadSpec(LOOPBACK, port, bodies, content_type, 1, concurrency=32, warmup_s=2, duration_s=seconds)
    return run_load(spec).summary.images_per_s, build_requests(spec)


def run_levels(args: argparse.Namespace, port: int, pid: int) -> dict:
    capacity, requests = measure_capacity(port)
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


def storm_rounds(args: argparse.Namespace, scratch: Path) -> dict:
    """``--rounds`` storms per ``--hold`` setting, interleaved (off, on, off, on, ...), each on a fresh service."""
    spec = StormSpec(args.clients, args.retry_ms, args.honour_retry_after, args.polite, args.seconds)
    holds = {"on": ("true",), "off": ("false",), "both": ("false", "true")}[args.hold]
    if args.attach is not None:  # what the server was started with, when this environment passed it on (lb_check)
        holds = (os.environ.get("ALEXNET_HOLD_AFTER_429", "true (default)"),)
    runs = []
    for round_number in range(1, args.rounds + 1):
        for hold in holds:
            if args.attach is not None:
                result = storm_once(args.attach, None, spec, args.capacity_s)
            else:
                with serving(args, scratch, {"ALEXNET_HOLD_AFTER_429": hold}) as server:
                    result = storm_once(server.port, server.process.pid, spec, args.capacity_s)
            runs.append({"round": round_number, "hold_after_429": hold, **result})
            print(json.dumps(runs[-1]), flush=True)
    return {"deadline_s": args.deadline, "runs": runs}


def storm_once(port: int, pid: int | None, spec: StormSpec, capacity_s: float) -> dict:
    capacity, requests = measure_capacity(port, capacity_s)
    storming, polite, seen = RUN(storm(port, pid, requests, spec))
    return storm_result(spec, capacity, storming, polite, seen)


if __name__ == "__main__":
    main()
