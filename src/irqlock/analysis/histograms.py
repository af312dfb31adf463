"""Summaries of measured durations: log2 histograms and percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from irqlock.bpf.constants import HIST_BUCKETS, HIST_SUB_BITS


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Summary:
    """Count, total, max, p50, p99 and a log2 histogram (bucket i: [2^i, 2^(i+1)) ns)."""

    values: list[int] = field(default_factory=list)

    def add(self, value: int) -> None:
        self.values.append(value)

    def stats(self) -> dict[str, int]:
        ordered = sorted(self.values)
        return {"count": len(ordered), "total": sum(ordered), "max": ordered[-1] if ordered else 0,
                "p50": percentile(ordered, 0.50), "p99": percentile(ordered, 0.99)}

    def histogram(self) -> list[tuple[int, int]]:
        """(bucket lower bound in ns, count) for each non-empty log2 bucket, ascending."""
        buckets: dict[int, int] = {}
        for value in self.values:
            low = 1 << max(value, 1).bit_length() - 1
            buckets[low] = buckets.get(low, 0) + 1
        return sorted(buckets.items())


# Log-linear histograms aggregated in BPF (locks.h): 0..7 exactly, then 8 buckets per power
# of two.  A value read back is its bucket's middle: within 1/16 of the true one.
LOGLIN_SUB = 1 << HIST_SUB_BITS
LOGLIN_BUCKETS = HIST_BUCKETS  # the last one also holds everything from 2^36 ns up


def loglinear_bounds(index: int) -> tuple[int, int]:
    """[low, high) of a log-linear bucket."""
    if index < LOGLIN_SUB:
        return index, index + 1
    exponent, sub = index // LOGLIN_SUB + 2, index % LOGLIN_SUB
    width = 1 << (exponent - 3)
    low = (LOGLIN_SUB + sub) * width
    return low, low + width


def loglinear_index(value: int) -> int:
    """The bucket locks.bpf.c puts a value in (the same arithmetic, for tests and merging)."""
    if value < LOGLIN_SUB:
        return value
    exponent = value.bit_length() - 1
    if exponent > 35:
        return LOGLIN_BUCKETS - 1
    return (exponent - 2) * LOGLIN_SUB + ((value >> (exponent - 3)) & (LOGLIN_SUB - 1))


def loglinear_percentile(counts: Sequence[int], fraction: float, max_value: int) -> int:
    """Nearest-rank percentile from bucket counts: the bucket's middle, never above max_value."""
    total = sum(counts)
    if not total:
        return 0
    rank, seen = max(1, math.ceil(fraction * total)), 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            low, high = loglinear_bounds(index)
            return min((low + high - 1) // 2 if high - low > 1 else low, max_value)
    return max_value
