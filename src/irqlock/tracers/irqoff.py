"""IRQ-off (and preempt-off) windows of a CPU, from irqoff.bpf.c.

Sources, best first (``auto`` takes what the kernel offers and says so):

- ``tracepoint``: preemptirq:irq_disable/irq_enable, exact for every API;
- ``lock``: the spin/rwlock ``_irq``/``_irqsave`` functions, exact, for kernels
  without those tracepoints;
- ``sample``: gaps in a per-CPU cpu-clock sampler, for every other way of
  turning interrupts off; each window carries its error bound (half a period).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irqlock.bpf.btf import Mirror
from irqlock.bpf.constants import IRQOFF_MAX_STACK, TASK_COMM_LEN
from irqlock.bpf.loader import BpfObject
from irqlock.bpf.tracer import BpfTracer
from irqlock.errors import IrqlockError
from irqlock.kernel import perf
from irqlock.kernel.features import KernelFeatures, require_tracing
from irqlock.kernel.kallsyms import Symbols
from irqlock.kernel.tasks import tgid_exists
from irqlock.units import format_ns

MAX_STACK = IRQOFF_MAX_STACK
KINDS = ("hardirq", "preempt", "softirq")
SOURCES = ("tracepoint", "lock", "sample")
# enum tick_site (irqoff.h): what confirms a window as interrupts-off (softirqs-off) time.
# "stall": every CPU's ticks stopped at once -- a hypervisor paused the machine.
# "blind": not a window but a span no tick came in, though the CPU kept running (BlindSpan).
SITES = ("none", "sti", "popf", "exact", "seen", "stall", "blind")
UNCONFIRMED = "none"
STALLED = "stall"
BLIND = "blind"

# Lock functions that turn interrupts off or back on, by how irqoff.bpf.c handles them.
LOCK_IRQSAVE = ["_raw_spin_lock_irqsave", "_raw_read_lock_irqsave", "_raw_write_lock_irqsave"]
UNLOCK_IRQRESTORE = ["_raw_spin_unlock_irqrestore", "_raw_read_unlock_irqrestore",
                     "_raw_write_unlock_irqrestore"]
LOCK_IRQ = ["_raw_spin_lock_irq", "_raw_read_lock_irq", "_raw_write_lock_irq"]
UNLOCK_IRQ = ["_raw_spin_unlock_irq", "_raw_read_unlock_irq", "_raw_write_unlock_irq"]
# preemptirq tracepoint programs, enables first: what ends a window attaches before what opens one.
TRACEPOINT_PROGRAMS = ["tp_irq_enable", "tp_preempt_enable", "tp_irq_disable", "tp_preempt_disable"]
IRQS_ON_PROGRAMS = ["on_irq_handler_entry", "on_local_timer_entry", "on_softirq_entry"]
# Everything attached by its own section (not per function, not to a perf event).
SECTION_PROGRAMS = [*IRQS_ON_PROGRAMS, "on_sched_switch", *TRACEPOINT_PROGRAMS]
DEFAULT_PERIOD_NS = 500_000
DEFAULT_RINGBUF_PAGES = 256  # 1 MiB: about 1,700 windows waiting to be read
PAGE_SIZE = 4096
MIN_PERIOD_NS = 20_000  # shorter periods can keep a slow CPU in the sampler's interrupt


class SampleState(Mirror):
    """struct sample_state of irqoff.bpf.c: the sampler's per-CPU state."""

    c_struct = "sample_state"
    _fields_ = (("last_ns", ctypes.c_uint64), ("prev_tick_ns", ctypes.c_uint64),
                ("before_tick_ns", ctypes.c_uint64), ("bh_last_ns", ctypes.c_uint64),
                ("bh_start_error_ns", ctypes.c_uint64), ("late_max_ns", ctypes.c_uint64))


