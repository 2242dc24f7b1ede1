"""A closed-loop HTTP load generator that costs the server as little CPU as possible.

Why not httpx: on a 2-core machine the client shares the cores with the server it measures. httpx spends
about a millisecond of Python per request building and parsing it; at a few hundred requests/s that is
a large slice of a core taken from the server, and more from the faster server. Here every request is
encoded once, up front (head and multipart body as bytes), and each worker writes those bytes on its own
keep-alive connection and reads the answer with a minimal HTTP/1.1 parser. The client's own CPU time is
measured and reported beside every result, so its share is visible, and it is the same for every server.

Each of ``concurrency`` workers sends a request, waits for the whole answer, checks it (status 200 and
one prediction per image) and sends the next. Only answers inside the window after the warm-up count.
On a machine with spare cores (a GPU host) the workers can be spread over several client processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.stats import RequestRecord, Summary, summarize

RECONNECT_PAUSE_S = 0.05  # after a refused or dropped connection, so a dead server is not hammered


@dataclass(frozen=True)
class LoadSpec:
    """One load level: who to send to, what, how many at once, for how long."""

    host: str
    port: int
    bodies: tuple[bytes, ...]  # multipart bodies sent in turn, so no two consecutive requests are alike
    content_type: str
    images_per_request: int
    concurrency: int
    warmup_s: float
    duration_s: float
    path: str = "/predict"
    timeout_s: float = 60.0  # a request unanswered after this counts as a "timeout" error
    grpc_port: int | None = None  # where the server speaks OIP over gRPC, for benchmarks/grpc_load.py
    grpc_messages: tuple[bytes, ...] = ()  # serialized ModelInferRequests of the same images as ``bodies``


@dataclass
class LoadResult:
    summary: Summary
    client_cpu_s: float  # CPU time the client processes used during the whole run (warm-up included)
    wall_s: float


def build_requests(spec: LoadSpec) -> list[bytes]:
    """Every request fully encoded (head + body), once, before the clock starts."""
    requests = []
    for body in spec.bodies:
        head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\nUser-Agent: alexnet-bench\r\n"
            f"Accept: application/json\r\nContent-Type: {spec.content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode("latin-1") + body)
    return requests


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 response; Content-Length and chunked bodies."""
    status, headers, body = await read_full_response(reader)
    return status, body, headers.get("connection") != "close"


async def read_full_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-cased names and values, body) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))  # data + CRLF
            if size == 0:
                break
        body = b"".join(c[:-2] for c in chunks)
    else:  # no framing: the body runs to the end of the connection
        body = await reader.read()
        headers["connection"] = "close"
    return status, headers, body


def check_answer(status: int, body: bytes, images: int) -> str | None:
    """None for a correct answer, else the kind of error to count."""
    if status != 200:
        return f"status_{status}"
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        return "bad_json"
    return None if len(predictions) == images else "wrong_count"


async def _worker(spec: LoadSpec, requests: list[bytes], offset: int, stop_at: float, out: list[RequestRecord]):
    reader = writer = None
    index = offset
    while time.monotonic() < stop_at:
        request = requests[index % len(requests)]
        index += 1
        start = time.monotonic()
        error = None
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
            writer.write(request)
            await writer.drain()
            status, body, keep_alive = await asyncio.wait_for(read_response(reader), spec.timeout_s)
            error = check_answer(status, body, spec.images_per_request)
        except TimeoutError:
            error, keep_alive = "timeout", False
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            error, keep_alive = "connection", False
        out.append(RequestRecord(start, time.monotonic(), spec.images_per_request, error))
        if not keep_alive and writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            reader = writer = None
        if error == "connection":
            await asyncio.sleep(RECONNECT_PAUSE_S)
    if writer is not None:
        writer.close()


async def _run_workers(spec: LoadSpec, workers: int, first_worker: int, begin_at: float) -> list[RequestRecord]:
    requests = build_requests(spec)
    await asyncio.sleep(max(0.0, begin_at - time.monotonic()))
    stop_at = begin_at + spec.warmup_s + spec.duration_s
    records: list[RequestRecord] = []
    # Each worker starts at a different image, so concurrent requests carry different pictures.
    stride = max(1, len(requests) // max(1, spec.concurrency))
    await asyncio.gather(
        *(_worker(spec, requests, (first_worker + i) * stride, stop_at, records) for i in range(workers))
    )
    return records


def drive_http(spec: LoadSpec, workers: int, first_worker: int, begin_at: float) -> list[RequestRecord]:
    """``workers`` HTTP clients of one process, each on its own keep-alive connection."""
    return event_loop_runner()(_run_workers(spec, workers, first_worker, begin_at))


Drive = Callable[[LoadSpec, int, int, float], list[RequestRecord]]  # (spec, workers, first worker, begin at)


def _client_process(spec: LoadSpec, workers: int, first_worker: int, begin_at: float, drive: Drive = drive_http):
    """Entry point of one client process: its records and its own CPU time."""
    cpu_before = time.process_time()
    records = drive(spec, workers, first_worker, begin_at)
    return records, time.process_time() - cpu_before


def event_loop_runner():
    try:  # uvloop makes the client cheaper still, where it is installed
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def run_load(spec: LoadSpec, processes: int = 1, drive: Drive = drive_http) -> LoadResult:
    """Drive one load level and summarize it; ``processes`` > 1 spreads the workers over processes. ``drive``
    runs one process's clients (a module-level function: spawned processes import it): HTTP here, gRPC in
    benchmarks/grpc_load.py."""
    processes = max(1, min(processes, spec.concurrency))
    shares = [spec.concurrency // processes + (i < spec.concurrency % processes) for i in range(processes)]
    firsts = [sum(shares[:i]) for i in range(processes)]
    wall_start = time.monotonic()
    if processes == 1:
        begin_at = time.monotonic()
        parts = [_client_process(spec, spec.concurrency, 0, begin_at, drive)]
    else:
        begin_at = time.monotonic() + 3.0  # room for the spawned processes to import and connect
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
        with context.Pool(processes) as pool:
            parts = pool.starmap(
                _client_process, [(spec, n, first, begin_at, drive) for n, first in zip(shares, firsts, strict=True)]
            )
    records = [r for part, _ in parts for r in part]
    window_start = begin_at + spec.warmup_s
    summary = summarize(records, window_start, window_start + spec.duration_s)
    return LoadResult(summary, sum(cpu for _, cpu in parts), time.monotonic() - wall_start)
