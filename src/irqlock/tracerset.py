"""Several tracers in one run, their records through one callback: what record and serve share.

Each tracer is chosen, validated and started as its own command would do it;
irqlock locks and irqlock deadlock share one lock tracer (deadlock mode is a
superset).  Records are the JSON objects of docs/records.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from irqlock.defaults import DEFAULT_MAX_LOCKS
from irqlock.errors import IrqlockError
from irqlock.kernel.features import KernelFeatures
from irqlock.kernel.kallsyms import Symbols
from irqlock.tracers import deadlock, irqline, irqoff, locks
from irqlock.tracers.deadlock import DeadlockOptions, DeadlockWatch
from irqlock.tracers.irqline import IrqlineConfig, IrqlineTracer
from irqlock.tracers.irqoff import IrqoffConfig, IrqoffTracer
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from irqlock.tracers.locks import LocksTracer

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Selection:
    """Which tracers run, each with its configuration (None: not this one)."""

    irqoff: IrqoffConfig | None = None
    irq: IrqlineConfig | None = None
    locks: bool = False
    deadlock: DeadlockOptions | None = None
    max_locks: int = DEFAULT_MAX_LOCKS

    @property
    def tools(self) -> list[str]:
        return [name for name, on in (("irqoff", self.irqoff), ("irq", self.irq),
                                      ("locks", self.locks), ("deadlock", self.deadlock)) if on]

    def describe(self) -> dict[str, Any]:
        """The settings a session shows in its status."""
        return {"tools": self.tools,
                "irqoff_threshold_ns": self.irqoff.threshold_ns if self.irqoff else None,
                "irqs": (None if self.irq is None else "all" if self.irq.irqs is None
                         else self.irq.irqs),
                "irq_threshold_ns": self.irq.threshold_ns if self.irq else None,
                "hung_after_ns": self.deadlock.hung_after_ns if self.deadlock else None}


class TracerSet:
    """The chosen tracers, started together; poll() delivers their records to emit."""

    def __init__(self, selection: Selection, features: KernelFeatures, emit: Emit) -> None:
        if not selection.tools:
            raise IrqlockError("choose at least one tracer: --irqoff, --irq N, --locks, --deadlock")
        self.selection = selection
        self.features = features
        self.emit = emit
        self.irqoff: IrqoffTracer | None = None
        self.irq: IrqlineTracer | None = None
        self.locks: LocksTracer | None = None
        self.watch: DeadlockWatch | None = None
        self.symbols = Symbols()  # one kallsyms snapshot for all, once all are attached
        try:
            self._start()
            self.symbols.refresh()
        except BaseException:
            self.close()
            raise

    def _start_irqoff(self, config: IrqoffConfig) -> IrqoffTracer:
        plan = irqoff.validate(config, self.features)
        return IrqoffTracer(config, plan, lambda w: self.emit(w.to_json()), self.symbols)

    def _start_irq(self, config: IrqlineConfig) -> IrqlineTracer:
        method = irqline.validate(config, self.features)
        return IrqlineTracer(config, method, lambda w: self.emit(w.to_json()), self.symbols)

    def _start(self) -> None:
        s, f = self.selection, self.features
        if s.irqoff:
            self.irqoff = self._start_irqoff(s.irqoff)
        if s.irq:
            self.irq = self._start_irq(s.irq)
        if s.locks or s.deadlock:
            watching = s.deadlock is not None
            config = LocksConfig(max_locks=s.max_locks, order=watching, irq_safety=watching,
                                 blocked=watching,
                                 max_edges=s.deadlock.max_edges if s.deadlock else 1)
            locks.validate(config, None, f)
            self.locks = LocksTracer(config, choose_functions(config, f), self.symbols)
            if s.deadlock:
                deadlock.validate(s.deadlock, f)
                self.watch = DeadlockWatch(self.locks, s.deadlock)

    def poll(self, timeout_ms: int) -> int:
        """Deliver what the tracers have; waits up to timeout_ms in all."""
        rings = [t for t in (self.irqoff, self.irq) if t is not None]
        handled = 0
        for tracer in rings:
            handled += tracer.poll(max(1, timeout_ms // len(rings)))
        if not rings:
            time.sleep(timeout_ms / 1000)
        if self.watch:
            for finding in self.watch.poll():
                self.emit(finding.to_json())
        return handled

    def lock_records(self, with_holders: bool = True) -> list[dict[str, Any]]:
        """Every lock's statistics so far (holders and their first stacks cost the most)."""
        return [r.to_json() for r in self.locks.snapshot(with_holders)] if self.locks else []

    def detach(self) -> None:
        """Stop watching (live findings are judged first: they need the probes)."""
        if self.watch:
            for finding in self.watch.before_detach():
                self.emit(finding.to_json())
        for tracer in (self.irqoff, self.irq, self.locks):
            if tracer is not None:
                tracer.detach()

    def finish(self) -> None:
        """After detach: what is only known at the end (lines still disabled, handler run
        times, the whole lock-order graph)."""
        while self.poll(0):
            pass
        if self.irq:
            for window in self.irq.still_disabled():
                self.emit(window.to_json())
            if self.selection.irq and self.selection.irq.handlers:
                for handler in self.irq.handler_stats():
                    self.emit(handler.to_json())
        if self.watch:
            for finding in self.watch.final():
                self.emit(finding.to_json())

    def stats(self) -> list[dict[str, Any]]:
        result = []
        if self.irqoff:
            result.append(self.irqoff.stats())
        if self.irq:
            result.append(self.irq.stats())
        if self.watch:
            result.append(self.watch.stats())
        elif self.locks:
            result.append(self.locks.stats())
        return result

    def reconfigure(self, selection: Selection) -> None:
        """New settings: restart only the tracers whose BPF object fixed the old ones at load
        (the lock tracer and what it has counted go on).  On failure nothing changes."""
        old = self.selection
        if (selection.locks, selection.deadlock is None) != (old.locks, old.deadlock is None):
            raise IrqlockError("a running session cannot start or stop the lock tracers")
        irqoff = self._start_irqoff(selection.irqoff) \
            if selection.irqoff and selection.irqoff != old.irqoff else None
        try:
            irq = self._start_irq(selection.irq) \
                if selection.irq and selection.irq != old.irq else None
        except BaseException:
            if irqoff:
                irqoff.close()
            raise
        if selection.irqoff != old.irqoff:
            self._replace("irqoff", irqoff)
        if selection.irq != old.irq:
            self._replace("irq", irq)
        if irqoff or irq:
            self.symbols.refresh()  # the new programs' names
        if self.watch and selection.deadlock:
            self.watch.set_hung_after(selection.deadlock.hung_after_ns)
        self.selection = selection

    def _replace(self, name: str, tracer: IrqoffTracer | IrqlineTracer | None) -> None:
        current = getattr(self, name)
        if current is not None:
            current.detach()
            while current.poll(0):  # what it saw before it stopped
                pass
            current.close()
        setattr(self, name, tracer)

    def clear(self) -> None:
        """Start counting again: lock statistics and what findings were already reported."""
        if self.locks:
            self.locks.clear()
        if self.watch:
            self.watch.forget_reported()

    def close(self) -> None:
        for tracer in (self.irqoff, self.irq, self.locks):
            if tracer is not None:
                tracer.close()
        if self.watch:
            self.watch.close()

    def __enter__(self) -> TracerSet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
