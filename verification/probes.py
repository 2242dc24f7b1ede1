"""What the overload runs watch while they load the service: one request on a connection of its own, the slowest
answer of a path polled meanwhile, and the server's memory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from benchmarks.loadgen import read_full_response
from benchmarks.servers.launch import LOOPBACK

PROBE_EVERY_S = 0.2


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


async def slowest_get(port: int, path: str, stop: asyncio.Event) -> float:
    """The slowest GET of ``path``, in seconds (infinite for a failed one), polled until ``stop``."""
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode()
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


def memory_summary(memory: list[float]) -> dict[str, float]:
    return {"start": memory[0], "max": max(memory), "end": memory[-1]} if memory else {}
