"""Prometheus metrics of a running session, in the text exposition format (version 0.0.4).

Windows become histograms (IRQ-off by CPU, source and kind; IRQ lines by IRQ),
the busiest locks' hold and wait times histograms by lock, findings and drops
counters.  Written by hand: the format is simple and irqlock needs no library
at run time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Seconds; the same ladder for every latency, from 1 us to 10 s.
BUCKETS_S = (1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
             5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
TOP_LOCKS = 50  # locks with their own series (a busy machine has thousands)
FINDINGS = {"lock_cycle": "irqlock_lock_cycles_total", "irq_unsafe_lock":
            "irqlock_irq_unsafe_locks_total", "deadlock": "irqlock_deadlocks_total",
            "hung_task": "irqlock_hung_tasks_total"}
HELP = {
    "irqlock_irqoff_duration_seconds": "IRQ-off windows over the threshold",
    "irqlock_irq_disabled_duration_seconds": "windows in which an IRQ line was disabled",
    "irqlock_lock_hold_seconds": "lock hold times of the busiest locks",
    "irqlock_lock_wait_seconds": "contended lock waits of the busiest locks",
    "irqlock_lock_acquisitions_total": "lock acquisitions of the busiest locks",
    "irqlock_lock_cycles_total": "lock-order cycles found",
    "irqlock_irq_unsafe_locks_total": "locks taken in hardirq and held with interrupts on",
    "irqlock_deadlocks_total": "wait-for cycles among blocked tasks",
    "irqlock_hung_tasks_total": "tasks blocked in D state past the threshold",
    "irqlock_kernel_reports_total": "hung-task, lockup and lockdep reports of the kernel",
    "irqlock_lost_events_total": "events the tracers could not deliver",
    "irqlock_recursion_misses_total": "probe hits the kernel skipped (a BPF program was running)",
    "irqlock_lock_acquisitions_missed_total": "lock acquisitions the programs never saw (the "
                                              "kernel skipped them; PREEMPT_RT: see check)",
    "irqlock_dropped_total": "entries not kept because a map was full",
    "irqlock_sampler_blind_seconds_total": "time the irqoff sampler saw nothing: no tick came "
                                           "to a running CPU (a hypervisor held it back)",
    "irqlock_up": "1 while the session runs",
}
Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float, times: int = 1) -> None:
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                self.counts[i] += times
                break
        self.total += seconds * times
        self.count += times

    def lines(self, name: str, labels: Labels) -> list[str]:
        result, cumulative = [], 0
        for bound, count in zip(BUCKETS_S, self.counts, strict=True):
            cumulative += count
            le = 'le="' + str(bound) + '"'
            result.append(f"{name}_bucket{_labels(labels, le)} {cumulative}")
        infinity = 'le="+Inf"'
        result.append(f"{name}_bucket{_labels(labels, infinity)} {self.count}")
        result.append(f"{name}_sum{_labels(labels)} {_number(self.total)}")
        result.append(f"{name}_count{_labels(labels)} {self.count}")
        return result


class Metrics:
    """What a session has seen so far, as Prometheus metrics."""

    def __init__(self) -> None:
        self.histograms: dict[str, dict[Labels, Histogram]] = {}
        self.counters: dict[str, dict[Labels, float]] = {}
        self.gauges: dict[str, dict[Labels, float]] = {"irqlock_up": {(): 1}}
        self.lock_histograms: dict[str, dict[Labels, Histogram]] = {}
        self.lock_counters: dict[Labels, float] = {}
        self.stats_counters: dict[str, dict[Labels, float]] = {}
        for name in FINDINGS.values():
            self.counters[name] = {(): 0}

    def _hist(self, name: str, labels: Labels) -> Histogram:
        return self.histograms.setdefault(name, {}).setdefault(labels, Histogram())

    def _count(self, name: str, labels: Labels = (), by: float = 1) -> None:
        series = self.counters.setdefault(name, {})
        series[labels] = series.get(labels, 0) + by

    def observe(self, record: dict[str, Any]) -> None:
        """Count one record of a tracer (docs/records.md)."""
        kind = record["type"]
        labels: Labels
        if kind == "irqoff":
            labels = (("cpu", str(record["cpu"])), ("source", record["source"]),
                      ("kind", record["kind"]))
            self._hist("irqlock_irqoff_duration_seconds", labels).observe(
                record["duration_ns"] / 1e9)
        elif kind == "irq_disabled":
            labels = (("irq", str(record["irq"])), ("irq_name", record["irq_name"] or ""))
            self._hist("irqlock_irq_disabled_duration_seconds", labels).observe(
                record["duration_ns"] / 1e9)
        elif kind in FINDINGS:
            self._count(FINDINGS[kind])
        elif kind == "kernel_report":
            self._count("irqlock_kernel_reports_total", (("kind", record["kind"]),))

    def set_locks(self, locks: Iterable[dict[str, Any]]) -> None:
        """The busiest locks now (the lock tracer's totals since the last clear)."""
        ranked = sorted(locks, key=lambda r: -r["hold_ns"]["total"])[:TOP_LOCKS]
        self.lock_histograms = {"irqlock_lock_hold_seconds": {}, "irqlock_lock_wait_seconds": {}}
        self.lock_counters = {}
        for r in ranked:
            labels = (("lock", r["name"] or f"{r['kind']}@{r['site'] or r['addr']}"),
                      ("kind", r["kind"]))
            for name, key, timing in (("irqlock_lock_hold_seconds", "hold_histogram", "hold_ns"),
                                      ("irqlock_lock_wait_seconds", "wait_histogram", "wait_ns")):
                hist = Histogram()
                for low, count in r.get(key, []):
                    hist.observe(low / 1e9, count)
                hist.total = r[timing]["total"] / 1e9  # the true sum, not the buckets' bounds
                self.lock_histograms[name][labels] = hist
            self.lock_counters[labels] = r["acquisitions"]

    def set_stats(self, stats: Iterable[dict[str, Any]]) -> None:
        """Drop counters of each tracer (monotonic in the tracer: set, not added)."""
        self.stats_counters = {"irqlock_lost_events_total": {},
                               "irqlock_recursion_misses_total": {}, "irqlock_dropped_total": {},
                               "irqlock_lock_acquisitions_missed_total": {},
                               "irqlock_sampler_blind_seconds_total": {}}
        for s in stats:
            tool = (("tool", s.get("tool", "?")),)
            if "blind_ns" in s:
                self.stats_counters["irqlock_sampler_blind_seconds_total"][tool] = \
                    s["blind_ns"] / 1e9
            self.stats_counters["irqlock_lost_events_total"][tool] = s.get("lost_events", 0)
            self.stats_counters["irqlock_recursion_misses_total"][tool] = \
                s.get("recursion_misses", 0)
            if "acquisitions_missed" in s:
                self.stats_counters["irqlock_lock_acquisitions_missed_total"][tool] = \
                    s["acquisitions_missed"]
            for key, value in s.items():
                if key.endswith("_dropped") and isinstance(value, int):
                    self.stats_counters["irqlock_dropped_total"][
                        (*tool, ("what", key.removesuffix("_dropped")))] = value


    def text(self) -> str:
        lines: list[str] = []

        def header(name: str, kind: str) -> None:
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} {kind}")

        for group in (self.histograms, self.lock_histograms):
            for name, series in sorted(group.items()):
                header(name, "histogram")
                for labels, hist in sorted(series.items()):
                    lines.extend(hist.lines(name, labels))
        if self.lock_counters:
            header("irqlock_lock_acquisitions_total", "counter")
            for labels, value in sorted(self.lock_counters.items()):
                lines.append(f"irqlock_lock_acquisitions_total{_labels(labels)} {_number(value)}")
        plain = [(name, values, "counter") for name, values in self.counters.items()]
        plain += [(name, values, "counter") for name, values in self.stats_counters.items()]
        plain += [(name, values, "gauge") for name, values in self.gauges.items()]
        for name, values, kind in sorted(plain, key=lambda entry: entry[0]):
            header(name, kind)
            for labels, value in sorted(values.items()):
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"