class IrqoffEvent(Mirror):
    """struct irqoff_event (irqoff.h)."""

    c_struct = "irqoff_event"
    _fields_ = (
        ("start_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("error_ns", ctypes.c_uint64),
        ("disable_ip", ctypes.c_uint64),
        ("disable_parent_ip", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("kind", ctypes.c_uint32),
        ("source", ctypes.c_uint32),
        ("disable_stack_bytes", ctypes.c_int32),
        ("enable_stack_bytes", ctypes.c_int32),
        ("site", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("comm", ctypes.c_char * TASK_COMM_LEN),
        ("disable_stack", ctypes.c_uint64 * MAX_STACK),
        ("enable_stack", ctypes.c_uint64 * MAX_STACK),
    )


@dataclass(frozen=True)
class IrqoffWindow:
    kind: str
    cpu: int
    pid: int
    comm: str
    start_ns: int
    end_ns: int
    source: str
    error_ns: int
    disable_ip: str | None
    disable_parent_ip: str | None
    disable_stack: list[str]
    enable_stack: list[str]
    site: str = "exact"  # SITES: what confirms it (sampled windows)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def exact(self) -> bool:
        return self.source != "sample"

    @property
    def confirmed(self) -> bool:
        """Known to be interrupts-off (softirqs-off) time, not a CPU the hypervisor ran late."""
        return self.site not in (UNCONFIRMED, STALLED)

    def to_json(self) -> dict[str, Any]:
        return {"type": "irqoff", "kind": self.kind, "cpu": self.cpu, "pid": self.pid,
                "comm": self.comm, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "duration_ns": self.duration_ns, "exact": self.exact, "source": self.source,
                "confirmed": self.confirmed, "site": self.site,
                "error_ns": self.error_ns, "disable_ip": self.disable_ip,
                "disable_parent_ip": self.disable_parent_ip,
                "disable_stack": self.disable_stack, "enable_stack": self.enable_stack}


@dataclass(frozen=True)
class BlindSpan:
    """A span of two sampling periods or more in which no tick came to a CPU that kept
    running (it switched tasks, idled or ran user code meanwhile, so no task kept interrupts
    off all along): a hypervisor held the timer interrupt back.  The sampler saw nothing
    there: an IRQ-off window inside it is not reported."""

    cpu: int
    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def to_json(self) -> dict[str, Any]:
        return {"type": "sampler_blind", "cpu": self.cpu, "start_ns": self.start_ns,
                "end_ns": self.end_ns, "duration_ns": self.duration_ns}


@dataclass
class IrqoffConfig:
    threshold_ns: int = 0
    mode: str = "auto"  # auto | exact | sample
    period_ns: int = DEFAULT_PERIOD_NS
    tgid: int | None = None
    cpu: int | None = None
    preempt: bool = False
    softirq: bool = False
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    unconfirmed: bool = False  # report sampled windows no tick site confirms too


@dataclass
class SourcePlan:
    """Which sources this run uses, how, and what could not be attached."""

    tracepoints: bool = False
    lock_method: str | None = None  # fentry | kprobe
    lock_functions: list[str] = field(default_factory=list)
    sample: bool = False
    softirq: bool = False  # always sampled: no kernel has softirq-off tracepoints
    not_attached: list[str] = field(default_factory=list)

    @property
    def sampler(self) -> bool:
        return self.sample or self.softirq

    def describe(self, period_ns: int) -> str:
        parts = []
        if self.tracepoints:
            parts.append("exact: preemptirq tracepoints")
        if self.lock_method:
            parts.append(f"exact for lock paths: {len(self.lock_functions)} functions via "
                         f"{self.lock_method}")
        if self.sample:
            parts.append(f"sampled: cpu-clock every {period_ns} ns, error <= {period_ns // 2} ns "
                         "plus how late ticks come; confirmed by where the closing tick lands "
                         "(after an sti or a popf), steal clock not used")
        if self.softirq:
            parts.append(f"softirq-off sampled every {period_ns} ns, error <= about {period_ns} ns")
        text = "; ".join(parts)
        if self.not_attached:
            text += f"; not attached: {', '.join(self.not_attached)}"
        return text


def online_cpus() -> list[int]:
    text = Path("/sys/devices/system/cpu/online").read_text().strip()
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def choose_sources(config: IrqoffConfig, features: KernelFeatures) -> SourcePlan:
    """What to use on this kernel; raises IrqlockError when the request cannot be met."""
    tracepoints = features.preemptirq_tracepoints.available
    if config.preempt and not tracepoints:
        raise IrqlockError("--preempt needs the preemptirq tracepoints, which this kernel lacks "
                           "(see docs/exact-kernel.md)")
    plan = SourcePlan()
    if config.softirq:
        if features.preempt_rt:
            raise IrqlockError("--softirq reads softirqs-off from preempt_count, which PREEMPT_RT "
                               "does not use for it (local_bh_disable is a per-task lock there)")
        if not features.preempt_count.available:
            raise IrqlockError("--softirq reads softirqs-off from preempt_count, which irqlock "
                               f"cannot find on this kernel: {features.preempt_count.detail}")
        if not features.perf_cpu_clock.available:
            raise IrqlockError(f"--softirq samples with perf cpu-clock: "
                               f"{features.perf_cpu_clock.detail}")
        plan.softirq = True
    if config.mode in ("auto", "exact") and tracepoints:
        plan.tracepoints = True
        return plan
    if config.mode in ("auto", "exact") and not features.preempt_count.available:
        # a hardirq's lock calls would be taken for the task's it interrupted
        if config.mode == "exact":
            raise IrqlockError("exact lock paths tell a hardirq's lock calls apart by "
                               "preempt_count, which irqlock cannot find on this kernel: "
                               f"{features.preempt_count.detail}")
        plan.not_attached.append("lock paths (no preempt_count)")
    elif config.mode in ("auto", "exact"):
        functions = LOCK_IRQSAVE + UNLOCK_IRQRESTORE + LOCK_IRQ + UNLOCK_IRQ
        plan.lock_functions = [f for f in functions if features.can_trace(f)]
        plan.not_attached = [f for f in functions if f not in plan.lock_functions]
        if plan.lock_functions:
            plan.lock_method = "fentry" if features.fentry.available else "kprobe"
    if config.mode in ("auto", "sample"):
        if features.perf_cpu_clock.available:
            plan.sample = True
        elif config.mode == "sample":
            raise IrqlockError(f"sampling needs perf cpu-clock: {features.perf_cpu_clock.detail}")
        else:
            plan.not_attached.append("cpu-clock sampler")
    if not (plan.lock_method or plan.sample):
        raise IrqlockError("no way to see IRQ-off windows on this kernel: run 'irqlock check'")
    return plan


class IrqoffTracer(BpfTracer):
    """Loads and attaches irqoff.bpf.c for a SourcePlan; delivers IrqoffWindow records."""

    OBJECT = "irqoff"

    def __init__(self, config: IrqoffConfig, plan: SourcePlan,
                 on_window: Callable[[IrqoffWindow], None], symbols: Symbols | None = None,
                 attach: bool = True,
                 on_blind: Callable[[BlindSpan], None] | None = None) -> None:
        """attach=False: only load (irqlock check proves the object loads here).
        on_blind: given the sampler's blind spans over the threshold with --unconfirmed
        (they are counted in stats either way)."""
        self.config = config
        self.plan = plan
        self._on_window = on_window
        self._on_blind = on_blind
        self.blind_over_threshold = 0
        self.blind_max_ns = 0
        self._ringbuf = -1
        self.unconfirmed = 0
        self.stalled = 0
        self._start(plan.lock_method == "fentry", attach, symbols)

    def _opened(self) -> None:
        self._ringbuf = self.obj.open_ringbuf("events", IrqoffEvent, self._on_record)

    def _fall_back_to_kprobes(self) -> bool:
        if self.plan.lock_method != "fentry":
            return False
        self.plan.lock_method = "kprobe"  # fentry did not load on this kernel, as planned for
        return True

    def _configure(self, obj: BpfObject, use_fentry: bool) -> None:
        c = self.config
        obj.set_max_entries("events", c.ringbuf_pages * PAGE_SIZE)
        obj.set_rodata(threshold_ns=c.threshold_ns, target_tgid=-1 if c.tgid is None else c.tgid,
                       own_tgid=os.getpid(),
                       target_cpu=-1 if c.cpu is None else c.cpu, sample_period_ns=c.period_ns,
                       sample_hardirq=int(self.plan.sample), sample_softirq=int(self.plan.softirq),
                       nr_cpus=max(online_cpus()) + 1)
        wanted = self._section_programs()
        for program in SECTION_PROGRAMS:
            if program not in wanted:
                obj.disable(program)
        if not self.plan.sampler:
            obj.disable("sample_tick")
        # Planned (and so attached) closers first: a window must never open
        # before what ends it is in place.
        with_return = set(LOCK_IRQSAVE)
        for function in UNLOCK_IRQRESTORE + UNLOCK_IRQ + LOCK_IRQSAVE + LOCK_IRQ:
            if function in self.plan.lock_functions:
                obj.plan_function(function, function, use_fentry)
                if function in with_return:
                    obj.plan_function(function, function, use_fentry, ret=True)
            else:
                for suffix in ("fentry", "kprobe") + (("fexit", "kretprobe")
                                                      if function in with_return else ()):
                    obj.disable(f"{function}_{suffix}")

    def _section_programs(self) -> list[str]:
        """The SECTION_PROGRAMS this plan uses, in attach order: what discards or ends a
        window before what opens one (a plan has tracepoints or lock paths, never both)."""
        wanted = []
        if self.plan.lock_method:
            wanted += IRQS_ON_PROGRAMS
        if self.plan.lock_method or self.plan.sampler:
            wanted.append("on_sched_switch")
        if self.plan.tracepoints:
            wanted += [p for p in TRACEPOINT_PROGRAMS if "preempt" not in p or self.config.preempt]
        return wanted

    def _attach(self) -> None:
        for program in self._section_programs():
            self.obj.attach(program)
        self.obj.attach_planned()  # lock paths: planned closers first (_configure)
        if self.plan.sampler:
            for cpu in online_cpus():
                try:
                    fd = perf.open_cpu_clock(cpu, self.config.period_ns)
                except OSError as exc:
                    raise IrqlockError(str(exc)) from None
                self.obj.attach_perf_event("sample_tick", fd)

    def _on_record(self, data: bytes) -> None:
        e = IrqoffEvent.from_buffer_copy(data)
        ks = self.symbols.current

        def frames(stack: ctypes.Array[ctypes.c_uint64], size: int) -> list[str]:
            return ks.stack(list(stack[: max(size, 0) // 8]))

        site = SITES[e.site] if e.site < len(SITES) else UNCONFIRMED
        if site == BLIND:
            span = BlindSpan(cpu=e.cpu, start_ns=e.start_ns, end_ns=e.end_ns)
            self.blind_over_threshold += 1
            self.blind_max_ns = max(self.blind_max_ns, span.duration_ns)
            if self.config.unconfirmed and self._on_blind:
                self._on_blind(span)
            return
        if site in (UNCONFIRMED, STALLED):
            self.unconfirmed += 1
            self.stalled += site == STALLED
            if not self.config.unconfirmed:
                return
        self._on_window(IrqoffWindow(
            kind=KINDS[e.kind], cpu=e.cpu, pid=e.pid, comm=e.comm.decode(errors="replace"),
            site=site,
            start_ns=e.start_ns, end_ns=e.end_ns, source=SOURCES[e.source], error_ns=e.error_ns,
            disable_ip=ks.symbolize(e.disable_ip) if e.disable_ip else None,
            disable_parent_ip=ks.symbolize(e.disable_parent_ip) if e.disable_parent_ip else None,
            disable_stack=frames(e.disable_stack, e.disable_stack_bytes),
            enable_stack=frames(e.enable_stack, e.enable_stack_bytes)))

    def poll(self, timeout_ms: int) -> int:
        return self.obj.poll(self._ringbuf, timeout_ms)

    def stats(self) -> dict[str, Any]:
        misses = self.obj.recursion_misses()
        return {"type": "stats", "tool": "irqoff",
                "lost_events": self.obj.read_global("lost_events"),
                "recursion_misses": sum(misses.values()),
                "unmatched_opens": self.obj.read_global("unmatched_opens"),
                "stale_windows": self.obj.read_global("stale_windows"),
                "windows_seen": self.obj.read_global("windows_seen"),
                # irqlock's own process, not reported (see irqoff.bpf.c)
                "own_windows": self.obj.read_global("own_windows"),
                # sampled windows over the threshold whose closing tick no site confirms
                # (reported only with --unconfirmed, "confirmed": false)
                "unconfirmed_windows": self.unconfirmed,
                # of those, windows in which every CPU's ticks stopped (a paused machine)
                "stalled_windows": self.stalled,
                # spans of two periods or more in which no tick came to a running CPU
                # (BlindSpan): how many, their total, and those over the threshold
                "blind_spans": self.obj.read_global("blind_spans"),
                "blind_ns": self.obj.read_global("blind_ns"),
                "blind_spans_over_threshold": self.blind_over_threshold,
                "blind_max_ns": self.blind_max_ns,
                "sampler_period_ns": self.config.period_ns if self.plan.sampler else 0,
                "sampler_late_max_ns": self._sampler_late_max_ns(),
                "preempt_count": self.obj.preempt_count_from,
                "not_attached": self.plan.not_attached}

    def _sampler_late_max_ns(self) -> int:
        """The latest a sampler tick came after it was due, on any CPU (0 without a sampler).

        A sampled window ends at a tick, so its end may be that late on top of
        error_ns: large under a hypervisor that runs a CPU late (steal time).
        """
        if not self.plan.sampler:
            return 0
        per_cpu = self.obj.map("samples", value=SampleState).lookup_per_cpu(bytes(4))
        return max((SampleState.from_buffer_copy(v).late_max_ns for v in per_cpu), default=0)



def validate(config: IrqoffConfig, features: KernelFeatures) -> SourcePlan:
    """Checks the request against this machine; returns the sources to use."""
    pages = config.ringbuf_pages
    if pages < 1 or pages > 65536 or pages & (pages - 1):
        raise IrqlockError(f"--ringbuf-pages must be a power of two from 1 to 65536, not {pages}")
    if config.period_ns < MIN_PERIOD_NS:
        raise IrqlockError(f"--period must be at least {format_ns(MIN_PERIOD_NS)}: a shorter one "
                           "can keep a slow CPU busy in the sampler's interrupt")
    require_tracing(features, "irqoff")
    if config.tgid is not None and not tgid_exists(config.tgid):
        raise IrqlockError(f"no process with pid {config.tgid}")
    if config.cpu is not None and config.cpu not in online_cpus():
        raise IrqlockError(f"cpu {config.cpu} is not online (online: {online_cpus()})")
    return choose_sources(config, features)
