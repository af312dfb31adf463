"""`irqlock locks`: a top-N table (or JSON lines) of kernel locks by hold or wait time."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from irqlock import session
from irqlock.kernel.features import KernelFeatures
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from irqlock.tracers.locks import (
    GUARD_FULL_WARNING,
    ClassRecord,
    Coverage,
    LockRecord,
    LocksTracer,
    by_class,
    validate,
)
from irqlock.units import format_ns

Row = LockRecord | ClassRecord  # a lock, or (--by class) the locks of one class together
SORT_KEYS: dict[str, Callable[[Row], int]] = {
    "hold_total": lambda r: r.hold.total,
    "hold_max": lambda r: r.hold.max,
    "wait_total": lambda r: r.wait.total,
    "wait_max": lambda r: r.wait.max,
    "count": lambda r: r.acquisitions,
}
CONSOLE_TOP = 20
HOLDERS_SHOWN = 3
COVERAGE_WARNING = 0.99  # below this share of acquisitions in the locks shown, say so


@dataclass
class LocksOutput:
    as_json: bool
    sort: str = "hold_total"
    top: int | None = None
    stacks: bool = False
    by: str = "lock"  # or "class"


def _cell(ns: int) -> str:
    return format_ns(ns) if ns else "-"


class LocksPrinter:
    def __init__(self, output: LocksOutput, out: TextIO = sys.stdout) -> None:
        self.output = output
        self.out = out

    def ranked(self, rows: list[Row]) -> list[Row]:
        ordered = sorted(rows, key=SORT_KEYS[self.output.sort], reverse=True)
        top = self.output.top
        if top is None and not self.output.as_json:
            top = CONSOLE_TOP
        return ordered if top is None else ordered[:top]

    def table(self, records: list[LockRecord], elapsed_s: float,
              coverage: Coverage | None = None) -> None:
        rows: list[Row] = list(by_class(records)) if self.output.by == "class" else list(records)
        shown = self.ranked(rows)
        if self.output.as_json:
            for row in shown:
                self.out.write(json.dumps(row.to_json()) + "\n")
            self.out.flush()
            return
        what = f"classes ({len(records)} locks)" if self.output.by == "class" else "locks"
        self.out.write(f"\n{len(rows)} {what} in {elapsed_s:.1f} s, top {len(shown)} by "
                       f"{self.output.sort}:\n")
        if coverage and coverage.missed:
            self.out.write(f"(counted from {coverage.counted_share:.1%} of the acquisitions: "
                           f"{coverage.missed} were missed, the kernel skipped our programs; "
                           "counts and times below leave them out)\n")
        first = "CLASS (LOCKS)" if self.output.by == "class" else "LOCK"
        self.out.write(f"{first:<30} {'KIND':<8} {'ACQUIRED':>9} {'CONTEND':>7} "
                       f"{'HOLD p50':>9} {'p99':>8} {'max':>8} {'WAIT p50':>9} {'max':>8}\n")
        for r in shown:
            label = f"{r.label} ({r.locks})" if isinstance(r, ClassRecord) else r.label
            if len(label) > 30:  # the end tells classes apart (the offset, the lock count)
                label = "..." + label[-27:]
            self.out.write(f"{label:<30} {r.kind:<8} {r.acquisitions:>9} "
                           f"{r.contended:>7} {_cell(r.hold.p50):>9} {_cell(r.hold.p99):>8} "
                           f"{_cell(r.hold.max):>8} {_cell(r.wait.p50):>9} "
                           f"{_cell(r.wait.max):>8}\n")
            for h in r.holders[:HOLDERS_SHOWN]:
                self.out.write(f"    {h.comm}[{h.pid}] {h.acquisitions} times\n")
                if self.output.stacks:
                    self.out.write("".join(f"        {f}\n" for f in h.first_stack))
            if len(r.holders) > HOLDERS_SHOWN:
                self.out.write(f"    and {len(r.holders) - HOLDERS_SHOWN} more tasks\n")
        self.out.flush()

    def stats(self, stats: dict[str, Any]) -> None:
        if self.output.as_json:
            self.out.write(json.dumps(stats) + "\n")
            return
        self.out.write(
            f"stats: locks {stats['locks_dropped']} not tracked (--max-locks "
            f"{stats['max_locks']}), holders {stats['holders_dropped']} not tracked, "
            f"tasks {stats['tasks_dropped']} not tracked, stale held entries "
            f"{stats['held_overflow']}, recursion misses {stats['recursion_misses']}, "
            f"acquisitions {stats.get('acquisitions_seen', 0)} "
            f"({stats.get('covered_share', 1.0):.2%} in the locks kept), "
            f"maps {stats['map_bytes'] // 1024} KiB; probes: {stats.get('probe', 'fentry')}; "
            f"waits: {stats['waits']}\n")
        dropped = stats["locks_dropped"] + stats["holders_dropped"] + stats["tasks_dropped"]
        if dropped:
            self.out.write(f"WARNING: {dropped} acquisitions were not fully tracked: the maps "
                           "were full (raise --max-locks)\n")
        if stats.get("guard_full"):
            self.out.write(f"WARNING: {stats['guard_full']} {GUARD_FULL_WARNING}\n")
        share = stats.get("covered_share")
        if share is not None and share < COVERAGE_WARNING:
            self.out.write(f"WARNING: the locks shown cover {share:.1%} of the "
                           f"{stats['acquisitions_seen']} acquisitions seen: the others' locks "
                           f"did not fit in {stats['max_locks']} (the least recently used gave "
                           "way; raise --max-locks)\n")
        if stats.get("acquisitions_missed"):
            self.out.write(f"WARNING: {stats['acquisitions_missed']} acquisitions were missed "
                           f"({1 - stats['counted_share']:.2%}): the kernel skipped our program "
                           "while another run of it was going on on the CPU (an interrupt over "
                           "it, or a task preempted inside it)\n")
        if stats.get("returns_missed"):
            self.out.write(f"WARNING: {stats['returns_missed']} acquisitions were not counted: "
                           "their kretprobe ran out of instances (more tasks waiting at once "
                           "than it has)\n")


def run(config: LocksConfig, lock_text: str | None, features: KernelFeatures,
        output: LocksOutput, duration_s: float | None, interval_s: float | None,
        count: int | None, ready_file: Path | None) -> int:
    validate(config, lock_text, features)
    plan = choose_functions(config, features)
    printer = LocksPrinter(output)
    with LocksTracer(config, plan) as tracer:
        if output.as_json:
            printer.out.write(json.dumps({"type": "locks_plan", "kinds": config.kinds,
                                          "functions": len(plan.functions),
                                          "probe": plan.method,
                                          "contention": plan.contention}) + "\n")
        else:
            printer.out.write(f"Tracing {', '.join(config.kinds)} locks: {len(plan.functions)} "
                              f"functions via {plan.method}"
                              f"{', waits from lock:contention' if plan.contention else ''}. "
                              "Ctrl-C to stop.\n")
        printer.out.flush()
        started = last = time.monotonic()
        tables = 0

        def tables_to_come() -> bool:
            return count is None or tables < count

        def poll(timeout_ms: int) -> int:
            nonlocal last, tables
            time.sleep(timeout_ms / 1000)
            # (also polled once more after detaching: no table past the count then)
            if interval_s is not None and tables_to_come() \
                    and time.monotonic() - last >= interval_s:
                now = time.monotonic()
                printer.table(tracer.snapshot(), now - last, tracer.covered)
                tables += 1
                if tables_to_come():
                    tracer.clear()
                last = now
            return 0

        # With a count the run ends after that many tables, however long each took to make.
        session.run(poll, duration_s, ready_file, tracer.detach,
                    finished=lambda: not tables_to_come())
        now = time.monotonic()
        # An interval cut short (by -d or Ctrl-C) is shown unless it is a mere sliver.
        if interval_s is None or (tables_to_come() and now - last > interval_s / 10):
            printer.table(tracer.snapshot(), now - (started if interval_s is None else last),
                          tracer.covered)
        printer.stats(tracer.stats())
    return 0
