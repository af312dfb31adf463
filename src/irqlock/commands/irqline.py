"""`irqlock irq`: windows in which named IRQ lines were disabled, and their handlers' run times."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, TextIO

from irqlock import session
from irqlock.analysis.histograms import Summary
from irqlock.kernel.features import KernelFeatures
from irqlock.tracers.irqline import (
    HandlerStats,
    IrqDisabled,
    IrqlineConfig,
    IrqlineTracer,
    validate,
)
from irqlock.units import format_ns


def _stack_lines(title: str, stack: list[str]) -> str:
    return f"  {title}:\n" + "".join(f"    {frame}\n" for frame in stack) if stack else ""


class IrqlinePrinter:
    """Console or JSON-lines output of windows, then per-IRQ summaries and handler histograms."""

    def __init__(self, as_json: bool, out: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self.out = out
        self.summaries: dict[int, Summary] = defaultdict(Summary)
        self.names: dict[int, str] = {}

    def write_record(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")

    def window(self, w: IrqDisabled) -> None:
        if w.duration_ns is not None:
            self.summaries[w.irq].add(w.duration_ns)
        self.names[w.irq] = w.irq_name
        if self.as_json:
            self.write_record(w.to_json())
            self.out.flush()
            return
        label = f"IRQ {w.irq} ({w.irq_name or 'no handler'})"
        if w.duration_ns is None:
            self.out.write(f"{label} still disabled at the end, since {w.start_ns / 1e9:.6f}: "
                           f"off by pid {w.disable_pid} {w.disable_comm}\n")
        else:
            self.out.write(f"{label} disabled {format_ns(w.duration_ns)} at "
                           f"{w.start_ns / 1e9:.6f}: off by pid {w.disable_pid} {w.disable_comm}, "
                           f"on by pid {w.enable_pid} {w.enable_comm}\n")
        self.out.write(_stack_lines("disabled at", w.disable_stack)
                       + _stack_lines("enabled at", w.enable_stack))
        self.out.flush()

    def summary(self, handlers: list[HandlerStats], stats: dict[str, Any]) -> None:
        if self.as_json:
            for irq, s in sorted(self.summaries.items()):
                self.write_record({"type": "irq_summary", "irq": irq, "irq_name": self.names[irq],
                             **s.stats(), "histogram": s.histogram()})
            for h in handlers:
                self.write_record(h.to_json())
            self.write_record(stats)
            return
        self.out.write("\nsummary (windows over the threshold):\n")
        if not self.summaries:
            self.out.write("  none\n")
        for irq, s in sorted(self.summaries.items()):
            st = s.stats()
            self.out.write(f"  IRQ {irq} ({self.names[irq]}): {st['count']} windows, max "
                           f"{format_ns(st['max'])}, p50 {format_ns(st['p50'])}, "
                           f"p99 {format_ns(st['p99'])}\n")
        for h in handlers:
            thread = f" (threaded: its irq/{h.irq} thread's run)" if h.threaded else ""
            self.out.write(f"\nIRQ {h.irq} ({h.irq_name}){thread} handler run time: {h.count} runs, "
                           f"avg {format_ns(h.total_ns // max(h.count, 1))}, "
                           f"max {format_ns(h.max_ns)}, p99 <= {format_ns(h.percentile_bound(0.99))}\n")
            for low, count in h.buckets:
                self.out.write(f"  {format_ns(low):>9} .. {format_ns(2 * low):<9} {count:8d} "
                               f"{'*' * min(count * 40 // max(h.count, 1) or 1, 40)}\n")
        self.out.write(f"stats: lost {stats['lost_events']}, recursion misses "
                       f"{stats['recursion_misses']}, map full {stats['map_full']}, enables whose "
                       f"disable came before the start {stats['unmatched_enables']}\n")
        if stats["lost_events"]:
            self.out.write(f"WARNING: {stats['lost_events']} windows were lost (ring buffer full)\n")
        if stats["map_full"]:
            self.out.write(f"WARNING: {stats['map_full']} disables or handler runs did not fit "
                           "in their maps\n")


def run(config: IrqlineConfig, features: KernelFeatures, duration_s: float | None,
        ready_file: Path | None, as_json: bool) -> int:
    method = validate(config, features)
    printer = IrqlinePrinter(as_json)
    with IrqlineTracer(config, method, printer.window) as tracer:
        which = "every IRQ" if config.irqs is None else \
            ", ".join(f"{irq} ({tracer.name(irq) or 'no handler'})" for irq in config.irqs)
        if as_json:
            printer.write_record({"type": "irq_plan", "irqs": config.irqs, "method": tracer.method,
                            "handlers": config.handlers})
        else:
            printer.out.write(f"Tracing disabled windows of IRQ {which} over "
                              f"{format_ns(config.threshold_ns)} (exact, via {tracer.method})"
                              f"{' and handler run times' if config.handlers else ''}. "
                              "Ctrl-C to stop.\n")
        printer.out.flush()
        session.run(tracer.poll, duration_s, ready_file, tracer.detach)
        for window in tracer.still_disabled():
            printer.window(window)
        printer.summary(tracer.handler_stats() if config.handlers else [], tracer.stats())
    return 0
