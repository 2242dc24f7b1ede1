"""Latency and throughput summaries: the arithmetic every benchmark table rests on."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks, as numpy's default.

    NaN for no values: an empty cell must never read as a zero latency.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it: when it was sent and answered (monotonic seconds), and how."""

    start: float
    end: float
    images: int
    error: str | None = None  # None for a correct answer, else a short kind: "status_503", "timeout", ...

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class Summary:
    """What one load level measured, inside its measurement window only."""

    window_s: float
    requests: int
    images: int
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.window_s if self.window_s > 0 else math.nan

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else math.nan

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "window_s": round(self.window_s, 3),
            "requests": self.requests,
            "images": self.images,
            "images_per_s": round(self.images_per_s, 2),
            "requests_per_s": round(self.requests_per_s, 2),
            "errors": dict(self.errors),
            "error_count": self.error_count,
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
        }


def summarize(records: Iterable[RequestRecord], window_start: float, window_end: float) -> Summary:
    """Requests answered inside [window_start, window_end): throughput counts correct answers only.

    A closed-loop client keeps every worker busy, so counting completions inside a fixed window (after a
    warm-up that is left out) gives the steady-state rate; requests still in flight at either edge are
    the only ones left out.
    """
    if window_end <= window_start:
        raise ValueError("the measurement window must have a positive length")
    inside = [r for r in records if window_start <= r.end < window_end]
    good = [r for r in inside if r.error is None]
    latencies = [r.latency * 1000.0 for r in good]  # ms
    return Summary(
        window_s=window_end - window_start,
        requests=len(good),
        images=sum(r.images for r in good),
        errors=dict(Counter(r.error for r in inside if r.error is not None)),
        latency_ms={
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "mean": sum(latencies) / len(latencies) if latencies else math.nan,
            "max": max(latencies) if latencies else math.nan,
        },
    )
