"""`irqlock deadlock`: lock-order cycles, IRQ-unsafe locks, live deadlocks and hung tasks."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from irqlock import session
from irqlock.kernel.features import KernelFeatures
from irqlock.kernel.kmsg import KernelReport
from irqlock.kernel.tasks import task_comm
from irqlock.tracers.deadlock import DeadlockOptions, DeadlockWatch, Finding, validate
from irqlock.tracers.findings import Deadlock, HungTask, IrqUnsafeLock, LockCycle, LockRef
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from irqlock.tracers.locks import GUARD_FULL_WARNING, LocksTracer
from irqlock.units import format_ns

MISSED_WARNING = 0.01  # recursion misses over this share of acquisitions: say so


def _frames(stack: list[str], indent: str = "      ") -> str:
    return "".join(f"{indent}{frame}\n" for frame in stack) if stack else f"{indent}(no stack)\n"


class DeadlockPrinter:
    """Console (lockdep-style reports) or JSON lines."""

    def __init__(self, as_json: bool, out: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self.out = out
        self.counts = {"lock_cycle": 0, "irq_unsafe_lock": 0, "deadlock": 0, "hung_task": 0,
                       "kernel_report": 0}

    def _json(self, record: dict[str, Any]) -> None:
        self.counts[record["type"]] = self.counts.get(record["type"], 0) + 1
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def cycle(self, c: LockCycle) -> None:
        if self.as_json:
            return self._json(c.to_json())
        self.counts["lock_cycle"] += 1
        chain = " -> ".join([*c.labels, c.labels[0]])
        between = "lock classes" if c.level == "class" else "locks"
        self.out.write(f"\npossible circular locking dependency ({len(c.locks)} {between}): "
                       f"{chain}\n")
        if c.level == "class":
            self.out.write("  (taken in both orders by locks of these classes -- not "
                           "necessarily the same instances)\n")
        if c.also_class:
            self.out.write("  (static locks, each a class of its own: the cycle between "
                           "their classes too)\n")
        same = c.locks[0].cls
        if c.recursive and same:
            self.out.write(f"  (recursive locking: locks of one class, {same.label}, taken "
                           "in both orders)\n")
        if c.merged_caches:
            self.out.write(f"  (through merged slab caches {', '.join(c.merged_caches)}: "
                           "objects of unrelated types share them, the classes may not be "
                           "the same)\n")
        if c.dynamic:
            self.out.write("  (dynamic locks, each order seen in another process: these "
                           "addresses may have been reused by different locks in between)\n")
        for e in c.edges:
            held, acquired = self._lock(e.held, c), self._lock(e.acquired, c)
            self.out.write(f"  {e.comm}[{e.pid}] took {acquired} while holding "
                           f"{held}\n    holding {e.held.label}, taken at:\n"
                           f"{_frames(e.held_stack)}    took {e.acquired.label} at:\n"
                           f"{_frames(e.acquire_stack)}")
        self.out.flush()

    @staticmethod
    def _lock(lock: LockRef, cycle: LockCycle) -> str:
        """An instance, with its class where the cycle is between classes."""
        if cycle.level == "class" and lock.cls and lock.cls.label != lock.label:
            return f"{lock.label} ({lock.cls.label})"
        return lock.label

    def irq_unsafe(self, u: IrqUnsafeLock) -> None:
        if self.as_json:
            return self._json(u.to_json())
        self.counts["irq_unsafe_lock"] += 1
        self.out.write(f"\nIRQ-unsafe lock {u.lock.label}: taken in hardirq context, and held "
                       f"with interrupts on by {u.comm}[{u.pid}] (an interrupt taking it "
                       f"there spins forever)\n    taken in hardirq at:\n{_frames(u.hardirq_stack)}"
                       f"    held with interrupts on, released at:\n{_frames(u.irqs_on_stack)}")
        self.out.flush()

    def deadlock(self, d: Deadlock) -> None:
        if self.as_json:
            return self._json(d.to_json())
        self.counts["deadlock"] += 1
        self.out.write(f"\nDEADLOCK: {len(d.tasks)} tasks wait for each other "
                       f"(seen at {d.detected_ns / 1e9:.6f}):\n")
        for t in d.tasks:
            holds = ", ".join(lock.label for lock in t.holds) or "nothing we saw taken"
            self.out.write(f"  {t.comm}[{t.pid}] waits {format_ns(t.waiting_ns)} for "
                           f"{t.waits_for.label}, holds {holds}\n{_frames(t.stack)}")
        self.out.flush()

    def hung(self, h: HungTask) -> None:
        if self.as_json:
            return self._json(h.to_json())
        self.counts["hung_task"] += 1
        at_least = "at least " if h.before_start else ""
        waits = ""
        if h.waits_for:
            owner = (f"held by {task_comm(h.owner_pid)}[{h.owner_pid}]" if h.owner_pid
                     else "owner unknown")
            waits = f", waits for {h.waits_for.label} {owner}"
        self.out.write(f"\nhung task: {h.comm}[{h.pid}] blocked in D state for {at_least}"
                       f"{format_ns(h.blocked_ns)}{waits}\n{_frames(h.stack)}")
        self.out.flush()

    def finding(self, f: Finding) -> None:
        if isinstance(f, LockCycle):
            self.cycle(f)
        elif isinstance(f, IrqUnsafeLock):
            self.irq_unsafe(f)
        elif isinstance(f, Deadlock):
            self.deadlock(f)
        elif isinstance(f, HungTask):
            self.hung(f)
        else:
            self.kernel(f)

    def kernel(self, r: KernelReport) -> None:
        if self.as_json:
            return self._json(r.to_json())
        self.counts["kernel_report"] += 1
        self.out.write(f"\nkernel reports ({r.kind}): {r.message}\n")
        self.out.flush()

    def stats(self, stats: dict[str, Any]) -> None:
        if self.as_json:
            self.out.write(json.dumps(stats) + "\n")
            return
        found = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.counts.items())
        self.out.write(f"\nfound: {found}\n")
        self.out.write(f"stats: order edges {stats['edges']} (cap {stats['max_edges']}, "
                       f"{stats['edges_dropped']} dropped), class edges {stats['class_edges']} "
                       f"({stats['class_edges_dropped']} dropped; classes: "
                       f"{stats['lock_classes']}), recursion misses "
                       f"{stats['recursion_misses']}, stale held entries {stats['held_overflow']}"
                       f", tasks blocked before the start {stats['blocked_before_start']}\n")
        dropped = {k: stats[k] for k in ("edges_dropped", "class_edges_dropped", "caches_dropped",
                                         "irq_uses_dropped", "blocked_dropped",
                                         "waits_dropped", "locks_dropped", "holders_dropped",
                                         "tasks_dropped") if stats[k]}
        if dropped:
            self.out.write("WARNING: maps were full, findings may be missing: "
                           + ", ".join(f"{k} {v}" for k, v in dropped.items()) + "\n")
        if stats.get("guard_full"):
            self.out.write(f"WARNING: {stats['guard_full']} {GUARD_FULL_WARNING}\n")
        seen, missed = stats.get("acquisitions_seen", 0), stats.get("acquisitions_missed", 0)
        if missed > MISSED_WARNING * max(seen, 1):
            self.out.write(f"WARNING: {missed} acquisitions were missed ({1 - stats['counted_share']:.2%}"
                           f", against {seen} seen): the kernel skipped our program while "
                           "another run of it was going on on that CPU -- nested in an "
                           "interrupt, or a task preempted inside it (fentry on PREEMPT_RT or "
                           "preempt=full).  Lock orders taken then are not seen: cycles may be "
                           "missing (none is made up)\n")
        if stats["cycles_truncated"]:
            self.out.write(f"WARNING: more than {stats['cycle_limit']} cycles: the rest were "
                           "not enumerated\n")
        if stats["kernel_log"] != "ok":
            self.out.write(f"WARNING: the kernel's own reports are not shown: "
                           f"{stats['kernel_log']}\n")


def run(options: DeadlockOptions, features: KernelFeatures, duration_s: float | None,
        ready_file: Path | None, as_json: bool) -> int:
    validate(options, features)
    config = LocksConfig(max_locks=options.max_locks, order=True, irq_safety=True,
                         blocked=True, max_edges=options.max_edges, probe=options.probe)
    plan = choose_functions(config, features)
    printer = DeadlockPrinter(as_json)
    with LocksTracer(config, plan) as tracer:
        watch = DeadlockWatch(tracer, options)
        try:
            live = "live wait-for cycles" if plan.contention else \
                "no live deadlocks (no lock:contention tracepoints)"
            if as_json:
                printer.out.write(json.dumps({
                    "type": "deadlock_plan", "functions": len(plan.functions),
                    "probe": plan.method,
                    "contention": plan.contention, "hung_after_ns": options.hung_after_ns,
                    "kernel_log": watch.kernel_log.error or "ok"}) + "\n")
            else:
                printer.out.write(f"Watching {len(plan.functions)} lock functions for lock-order "
                                  f"cycles and IRQ-unsafe locks, {live}, tasks in D state over "
                                  f"{format_ns(options.hung_after_ns)}. Ctrl-C to stop.\n")
            printer.out.flush()

            def poll(timeout_ms: int) -> int:
                time.sleep(timeout_ms / 1000)
                for finding in watch.poll():
                    printer.finding(finding)
                return 0

            def detach() -> None:
                for finding in watch.before_detach():
                    printer.finding(finding)
                tracer.detach()

            session.run(poll, duration_s, ready_file, detach)
            for finding in watch.final():
                printer.finding(finding)
            printer.stats(watch.stats())
        finally:
            watch.close()
    return 0
