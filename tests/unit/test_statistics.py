"""Statistics agree with themselves wherever they are shown: property tests over the lock
tracer's histograms, their percentiles, merging and the Prometheus view of them."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from irqlock.analysis.histograms import (
    LOGLIN_BUCKETS,
    Summary,
    loglinear_bounds,
    loglinear_index,
    percentile,
)
from irqlock.report.prometheus import Metrics
from irqlock.tracers.locks import Timing

durations = st.lists(st.integers(min_value=0, max_value=1 << 40), min_size=1, max_size=300)


def timing_of(values: list[int]) -> Timing:
    """What the tracer reads back for these holds: locks.bpf.c's aggregates of them."""
    counts = [0] * LOGLIN_BUCKETS
    for v in values:
        counts[loglinear_index(v)] += 1
    return Timing.of(sum(values), max(values), counts)


@given(durations)
def test_percentiles_are_ordered_and_within_the_data(values: list[int]) -> None:
    t = timing_of(values)
    assert 0 <= t.p50 <= t.p99 <= t.max == max(values)
    assert t.count == len(values) and t.total == sum(values)
    ordered = sorted(values)
    for estimate, fraction in ((t.p50, 0.5), (t.p99, 0.99)):
        true = percentile(ordered, fraction)
        low, high = loglinear_bounds(loglinear_index(true))
        assert low <= estimate < high or estimate == t.max, (estimate, true)


@given(durations, durations)
def test_merged_intervals_add_up(first: list[int], second: list[int]) -> None:
    """Two intervals' aggregates merged are the aggregates of both intervals' holds."""
    a, b, both = timing_of(first), timing_of(second), timing_of(first + second)
    assert both.count == a.count + b.count and both.total == a.total + b.total
    assert both.max == max(a.max, b.max)
    merged = dict(a.histogram)
    for low, n in b.histogram:
        merged[low] = merged.get(low, 0) + n
    assert sorted(merged.items()) == both.histogram
    # The median of both lies between the two medians, to the histogram's resolution (a
    # median read back is its bucket's middle, or the maximum if that is lower).
    buckets = sorted((loglinear_index(a.p50), loglinear_index(b.p50)))
    assert buckets[0] <= loglinear_index(both.p50) <= buckets[1]


@given(durations)
def test_window_summary_is_ordered(values: list[int]) -> None:
    summary = Summary(values=list(values))
    stats = summary.stats()
    assert min(values) <= stats["p50"] <= stats["p99"] <= stats["max"] == max(values)
    assert stats["count"] == sum(n for _low, n in summary.histogram()) == len(values)


@given(durations)
def test_prometheus_lock_histogram_matches_the_record(values: list[int]) -> None:
    t = timing_of(values)
    record: dict[str, Any] = {"name": "fx_spin", "kind": "spinlock", "site": None, "addr": "0x1",
              "acquisitions": len(values), "hold_ns": t.to_json(),
                              "wait_ns": Timing.of(0, 0, []).to_json(),
              "hold_histogram": [list(b) for b in t.histogram], "wait_histogram": []}
    metrics = Metrics()
    metrics.set_locks([record])
    (hist,) = metrics.lock_histograms["irqlock_lock_hold_seconds"].values()
    assert hist.count == t.count == t.to_json()["count"]
    assert abs(hist.total - t.total / 1e9) <= 1e-9 * max(1.0, t.total / 1e9)
