"""Summaries of measured durations: log2 histograms and percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


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
