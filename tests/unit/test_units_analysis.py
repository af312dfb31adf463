"""Duration parsing and formatting, percentiles and log2 histograms (pure logic)."""

from __future__ import annotations

import pytest

from irqlock.analysis.histograms import (
    Summary,
    loglinear_bounds,
    loglinear_index,
    loglinear_percentile,
    percentile,
)
from irqlock.errors import IrqlockError
from irqlock.units import format_ns, parse_duration_ns


@pytest.mark.parametrize("text,ns", [("500ns", 500), ("100us", 100_000), ("100µs", 100_000),
                                     ("2ms", 2_000_000), ("1s", 1_000_000_000), ("250", 250_000),
                                     ("1.5ms", 1_500_000), (" 3 ms ", 3_000_000)])
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "ms", "5 parsecs", "-3ms", "1e3us", "2 m"])
def test_bad_duration_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(IrqlockError, match=r"use e\.g\. 500ns, 100us, 2ms, 1s"):
        parse_duration_ns(text)


def test_format_ns_picks_a_readable_unit() -> None:
    assert [format_ns(v) for v in (812, 101_300, 5_000_000, 1_200_000_000)] == \
        ["812ns", "101.3us", "5.00ms", "1.20s"]


def test_nearest_rank_percentile() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.5) == 0


def test_summary_stats_and_log2_histogram() -> None:
    summary = Summary()
    for value in (1_000, 1_500, 3_000, 1_000_000):
        summary.add(value)
    assert summary.stats() == {"count": 4, "total": 1_005_500, "max": 1_000_000,
                               "p50": 1_500, "p99": 1_000_000}
    # [512, 1024): 1000; [1024, 2048): 1500; [2048, 4096): 3000; [2^19, 2^20): 1e6
    assert summary.histogram() == [(512, 1), (1024, 1), (2048, 1), (524288, 1)]


def test_loglinear_buckets_cover_every_value_once() -> None:
    previous_high = 0
    for index in range(272):
        low, high = loglinear_bounds(index)
        assert low == previous_high and high > low
        previous_high = high
        assert loglinear_index(low) == index and loglinear_index(high - 1) == index


def test_loglinear_percentile_within_a_sixteenth() -> None:
    values = [50_000 + 37 * i for i in range(101)]  # 50.0 .. 53.7 us
    counts = [0] * 272
    for v in values:
        counts[loglinear_index(v)] += 1
    p50 = loglinear_percentile(counts, 0.5, max(values))
    assert abs(p50 - percentile(sorted(values), 0.5)) <= percentile(sorted(values), 0.5) / 16
    assert loglinear_percentile(counts, 1.0, max(values)) <= max(values)
    assert loglinear_percentile([0] * 272, 0.5, 0) == 0
    assert loglinear_percentile([0, 0, 5], 0.99, 9) == 2, "small values are exact"
