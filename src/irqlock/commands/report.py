"""`irqlock report`: a recording as a console summary, JSON lines, an HTML page or folded stacks."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, TextIO

from irqlock.analysis.histograms import Summary
from irqlock.errors import IrqlockError
from irqlock.report import cycle_lock_label, html
from irqlock.report.recording import RecordingReader
from irqlock.units import format_ns

TOP = 10


def folded_stacks(records: list[dict[str, Any]]) -> list[str]:
    """IRQ-off time by the stack that turned interrupts off, in FlameGraph's folded format
    ("outer;...;inner NANOSECONDS"), which speedscope and flamegraph.pl read."""
    weights: dict[str, int] = defaultdict(int)
    for r in records:
        if r["type"] == "irqoff":
            frames = [f.replace(";", ":").replace(" ", "_") for f in reversed(r["disable_stack"])]
            weights[";".join(frames) or "[no stack]"] += r["duration_ns"]
    return [f"{stack} {weight}" for stack, weight in sorted(weights.items())]


def summary(records: list[dict[str, Any]], meta: dict[str, Any], out: TextIO) -> None:
    """What a user wants first: how much of what, the worst of each, the findings."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_type[r["type"]].append(r)
    state = "" if meta.get("finished") else " (cut short: the run did not finish)"
    out.write(f"recording of {', '.join(meta.get('tools', []))} on {meta.get('kernel', '?')}, "
              f"started {meta.get('started_at', '?')}{state}\n")
    windows: dict[tuple[int, str], Summary] = defaultdict(Summary)
    for w in by_type["irqoff"]:
        windows[(w["cpu"], w["source"])].add(w["duration_ns"])
    if by_type["irqoff"]:
        out.write(f"\nIRQ-off windows: {len(by_type['irqoff'])}\n")
        for (cpu, source), s in sorted(windows.items()):
            st = s.stats()
            out.write(f"  cpu {cpu} [{source}]: {st['count']}, max {format_ns(st['max'])}, "
                      f"p50 {format_ns(st['p50'])}, p99 {format_ns(st['p99'])}\n")
    lines: dict[int, Summary] = defaultdict(Summary)
    for w in by_type["irq_disabled"]:
        lines[w["irq"]].add(w["duration_ns"])
    if lines:
        out.write(f"\nIRQ lines disabled: {len(by_type['irq_disabled'])} windows\n")
        for irq, s in sorted(lines.items()):
            st = s.stats()
            out.write(f"  IRQ {irq}: {st['count']}, max {format_ns(st['max'])}, "
                      f"p50 {format_ns(st['p50'])}\n")
    if by_type["lock"]:
        out.write(f"\nlocks: {len(by_type['lock'])}, top {TOP} by total hold time:\n")
        for r in sorted(by_type["lock"], key=lambda r: -r["hold_ns"]["total"])[:TOP]:
            label = r["name"] or f"{r['kind']}@{r['site'] or r['addr']}"
            out.write(f"  {label[:40]:<40} {r['kind']:<8} {r['acquisitions']:>9} acquired, hold "
                      f"p50 {format_ns(r['hold_ns']['p50'])} max {format_ns(r['hold_ns']['max'])}"
                      f", wait max {format_ns(r['wait_ns']['max'])}\n")
    for kind, title in (("lock_cycle", "lock-order cycles"), ("irq_unsafe_lock", "IRQ-unsafe locks"),
                        ("deadlock", "deadlocks"), ("hung_task", "hung tasks"),
                        ("kernel_report", "kernel reports")):
        if by_type[kind]:
            out.write(f"\n{title}: {len(by_type[kind])}\n")
            for r in by_type[kind][:TOP]:
                out.write(f"  {_finding(r)}\n")
    lost = sum(s.get("lost_events", 0) for s in by_type["stats"])
    if lost:
        out.write(f"\nWARNING: {lost} events were lost while recording\n")


def _finding(r: dict[str, Any]) -> str:
    kind = r["type"]
    if kind == "lock_cycle":
        return f"[{r.get('level', 'instance')}] " + " -> ".join(
            cycle_lock_label(r, lock) for lock in [*r["locks"], r["locks"][0]])
    if kind == "irq_unsafe_lock":
        return f"{r['name'] or r['addr']}: taken in hardirq, held with interrupts on by " \
               f"{r['comm']}[{r['pid']}]"
    if kind == "deadlock":
        return ", ".join(f"{t['comm']}[{t['pid']}] waits for {t['lock_name'] or t['waits_for']}"
                         for t in r["tasks"])
    if kind == "hung_task":
        return f"{r['comm']}[{r['pid']}] blocked {format_ns(r['blocked_ns'])}" + (
            f" waiting for {r['lock_name'] or r['waits_for']}" if r["waits_for"] else "")
    return str(r.get("message", ""))


def run(path: Path, as_json: bool, html_path: Path | None, folded_path: Path | None) -> int:
    reader = RecordingReader(path)
    try:
        records = list(reader.records())
        meta = reader.meta
    finally:
        reader.close()
    try:
        if html_path:
            html_path.write_text(html.render(records, meta))
        if folded_path:
            folded_path.write_text("\n".join(folded_stacks(records)) + "\n")
    except OSError as exc:
        raise IrqlockError(f"cannot write {exc.filename}: {exc.strerror}") from None
    if as_json:
        for record in records:
            sys.stdout.write(json.dumps(record) + "\n")
    else:
        summary(records, meta, sys.stdout)
        for label, written in (("HTML report", html_path), ("folded stacks", folded_path)):
            if written:
                sys.stdout.write(f"{label}: {written}\n")
    return 0
