"""One IRQ line: windows in which disable_irq() and friends kept it off, from irqline.bpf.c.

A window runs from the line's disable depth going 0 -> 1 to it going back to
0, so nested disables give one window.  The task and stack that disabled it
and those that enabled it are both kept: they often differ (a handler
disables, a workqueue enables).  Optionally, per-IRQ handler run times,
aggregated in the kernel into log2 histograms.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irqlock.bpf.btf import Mirror
from irqlock.bpf.constants import HANDLER_BUCKETS, IRQLINE_MAX_STACK, IRQLINE_MAX_TARGETS, TASK_COMM_LEN
from irqlock.bpf.loader import BpfObject
from irqlock.bpf.tracer import BpfTracer
from irqlock.errors import IrqlockError
from irqlock.kernel.features import IRQ_LINE_FUNCTIONS, KernelFeatures, require_tracing
from irqlock.kernel.irqs import existing_irqs, irq_name
from irqlock.kernel.kallsyms import Symbols

MAX_STACK = IRQLINE_MAX_STACK
HANDLER_PROGRAMS = ["handler_exit", "handler_entry"]  # exit first: nothing half-measured


class LineDisable(Mirror):
    """struct line_disable (irqline.h)."""

    c_struct = "line_disable"
    _fields_ = (
        ("start_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("stack_bytes", ctypes.c_int32),
        ("comm", ctypes.c_char * TASK_COMM_LEN),
        ("stack", ctypes.c_uint64 * MAX_STACK),
    )


class IrqDisabledEvent(Mirror):
    """struct irq_disabled_event (irqline.h)."""

    c_struct = "irq_disabled_event"
    _fields_ = (
        ("end_ns", ctypes.c_uint64),
        ("irq", ctypes.c_uint32),
        ("enable_pid", ctypes.c_uint32),
        ("enable_stack_bytes", ctypes.c_int32),
        ("pad", ctypes.c_uint32),
        ("enable_comm", ctypes.c_char * TASK_COMM_LEN),
        ("disable", LineDisable),
        ("enable_stack", ctypes.c_uint64 * MAX_STACK),
    )


class HandlerStatsStruct(Mirror):
    """struct handler_stats (irqline.h)."""

    c_struct = "handler_stats"
    _fields_ = (
        ("count", ctypes.c_uint64),
        ("total_ns", ctypes.c_uint64),
        ("max_ns", ctypes.c_uint64),
        ("buckets", ctypes.c_uint64 * HANDLER_BUCKETS),
    )


@dataclass(frozen=True)
class IrqDisabled:
    """A window in which one IRQ line was disabled (end_ns None: still disabled at the end)."""

    irq: int
    irq_name: str
    start_ns: int
    end_ns: int | None
    disable_pid: int
    disable_comm: str
    disable_stack: list[str]
    enable_pid: int | None
    enable_comm: str | None
    enable_stack: list[str]

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    def to_json(self) -> dict[str, Any]:
        return {"type": "irq_disabled" if self.end_ns is not None else "irq_still_disabled",
                "irq": self.irq, "irq_name": self.irq_name, "start_ns": self.start_ns,
                "end_ns": self.end_ns, "duration_ns": self.duration_ns,
                "disable_pid": self.disable_pid, "disable_comm": self.disable_comm,
                "disable_stack": self.disable_stack, "enable_pid": self.enable_pid,
                "enable_comm": self.enable_comm, "enable_stack": self.enable_stack}


@dataclass(frozen=True)
class HandlerStats:
    """Run times of one IRQ's handlers, from the kernel's log2 histogram."""

    irq: int
    irq_name: str
    count: int
    total_ns: int
    max_ns: int
    # (lower bound ns, count) of the non-empty buckets, ascending; bucket 1 holds 0 and 1 ns
    buckets: list[tuple[int, int]]
    # Runs in its irq/N kernel thread (PREEMPT_RT, threadirqs, IRQF_ONESHOT threads): the
    # run time is the thread's, with interrupts on and preemptible.
    threaded: bool = False

    def percentile_bound(self, fraction: float) -> int:
        """Upper bound of the bucket holding this percentile (the kernel keeps no single runs)."""
        rank, seen = max(1, round(fraction * self.count)), 0
        for low, count in self.buckets:
            seen += count
            if seen >= rank:
                return min(2 * low, self.max_ns)
        return self.max_ns

    def to_json(self) -> dict[str, Any]:
        return {"type": "irq_handler", "irq": self.irq, "irq_name": self.irq_name,
                "count": self.count, "total_ns": self.total_ns, "max_ns": self.max_ns,
                "p50_bound_ns": self.percentile_bound(0.5),
                "p99_bound_ns": self.percentile_bound(0.99), "threaded": self.threaded,
                "histogram": [[low, count] for low, count in self.buckets]}


def threaded_irqs() -> set[int]:
    """IRQs whose handlers run in a kernel thread (named irq/N-name)."""
    found = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text()
        except OSError:
            continue
        number = name.removeprefix("irq/").split("-", 1)[0]
        if name.startswith("irq/") and number.isdigit():
            found.add(int(number))
    return found


@dataclass
class IrqlineConfig:
    irqs: list[int] | None  # None: every IRQ
    threshold_ns: int = 0
    handlers: bool = False


def validate(config: IrqlineConfig, features: KernelFeatures) -> str:
    """Checks the request against this machine; returns the attach method."""
    if config.irqs is not None:
        known = existing_irqs()
        unknown = [irq for irq in config.irqs if irq not in known]
        if unknown:
            listing = ", ".join(str(i) for i in sorted(known)[:40])
            raise IrqlockError(f"no IRQ {', '.join(map(str, unknown))} on this machine "
                               f"(it has: {listing}{' ...' if len(known) > 40 else ''})")
    require_tracing(features, "irq")
    return check_supported(config, features)


def check_supported(config: IrqlineConfig, features: KernelFeatures) -> str:
    """The attach method this kernel allows ("fentry" or "kprobe"); raises if none."""
    missing = [f for f in IRQ_LINE_FUNCTIONS if not features.can_trace(f)]
    if missing:
        raise IrqlockError(f"cannot trace {', '.join(missing)} on this kernel: run 'irqlock check'")
    if config.handlers and not features.irq_handler_tracepoints.available:
        raise IrqlockError(f"--handlers needs irq:irq_handler_entry/exit: "
                           f"{features.irq_handler_tracepoints.detail}")
    if config.irqs is not None and len(config.irqs) > IRQLINE_MAX_TARGETS:
        raise IrqlockError(f"at most {IRQLINE_MAX_TARGETS} IRQs at a time (or --all)")
    return "fentry" if features.fentry.available else "kprobe"


class IrqlineTracer(BpfTracer):
    """Loads and attaches irqline.bpf.c; delivers IrqDisabled records."""

    OBJECT = "irqline"

    def __init__(self, config: IrqlineConfig, method: str,
                 on_window: Callable[[IrqDisabled], None], symbols: Symbols | None = None,
                 attach: bool = True) -> None:
        """attach=False: only load (irqlock check proves the object loads here)."""
        self.config = config
        self.method = method
        self._on_window = on_window
        self._names: dict[int, str] = {}
        self._start(method == "fentry", attach, symbols)

    def _opened(self) -> None:
        self._ringbuf = self.obj.open_ringbuf("events", IrqDisabledEvent, self._on_record)

    def _fall_back_to_kprobes(self) -> bool:
        self.method = "kprobe"  # fentry did not load here: kprobes, as check_supported allowed
        return True

    def _configure(self, obj: BpfObject, use_fentry: bool) -> None:
        irqs = self.config.irqs or []
        obj.set_rodata(threshold_ns=self.config.threshold_ns, all_irqs=int(self.config.irqs is None),
                       n_targets=len(irqs),
                       targets=b"".join(i.to_bytes(4, "little") for i in irqs))
        # The enable side first, so that no window opens before what ends it is attached.
        for function in reversed(IRQ_LINE_FUNCTIONS):
            obj.plan_function(function, function, use_fentry)
        if not self.config.handlers:
            for program in HANDLER_PROGRAMS:
                obj.disable(program)

    def _attach(self) -> None:
        self.obj.attach_planned()
        if self.config.handlers:
            for program in HANDLER_PROGRAMS:
                self.obj.attach(program)

    def name(self, irq: int) -> str:
        """The line's action names; read when first needed (a line may be requested later)."""
        if not self._names.get(irq):
            self._names[irq] = irq_name(irq)
        return self._names[irq]

    def _stack(self, raw: ctypes.Array[ctypes.c_uint64], size: int) -> list[str]:
        return self.symbols.current.stack(list(raw[: max(size, 0) // 8]))

    def _on_record(self, data: bytes) -> None:
        e = IrqDisabledEvent.from_buffer_copy(data)
        d = e.disable
        self._on_window(IrqDisabled(
            irq=e.irq, irq_name=self.name(e.irq), start_ns=d.start_ns, end_ns=e.end_ns,
            disable_pid=d.pid, disable_comm=d.comm.decode(errors="replace"),
            disable_stack=self._stack(d.stack, d.stack_bytes), enable_pid=e.enable_pid,
            enable_comm=e.enable_comm.decode(errors="replace"),
            enable_stack=self._stack(e.enable_stack, e.enable_stack_bytes)))

    def still_disabled(self) -> list[IrqDisabled]:
        """Lines disabled while we watched and not enabled again (yet)."""
        result = []
        for key, value in self.obj.map("disabled", value=LineDisable).items():
            irq = int.from_bytes(key, "little")
            d = LineDisable.from_buffer_copy(value)
            result.append(IrqDisabled(
                irq=irq, irq_name=self.name(irq), start_ns=d.start_ns, end_ns=None,
                disable_pid=d.pid, disable_comm=d.comm.decode(errors="replace"),
                disable_stack=self._stack(d.stack, d.stack_bytes), enable_pid=None,
                enable_comm=None, enable_stack=[]))
        return sorted(result, key=lambda w: w.irq)

    def handler_stats(self) -> list[HandlerStats]:
        threaded = threaded_irqs()
        result = []
        for key, value in self.obj.map("handlers", value=HandlerStatsStruct).items():
            irq = int.from_bytes(key, "little")
            s = HandlerStatsStruct.from_buffer_copy(value)
            buckets = [(1 << i, int(n)) for i, n in enumerate(s.buckets) if n]
            result.append(HandlerStats(irq=irq, irq_name=self.name(irq), count=s.count,
                                       total_ns=s.total_ns, max_ns=s.max_ns, buckets=buckets,
                                       threaded=irq in threaded))
        return sorted(result, key=lambda h: h.irq)

    def poll(self, timeout_ms: int) -> int:
        return self.obj.poll(self._ringbuf, timeout_ms)

    def stats(self) -> dict[str, Any]:
        misses = self.obj.recursion_misses()
        return {"type": "stats", "tool": "irq", "method": self.method,
                "lost_events": self.obj.read_global("lost_events"),
                "recursion_misses": sum(misses.values()),
                "map_full": self.obj.read_global("map_full"),
                "unmatched_enables": self.obj.read_global("unmatched_enables"),
                "windows_seen": self.obj.read_global("windows_seen")}

