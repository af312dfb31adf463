"""The soak's memory verdict: growth and drift judged, a momentary dip only recorded."""

from __future__ import annotations

import pytest

from tests.kernel.soak import memory_trend


def test_flat_with_a_dip_is_flat() -> None:
    trend = memory_trend([100] * 10 + [80] + [100] * 10)
    assert trend["rss_growth"] == 0 and trend["rss_drift"] == 0
    assert trend["rss_dip"] == pytest.approx(0.2)


def test_a_leak_grows_and_drifts() -> None:
    trend = memory_trend(list(range(100, 160, 2)))
    assert trend["rss_growth"] > 0.10 and trend["rss_drift"] > 0.10


def test_too_few_samples_judge_nothing() -> None:
    assert memory_trend([1, 2]) == {"rss_growth": 0.0, "rss_drift": 0.0, "rss_dip": 0.0}
