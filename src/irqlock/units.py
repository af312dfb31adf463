"""Durations on the command line: `500ns`, `100us`, `2ms`, `1s`; a bare number is microseconds."""

from __future__ import annotations

import re

from irqlock.errors import IrqlockError

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?")


def parse_duration_ns(text: str) -> int:
    """Parse a duration into nanoseconds; raises IrqlockError with the accepted forms."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise IrqlockError(f"bad duration {text!r}: use e.g. 500ns, 100us, 2ms, 1s "
                           "(a bare number is microseconds)")
    value, unit = float(match.group(1)), match.group(2) or "us"
    return round(value * _UNITS[unit])


def format_ns(ns: int) -> str:
    """Human form of a duration: 812ns, 101.3us, 5.00ms, 1.20s."""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f}ms"
    return f"{ns / 1_000_000_000:.2f}s"
