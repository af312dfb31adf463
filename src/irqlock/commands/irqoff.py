"""`irqlock irqoff`: IRQ-off windows over a threshold, one line each, and a summary at the end."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, TextIO

from irqlock import session
from irqlock.analysis.histograms import Summary
from irqlock.kernel.features import KernelFeatures
from irqlock.tracers.irqoff import (
    BlindSpan,
    IrqoffConfig,
    IrqoffTracer,
    IrqoffWindow,
    validate,
)
from irqlock.units import format_ns


class IrqoffPrinter:
    """Console or JSON-lines output of windows, plus per-CPU/per-source summaries."""

    def __init__(self, as_json: bool, out: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self.out = out
        self.summaries: dict[tuple[int, str, str], Summary] = defaultdict(Summary)

    def window(self, w: IrqoffWindow) -> None:
        if w.confirmed:  # the unconfirmed (--unconfirmed) stay out of the summaries
            self.summaries[(w.cpu, w.kind, w.source)].add(w.duration_ns)
        if self.as_json:
            self.out.write(json.dumps(w.to_json()) + "\n")
            self.out.flush()
            return
        bound = f" ±{format_ns(w.error_ns)}" if w.error_ns else ""
        unconfirmed = "" if w.confirmed else " UNCONFIRMED"
        self.out.write(f"{w.kind} off {format_ns(w.duration_ns)}{bound} cpu {w.cpu} "
                       f"pid {w.pid} {w.comm} [{w.source}{unconfirmed}] at "
                       f"{w.start_ns / 1e9:.6f}\n")
        if w.disable_stack:
            self.out.write("  disabled at:\n" + "".join(f"    {f}\n" for f in w.disable_stack))
        elif w.disable_ip:
            self.out.write(f"  disabled at: {w.disable_ip}\n")
        if w.enable_stack:
            self.out.write("  enabled at:\n" + "".join(f"    {f}\n" for f in w.enable_stack))
        self.out.flush()

    def blind(self, span: BlindSpan) -> None:
        if self.as_json:
            self.out.write(json.dumps(span.to_json()) + "\n")
        else:
            self.out.write(f"sampler blind {format_ns(span.duration_ns)} cpu {span.cpu} at "
                           f"{span.start_ns / 1e9:.6f}: no tick came, though the CPU kept "
                           "running; IRQ-off windows in there are not seen\n")
        self.out.flush()

    def summary(self, stats: dict[str, Any]) -> None:
        if self.as_json:
            for (cpu, kind, source), s in sorted(self.summaries.items()):
                self.out.write(json.dumps({"type": "irqoff_summary", "cpu": cpu, "kind": kind,
                                           "source": source, **s.stats(),
                                           "histogram": s.histogram()}) + "\n")
            self.out.write(json.dumps(stats) + "\n")
            return
        self.out.write("\nsummary (windows over the threshold):\n")
        for (cpu, kind, source), s in sorted(self.summaries.items()):
            st = s.stats()
            self.out.write(f"cpu {cpu} {kind} [{source}]: {st['count']} windows, "
                           f"max {format_ns(st['max'])}, p50 {format_ns(st['p50'])}, "
                           f"p99 {format_ns(st['p99'])}\n")
            for low, count in s.histogram():
                self.out.write(f"  {format_ns(low):>9} .. {format_ns(2 * low):<9} {count:6d} "
                               f"{'*' * min(count, 40)}\n")
        lost = stats["lost_events"]
        self.out.write(f"stats: lost {lost}, recursion misses {stats['recursion_misses']}, "
                       f"unmatched opens {stats['unmatched_opens']}, "
                       f"stale lock windows {stats['stale_windows']}"
                       + (f", not attached: {', '.join(stats['not_attached'])}"
                          if stats["not_attached"] else "") + "\n")
        if lost:
            self.out.write(f"WARNING: {lost} windows were lost (ring buffer full)\n")
        stalled = stats.get("stalled_windows", 0)
        unconfirmed = stats.get("unconfirmed_windows", 0) - stalled
        if unconfirmed:
            self.out.write(f"{unconfirmed} sampled windows set aside: their closing tick landed "
                           "in ordinary code, not where interrupts come back on (after an sti "
                           "or a popf), so nothing shows interrupts were off "
                           "(a virtual CPU run late looks the same); --unconfirmed shows them\n")
        if stalled:
            self.out.write(f"{stalled} sampled windows set aside: every CPU's ticks stopped at "
                           "once (a hypervisor paused the machine; interrupts turned off stop "
                           "one CPU's); --unconfirmed shows them\n")
        blind = stats.get("blind_spans_over_threshold", 0)
        if blind:
            self.out.write(f"WARNING: the sampler was blind {blind} times over the threshold "
                           f"(longest {format_ns(stats['blind_max_ns'])}): no tick came to a "
                           "CPU that kept running (a hypervisor holding its timer interrupt "
                           "back); IRQ-off windows in there are not seen; --unconfirmed "
                           "lists them\n")
        late = stats.get("sampler_late_max_ns", 0)
        if late > stats.get("sampler_period_ns", 0) // 2 > 0:
            self.out.write(f"WARNING: sampler ticks came up to {late // 1000} us late (a hypervisor "
                           "running this CPU late?): sampled windows may end that much later than "
                           "error_ns says\n")


def run(config: IrqoffConfig, features: KernelFeatures, duration_s: float | None,
        ready_file: Path | None, as_json: bool) -> int:
    plan = validate(config, features)
    printer = IrqoffPrinter(as_json)
    with IrqoffTracer(config, plan, printer.window, on_blind=printer.blind) as tracer:
        description = plan.describe(config.period_ns)
        if as_json:
            printer.out.write(json.dumps({"type": "irqoff_plan", "mode": config.mode,
                                          "sources": description}) + "\n")
        else:
            printer.out.write(f"Tracing IRQ-off windows over {format_ns(config.threshold_ns)} "
                              f"({description}). Ctrl-C to stop.\n")
        printer.out.flush()
        session.run(tracer.poll, duration_s, ready_file, tracer.detach)
        printer.summary(tracer.stats())
    return 0
