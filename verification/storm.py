"""A retry storm: hundreds of keep-alive clients that send the same request again soon after a 429, ignoring
``Retry-After`` (as badly written clients and many retry policies do), with a few polite clients beside them
that wait as told. Run through ``python -m verification.overload --storm``.

What counts: answers per second against the capacity measured just before at 32 well-behaved clients (the
goodput share), every status per group (an accepted request that ends in 504 is a lost one), the 429s'
latency, the slowest ``/health/live`` and ``/metrics`` meanwhile, the server's RSS.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field

from benchmarks.loadgen import read_full_response
from benchmarks.servers.launch import LOOPBACK
from benchmarks.stats import percentile
from verification.probes import memory_summary, sample_memory, slowest_get

RECONNECT_PAUSE_S = 0.05  # after a dropped connection, before a storming client opens a new one
ANSWER_TIMEOUT_S = 60.0  # far past any deadline: a request the service leaves unanswered shows as client-timeout


@dataclass(frozen=True)
class StormSpec:
    """Who storms and for how long."""

    clients: int = 300  # keep-alive connections retrying soon after each 429
    retry_ms: float = 30.0  # how soon they retry; ignored with honour_retry_after
    honour_retry_after: bool = False  # the storming clients wait as told (a polite crowd instead of a storm)
    polite: int = 16  # clients beside them that always wait the Retry-After
    seconds: float = 15.0


@dataclass
class Group:
    """What one group of clients saw: every status (or error kind), with the latency of each answer."""

    clients: int
    statuses: Counter[str] = field(default_factory=Counter)
    latency_s: dict[str, list[float]] = field(default_factory=dict)
    answered_in_time: int = 0  # 200s that came before the storm's end: the goodput

    def record(self, status: str, seconds: float, in_time: bool) -> None:
        self.statuses[status] += 1
        self.latency_s.setdefault(status, []).append(seconds)
        self.answered_in_time += status == "200" and in_time

    def summary(self) -> dict:
        def ms(status: str) -> dict[str, float]:
            seconds = self.latency_s.get(status, [])
            return {q: round(1000 * percentile(seconds, p), 1) for q, p in (("p50", 50), ("p99", 99), ("max", 100))}

        return {
            "clients": self.clients,
            "statuses": dict(self.statuses),
            "answers_per_client": round(self.statuses["200"] / self.clients, 2) if self.clients else None,
            "latency_200_ms": ms("200"),
            "latency_429_ms": ms("429"),
        }


async def keep_retrying(port: int, request: bytes, stop_at: float, retry_s: float | None, group: Group) -> None:
    """One client on one keep-alive connection: send, and after anything but a 200 wait ``retry_s`` (None: the
    ``Retry-After``), then send the same request again; a new connection only when the service closes one."""
    reader = writer = None
    try:
        while time.monotonic() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(LOOPBACK, port)
                start = time.monotonic()
                writer.write(request)
                status, headers, _ = await asyncio.wait_for(read_full_response(reader), ANSWER_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                group.record("client-timeout" if isinstance(exc, TimeoutError) else "connection", 0.0, False)
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            now = time.monotonic()
            group.record(str(status), now - start, now <= stop_at)
            if headers.get("connection") == "close":
                writer.close()
                writer = None
            if status != 200:
                await asyncio.sleep(float(headers.get("retry-after", 1)) if retry_s is None else retry_s)
    finally:
        if writer is not None:
            writer.close()


async def storm(port: int, pid: int | None, requests: list[bytes], spec: StormSpec) -> tuple[Group, Group, dict]:
    """The storming and the polite group after ``spec.seconds``, and what the probes saw meanwhile."""
    storming, polite = Group(spec.clients), Group(spec.polite)
    stop, memory = asyncio.Event(), []
    probes = [asyncio.create_task(slowest_get(port, path, stop)) for path in ("/health/live", "/metrics")]
    sampler = asyncio.create_task(sample_memory(pid, stop, memory)) if pid else None
    stop_at = time.monotonic() + spec.seconds
    retry_s = None if spec.honour_retry_after else spec.retry_ms / 1000

    def client(index: int, retry: float | None, group: Group) -> Coroutine[None, None, None]:
        return keep_retrying(port, requests[index % len(requests)], stop_at, retry, group)

    clients = [client(i, retry_s, storming) for i in range(spec.clients)]
    clients += [client(i, None, polite) for i in range(spec.polite)]
    await asyncio.gather(*clients)
    stop.set()
    live, metrics = [1000 * await probe for probe in probes]
    if sampler:
        await sampler
    seen = {"slowest_live_ms": round(live, 1), "slowest_metrics_ms": round(metrics, 1)}
    return storming, polite, seen | {"rss_mib": memory_summary(memory)}


def storm_result(spec: StormSpec, capacity_per_s: float, storming: Group, polite: Group, probes: dict) -> dict:
    """One storm's figures; ``accepted_then_504`` and ``other_5xx`` must be 0."""
    statuses = storming.statuses + polite.statuses
    answered_per_s = (storming.answered_in_time + polite.answered_in_time) / spec.seconds
    return {
        "storm": asdict(spec),
        "capacity_per_s": round(capacity_per_s, 1),
        "answered_per_s": round(answered_per_s, 1),
        "goodput_share": round(answered_per_s / capacity_per_s, 3),
        "accepted_then_504": statuses["504"],
        "other_5xx": sum(n for status, n in statuses.items() if status.startswith("5") and status != "504"),
        "connection_errors": statuses["connection"] + statuses["client-timeout"],
        "storming": storming.summary(),
        "polite": polite.summary(),
        **probes,
    }
