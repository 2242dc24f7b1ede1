"""The arithmetic behind every benchmark table: percentiles, windows, error counts."""

import math

import numpy as np
import pytest

from benchmarks.stats import RequestRecord, percentile, summarize


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(q):
    values = [*np.random.default_rng(0).exponential(10.0, size=101), 3.0, 3.0]
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_nothing_is_nan_not_zero():
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_counts_only_answers_inside_the_window():
    records = [
        RequestRecord(0.0, 0.5, images=1),  # warm-up: left out
        RequestRecord(0.9, 1.2, images=1),  # answered inside: counted with its full latency
        RequestRecord(1.5, 1.6, images=4),
        RequestRecord(2.0, 2.9, images=1, error="status_503"),  # an error: counted, not in throughput
        RequestRecord(2.5, 3.5, images=1),  # answered after the window: left out
    ]
    summary = summarize(records, window_start=1.0, window_end=3.0)
    assert summary.requests == 2
    assert summary.images == 5
    assert summary.images_per_s == pytest.approx(2.5)
    assert summary.errors == {"status_503": 1}
    assert summary.latency_ms["p50"] == pytest.approx(200.0)  # of 300 ms and 100 ms
    assert summary.latency_ms["max"] == pytest.approx(300.0)


def test_summary_with_only_errors_has_no_latency():
    summary = summarize([RequestRecord(0.0, 1.0, 1, "timeout")], 0.0, 2.0)
    assert summary.requests == 0 and summary.error_count == 1
    assert math.isnan(summary.latency_ms["p99"])
    assert summary.to_dict()["images_per_s"] == 0.0


def test_summarize_rejects_an_empty_window():
    with pytest.raises(ValueError):
        summarize([], 1.0, 1.0)
