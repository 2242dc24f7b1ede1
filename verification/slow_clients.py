"""Slow and stuck clients, bounded and repeatable: thousands of stalled connections against the real service.

    python -m verification.slow_clients                  # 3,000 connections, 5 s timeouts: about 20 s
    python -m verification.slow_clients --connections 6000 --timeout 10

On loopback only: ``alexnet-serve`` starts on a free port (a random serving-size checkpoint) with
``ALEXNET_HEADER_TIMEOUT_S`` and ``ALEXNET_BODY_TIMEOUT_S`` at ``--timeout``. Half the connections send half a
header line and stop; the other half send a whole head announcing a 100 KB body, 50 bytes of it, and stop.
Meanwhile a real client sends a /predict and a /health/live every 250 ms. Measured: when each stalled
connection was closed by the server (and how: 408, or closed without a word), the real requests' status
and latency, and the server's memory and open file descriptors. Written to
docs/reliability/slow_clients.json; docs/reliability.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.loadgen import read_full_response
from benchmarks.machine import describe_machine
from benchmarks.payloads import make_uploads, multipart_body
from benchmarks.servers.catalog import service_spec
from benchmarks.servers.launch import LOOPBACK, start_server
from benchmarks.stats import percentile
from models.checkpoint import save_random_checkpoint
from verification.probes import rss_mib

OUTPUT = Path("docs/reliability/slow_clients.json")
IN_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le"
IN_BODY = (
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    b"Content-Length: 100000\r\n\r\n--b\r\n" + b"x" * 50
)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def stall(port: int, data: bytes, began: float) -> tuple[str, float]:
    """Send ``data`` and nothing more; (what the server answered, when it closed the connection)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(data)
    answer = await reader.read()  # until the server closes it
    writer.close()
    return (
        "408" if answer.startswith(b"HTTP/1.1 408 ") else "closed" if not answer else "other"
    ), time.monotonic() - began


async def real_client(port: int, request: bytes, stop: asyncio.Event) -> list[tuple[str, float]]:
    """A /predict then a /health/live every 250 ms: (status, seconds) of each."""
    live = f"GET /health/live HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode()
    results = []
    while not stop.is_set():
        for payload in (request, live):
            start = time.monotonic()
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(payload)
            status, _, _ = await asyncio.wait_for(read_full_response(reader), 30)
            writer.close()
            results.append((str(status), time.monotonic() - start))
        await asyncio.sleep(0.25)
    return results


async def run(port: int, pid: int, connections: int, request: bytes) -> dict:
    began = time.monotonic()
    stop = asyncio.Event()
    client = asyncio.create_task(real_client(port, request, stop))
    stalls = [asyncio.create_task(stall(port, IN_HEAD if i % 2 else IN_BODY, began)) for i in range(connections)]
    await asyncio.sleep(1)
    held = {"rss_mib": rss_mib(pid), "open_fds": open_fds(pid)}
    outcomes = await asyncio.gather(*stalls)
    stop.set()
    real = await client
    closed_at = [t for _, t in outcomes]
    kinds = {kind: sum(k == kind for k, _ in outcomes) for kind in ("408", "closed", "other")}
    return {
        "stalled_connections": connections,
        "closed": kinds,
        "all_closed_after_s": max(closed_at),
        "closed_after_s_p50": percentile(closed_at, 50),
        "server_while_held": held,
        "server_after": {"rss_mib": rss_mib(pid), "open_fds": open_fds(pid)},
        "real_requests": {
            "statuses": {s: sum(r == s for r, _ in real) for s in {r for r, _ in real}},
            "slowest_ms": 1000 * max(t for _, t in real),
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m verification.slow_clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=3000, help="stalled connections held at once")
    parser.add_argument("--timeout", type=float, default=5.0, help="ALEXNET_HEADER_TIMEOUT_S and _BODY_TIMEOUT_S")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.connections)), hard))  # the server's too
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = save_random_checkpoint(Path(scratch) / "random.safetensors")
        timeouts = {"ALEXNET_HEADER_TIMEOUT_S": str(args.timeout), "ALEXNET_BODY_TIMEOUT_S": str(args.timeout)}
        env = {"ALEXNET_CHECKPOINT": str(checkpoint), "ALEXNET_DEVICE": "cpu", **timeouts}
        spec = service_spec(sys.executable, env)
        body, content_type = multipart_body(make_uploads("cifar", 1))
        with start_server(spec, Path(scratch) / "server.log") as server:
            head = f"POST /predict HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: {content_type}\r\n"
            request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            result = asyncio.run(run(server.port, server.process.pid, args.connections, request))
    result |= {"timeout_s": args.timeout, "machine": describe_machine("cpu")}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
