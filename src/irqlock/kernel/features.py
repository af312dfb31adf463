"""What the running kernel offers irqlock, found by probing, not by version numbers.

:func:`probe` gathers the facts (BTF, config, fentry, kprobes, tracepoints,
attachable functions, perf cpu-clock, privileges); :func:`plan` turns them into
what each tool will do: ``exact``, ``sampled`` or ``unavailable``, with the
reason.  ``irqlock check`` prints both.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from irqlock.defaults import DEFAULT_BTF
from irqlock.errors import IrqlockError
from irqlock.kernel import perf
from irqlock.kernel.sysmap import preempt_count_source

SPIN_FUNCTIONS = [
    "_raw_spin_lock", "_raw_spin_lock_irq", "_raw_spin_lock_irqsave", "_raw_spin_lock_bh",
    "_raw_spin_trylock", "_raw_spin_trylock_bh", "_raw_spin_unlock", "_raw_spin_unlock_irq",
    "_raw_spin_unlock_irqrestore", "_raw_spin_unlock_bh",
]
RWLOCK_FUNCTIONS = [
    f"_raw_{side}_{op}" for side in ("read", "write") for op in (
        "lock", "lock_irq", "lock_irqsave", "lock_bh", "trylock",
        "unlock", "unlock_irq", "unlock_irqrestore", "unlock_bh")
]
MUTEX_FUNCTIONS = [
    "mutex_lock", "mutex_lock_interruptible", "mutex_lock_killable", "mutex_lock_io",
    "mutex_trylock", "mutex_unlock",
]
RWSEM_FUNCTIONS = [
    "down_read", "down_read_interruptible", "down_read_killable", "down_read_trylock",
    "down_write", "down_write_killable", "down_write_trylock", "up_read", "up_write",
    "downgrade_write",
]
# PREEMPT_RT: what spinlock_t and rwlock_t call there (sleeping, rt_mutex based).
RT_SPIN_FUNCTIONS = ["rt_spin_lock", "rt_spin_trylock", "rt_spin_trylock_bh", "rt_spin_unlock"]
RT_RWLOCK_FUNCTIONS = [f"rt_{side}_{op}" for side in ("read", "write")
                       for op in ("lock", "trylock", "unlock")]
# Where a line's disable depth goes 0 -> 1 and 1 -> 0 (kernel/irq/chip.c, called from manage.c).
IRQ_LINE_FUNCTIONS = ["irq_disable", "irq_startup"]
LOCK_FUNCTIONS = (SPIN_FUNCTIONS + RWLOCK_FUNCTIONS + MUTEX_FUNCTIONS + RWSEM_FUNCTIONS
                  + RT_SPIN_FUNCTIONS + RT_RWLOCK_FUNCTIONS)


def kind_functions(preempt_rt: bool) -> dict[str, list[str]]:
    """The functions that take and release each kind of lock on this kernel.

    On PREEMPT_RT spinlock_t and rwlock_t sleep (rt_spin_lock, rt_read_lock, ...) and
    raw_spinlock_t is what spins; elsewhere a spinlock is a raw spinlock."""
    return {"spinlock": RT_SPIN_FUNCTIONS if preempt_rt else SPIN_FUNCTIONS,
            "rwlock": RT_RWLOCK_FUNCTIONS if preempt_rt else RWLOCK_FUNCTIONS,
            "mutex": MUTEX_FUNCTIONS, "rwsem": RWSEM_FUNCTIONS, "raw_spinlock": SPIN_FUNCTIONS}
# The function `irqlock check` attaches to for a moment to prove the attach path.
PROOF_FUNCTION = "_raw_spin_lock_irqsave"

# Why the sleeping locks' functions go by kprobe where the kernel preempts (see lock_methods).
PREEMPTIBLE_KPROBES_WHY = (
    "where the kernel preempts (preempt=full, PREEMPT_RT) a program run by a trampoline "
    "(fentry/fexit) is preemptible, and while one task is preempted inside it the kernel skips "
    "it for every other task of that CPU; kprobe handlers run with preemption off, and no "
    "sleeping lock is taken in hardirq, where one could nest")
# Preemption models under which a task can be preempted inside a trampoline's program.
PREEMPTIBLE_MODELS = ("full", "lazy", "rt")
PREEMPT_CONTROL = Path("/sys/kernel/debug/sched/preempt")


def preemption_model(config: dict[str, str], preempt_rt: bool,
                     control: Path = PREEMPT_CONTROL, cmdline: Path = Path("/proc/cmdline")) -> str:
    """The kernel's preemption model now: "none", "voluntary", "full", "lazy", "rt", or
    "unknown".  A PREEMPT_DYNAMIC kernel switches at run time (debugfs shows the current one
    in parentheses); without debugfs, the boot's preempt= or the build's default holds."""
    if preempt_rt:
        return "rt"
    try:
        current = [m.strip("()") for m in control.read_text().split() if m.startswith("(")]
    except OSError:
        current = []
    if current:
        return current[0]
    if config.get("CONFIG_PREEMPT_DYNAMIC") == "y":
        try:
            asked = [a.split("=", 1)[1] for a in cmdline.read_text().split()
                     if a.startswith("preempt=")]
        except OSError:
            asked = []
        if asked and asked[-1] in ("none", "voluntary", "full", "lazy"):
            return asked[-1]
    for option, model in (("CONFIG_PREEMPT", "full"), ("CONFIG_PREEMPT_LAZY", "lazy"),
                          ("CONFIG_PREEMPT_VOLUNTARY", "voluntary"), ("CONFIG_PREEMPT_NONE", "none")):
        if config.get(option) == "y":
            return model
    return "unknown"


def preemptible_on_trampoline(function: str, preemption: str) -> bool:
    """Whether a program a trampoline runs at this lock function can be preempted inside.

    Under full preemption and on PREEMPT_RT trampolines disable migration, not preemption:
    every lock function but the spinning ones' (whose acquire returns, and whose release is
    entered, with preemption off) runs our program preemptibly there."""
    return preemption in PREEMPTIBLE_MODELS and function not in SPIN_FUNCTIONS + RWLOCK_FUNCTIONS


def lock_methods(functions: Iterable[str], probe: str, features: KernelFeatures) -> dict[str, str]:
    """How each lock function is traced: "fentry" (fentry/fexit) or "kprobe" (kprobe and
    kretprobe).  --probe fentry or kprobe asks for one for all; auto takes fentry where the
    kernel has it, but kprobes where a trampoline's program would be preemptible (preempt=full,
    PREEMPT_RT: each preemption there loses the lock calls of every other task of the CPU
    meanwhile).
    Raises if the method asked for (or, for auto, both) cannot attach here."""
    fentry, kprobes = features.fentry.available, features.kprobes.available
    if probe == "fentry" and not fentry:
        raise IrqlockError(f"--probe fentry: {features.fentry.detail}")
    if probe == "kprobe" and not kprobes:
        raise IrqlockError(f"--probe kprobe: {features.kprobes.detail}")
    if not (fentry or kprobes):
        raise IrqlockError(f"locks needs fentry/fexit or kprobes: fentry: "
                           f"{features.fentry.detail}; kprobes: {features.kprobes.detail}")
    if probe != "auto":
        return dict.fromkeys(functions, probe)
    return {f: "kprobe" if not fentry or (kprobes and preemptible_on_trampoline(
        f, features.preemption)) else "fentry" for f in functions}

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe/type")
KPROBE_BLACKLIST = Path("/sys/kernel/debug/kprobes/blacklist")


@dataclass
class Capability:
    available: bool
    detail: str

    def __str__(self) -> str:
        return ("yes" if self.available else "no") + (f" ({self.detail})" if self.detail else "")


@dataclass
class FunctionSupport:
    fentry: bool
    kprobe: bool


@dataclass
class KernelFeatures:
    release: str
    root: bool
    btf: Capability
    btf_path: str
    config_source: str | None
    tracefs: str | None
    fentry: Capability
    kprobes: Capability
    preemptirq_tracepoints: Capability
    lock_contention_tracepoints: Capability
    irq_handler_tracepoints: Capability
    perf_cpu_clock: Capability
    functions: dict[str, FunctionSupport] = field(default_factory=dict)
    preempt_rt: bool = False  # PREEMPT_RT: spinlock_t and rwlock_t sleep, handlers are threads
    preemption: str = "voluntary"  # the model when probed (see preemption_model)
    # What can confirm a sampled IRQ-off window as such (see irqoff.h, enum tick_site).
    tick_site: Capability = field(default_factory=lambda: Capability(False, "not probed"))
    steal_clock: Capability = field(default_factory=lambda: Capability(False, "not probed"))
    # Where the irqoff and locks programs find preempt_count (see irqlock.kernel.sysmap)
    preempt_count: Capability = field(default_factory=lambda: Capability(False, "not probed"))

    def can_trace(self, function: str) -> bool:
        support = self.functions.get(function)
        return bool(support and (support.fentry or support.kprobe))

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ToolPlan:
    tool: str
    mode: str  # exact | exact+sampled | sampled | unavailable
    detail: str


def read_config(release: str) -> tuple[dict[str, str], str | None]:
    """The kernel config as {CONFIG_X: value} and where it came from."""
    candidates = [Path("/proc/config.gz"), Path(f"/boot/config-{release}")]
    for path in candidates:
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        except OSError:
            continue
        config = {}
        for line in raw.decode(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("CONFIG_"):
                config[key] = value
        return config, str(path)
    return {}, None


def find_tracefs() -> Path | None:
    for path in TRACEFS_CANDIDATES:
        if (path / "events").is_dir():
            return path
    return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _btf_functions(btf_path: Path, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are functions in the kernel's BTF (fentry needs their type)."""
    from irqlock.bpf.libbpf import BTF_KIND_FUNC, libbpf

    lib = libbpf().lib
    btf = lib.btf__parse(str(btf_path).encode(), None)
    if not btf:
        return set()
    try:
        return {n for n in names if lib.btf__find_by_name_kind(btf, n.encode(), BTF_KIND_FUNC) > 0}
    finally:
        lib.btf__free(btf)


def _function_support(names: list[str], btf_path: Path | None, tracefs: Path | None,
                      kprobes: bool) -> dict[str, FunctionSupport]:
    # One line per function, "name" or "name [module]": a set of whole lines answers
    # for kernel functions without splitting ~50,000 lines (slow under emulation).
    traceable = set(_read_lines(tracefs / "available_filter_functions")) if tracefs else set()
    # A function ftrace can trace is a kernel text symbol: only the others need the
    # pass over /proc/kallsyms (seconds under emulation).
    untraced = [n for n in names if n not in traceable]
    text_symbols = (set(names) & traceable) | (_text_symbols(untraced) if untraced else set())
    blacklisted = set()
    for line in _read_lines(KPROBE_BLACKLIST):
        parts = line.split()
        if len(parts) >= 2:
            blacklisted.add(parts[1])
    in_btf = _btf_functions(btf_path, names) if btf_path else set()
    return {
        name: FunctionSupport(
            # Without tracefs we cannot list ftrace-able functions: let the load decide.
            fentry=name in in_btf and (tracefs is None or name in traceable),
            kprobe=kprobes and name in text_symbols and name not in blacklisted,
        )
        for name in names
    }


def _text_symbols(names: list[str]) -> set[str]:
    """Which of ``names`` are kernel functions in /proc/kallsyms (one regex pass, no table)."""
    try:
        text = Path("/proc/kallsyms").read_text()
    except OSError:
        return set()
    pattern = re.compile(r"^\S+ [tT] (" + "|".join(map(re.escape, names)) + r")$", re.M)
    return set(pattern.findall(text))


def _perf_cpu_clock() -> Capability:
    try:
        os.close(perf.open_cpu_clock(0, 1_000_000))
    except OSError as exc:
        return Capability(False, f"perf_event_open: {os.strerror(exc.errno) if exc.errno else exc}")
    return Capability(True, "software cpu-clock event")


def _tracepoint(tracefs: Path | None, category: str, *names: str) -> Capability:
    if tracefs is None:
        return Capability(False, "tracefs is not mounted")
    missing = [n for n in names if not (tracefs / "events" / category / n).is_dir()]
    if missing:
        return Capability(False, f"no {category}:{missing[0]} tracepoint")
    return Capability(True, ", ".join(f"{category}:{n}" for n in names))


def _tick_site() -> Capability:
    if os.uname().machine != "x86_64":
        return Capability(False, "sti/popf sites are x86-64 code: sampled windows unconfirmed")
    return Capability(True, "the closing tick lands right after an sti or a popf")


def _steal_clock() -> Capability:
    """Whether the hypervisor reports steal time (irqlock does not use it to confirm yet)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        steal = int(fields[8])
    except (OSError, IndexError, ValueError):
        return Capability(False, "unknown (/proc/stat unreadable)")
    if steal:
        return Capability(False, f"reported by the hypervisor ({steal} ticks), not used by irqlock")
    return Capability(False, "none (no paravirt steal time reported)")


def _preempt_count() -> Capability:
    source = preempt_count_source()
    return Capability(False, source.unplaced) if source.unplaced else \
        Capability(True, source.describe())


def probe(btf_path: Path = DEFAULT_BTF) -> KernelFeatures:
    """Gather the facts without attaching anything (see :mod:`irqlock.check` for the live proof)."""
    release = os.uname().release
    config, config_source = read_config(release)
    tracefs = find_tracefs()
    has_btf = btf_path.is_file()
    btf = Capability(has_btf, str(btf_path) if has_btf else f"{btf_path} not found "
                     "(the kernel needs CONFIG_DEBUG_INFO_BTF=y)")
    if KPROBE_PMU.exists():
        kprobes = Capability(True, "perf kprobe PMU")
    elif config.get("CONFIG_KPROBES") == "y":
        kprobes = Capability(False, "CONFIG_KPROBES=y but no kprobe PMU in /sys/bus/event_source")
    else:
        kprobes = Capability(False, "kernel built without kprobes (CONFIG_KPROBES)")
    direct_calls = config.get("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
    if not has_btf:
        fentry = Capability(False, "needs kernel BTF")
    elif config and direct_calls != "y":
        fentry = Capability(False, "kernel built without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
    else:
        fentry = Capability(True, "BTF trampolines (not yet proven by a load)")
    features = KernelFeatures(
        release=release,
        root=os.geteuid() == 0,
        btf=btf,
        btf_path=str(btf_path),
        config_source=config_source,
        tracefs=str(tracefs) if tracefs else None,
        fentry=fentry,
        kprobes=kprobes,
        preemptirq_tracepoints=_tracepoint(tracefs, "preemptirq", "irq_disable", "irq_enable"),
        lock_contention_tracepoints=_tracepoint(tracefs, "lock", "contention_begin",
                                                "contention_end"),
        irq_handler_tracepoints=_tracepoint(tracefs, "irq", "irq_handler_entry", "irq_handler_exit"),
        perf_cpu_clock=_perf_cpu_clock(),
        preempt_rt=config.get("CONFIG_PREEMPT_RT") == "y" or "PREEMPT_RT" in os.uname().version,
        tick_site=_tick_site(),
        steal_clock=_steal_clock(),
        preempt_count=_preempt_count(),
    )
    features.preemption = preemption_model(config, features.preempt_rt)
    # The lock functions of this kernel's flavor (rt_* only on PREEMPT_RT, _raw_read_* only off it)
    lock_functions = dict.fromkeys(f for fns in kind_functions(features.preempt_rt).values()
                                   for f in fns)
    features.functions = _function_support(IRQ_LINE_FUNCTIONS + list(lock_functions),
                                           btf_path if has_btf else None, tracefs,
                                           kprobes.available)
    return features


def _traceable(features: KernelFeatures, names: list[str]) -> tuple[list[str], list[str]]:
    ok = [n for n in names if features.can_trace(n)]
    return ok, [n for n in names if n not in ok]


def _plan_irqoff(features: KernelFeatures, blocker: str, method: str) -> ToolPlan:
    """All interrupts of a CPU, and softirq-off windows where preempt_count can be read."""
    irqoff = _irqoff_sources(features, blocker, method)
    if irqoff.mode != "unavailable" and not features.preempt_count.available:
        irqoff.detail += ", no softirq-off sampling"
    return irqoff


def _irqoff_sources(features: KernelFeatures, blocker: str, method: str) -> ToolPlan:
    """Tracepoints, else lock paths exact plus cpu-clock sampling."""
    if not (features.root and features.btf.available):
        return ToolPlan("irqoff", "unavailable", blocker)
    if features.preemptirq_tracepoints.available:
        return ToolPlan("irqoff", "exact", "preemptirq:irq_disable/irq_enable tracepoints")
    locks_ok, _ = _traceable(features, [f for f in SPIN_FUNCTIONS + RWLOCK_FUNCTIONS if "irq" in f])
    if not features.preempt_count.available:
        locks_ok = []  # they need preempt_count to tell a hardirq's calls apart
        blocker = blocker or "no preempt_count for the exact lock paths"
    sampler = features.perf_cpu_clock
    if features.preempt_rt:  # spinlock_t's _irqsave leaves interrupts on there
        method += " (raw spinlocks only: on PREEMPT_RT spinlock_t and rwlock_t do not turn " \
                  "interrupts off; the programs run with them off, so never preempted)"
    if locks_ok and sampler.available:
        return ToolPlan("irqoff", "exact+sampled",
                        f"lock paths exact via {method} ({len(locks_ok)} functions); other windows "
                        "sampled with cpu-clock (no preemptirq tracepoints)")
    if locks_ok:
        return ToolPlan("irqoff", "exact+sampled",
                        f"lock paths exact via {method}; other windows unseen: perf cpu-clock "
                        f"unavailable ({sampler.detail})")
    if sampler.available:
        return ToolPlan("irqoff", "sampled",
                        "cpu-clock sampling only: " + (blocker or "no irq lock function can be traced"))
    return ToolPlan("irqoff", "unavailable",
                    f"no preemptirq tracepoints, no traceable lock functions, no perf cpu-clock "
                    f"({sampler.detail})")


def tracing_blocker(features: KernelFeatures) -> str:
    """Why no tool can start here ('' if they can): what `check` plans with and what every
    tool's start refuses with (require_tracing)."""
    if not features.root:
        return "needs root (or CAP_BPF and CAP_PERFMON)"
    if not features.btf.available:
        return f"needs kernel BTF for CO-RE (CONFIG_DEBUG_INFO_BTF=y); no kernel BTF: " \
               f"{features.btf.detail}"
    return ""


def require_tracing(features: KernelFeatures, tool: str) -> None:
    """Raise, in one line, if ``tool`` cannot start here at all."""
    blocker = tracing_blocker(features)
    if blocker:
        raise IrqlockError(f"{tool} {blocker}")


METHOD_NAMES = {"fentry": "fentry/fexit", "kprobe": "kprobe/kretprobe"}


def _lock_attachment(features: KernelFeatures, kinds: dict[str, list[str]]) -> str:
    """Which lock kinds go by which attachment (see lock_methods), and why where they differ."""
    by_method: dict[str, list[str]] = {}
    for kind, functions in kinds.items():
        methods = set(lock_methods(functions, "auto", features).values())
        for method in sorted(methods):
            by_method.setdefault(method, []).append(kind)
    why = f" ({PREEMPTIBLE_KPROBES_WHY})" if features.fentry.available else ""
    return "; ".join(f"{', '.join(k)} via {METHOD_NAMES[m]}{why if m == 'kprobe' else ''}"
                     for m, k in by_method.items())


def plan(features: KernelFeatures) -> list[ToolPlan]:
    """What each tool will do on this kernel, and why."""
    plans = []
    blocker = tracing_blocker(features)
    if not blocker and not (features.fentry.available or features.kprobes.available):
        blocker = "neither fentry nor kprobes can attach on this kernel"
    method = "fentry/fexit" if features.fentry.available else "kprobe/kretprobe"

    plans.append(_plan_irqoff(features, blocker, method))

    # irq: one named IRQ line
    _, line_missing = _traceable(features, IRQ_LINE_FUNCTIONS)
    if blocker:
        plans.append(ToolPlan("irq", "unavailable", blocker))
    elif line_missing:
        plans.append(ToolPlan("irq", "unavailable", f"cannot trace {', '.join(line_missing)}"))
    else:
        handlers = ("; handler run time from irq:irq_handler_entry/exit"
                    if features.irq_handler_tracepoints.available else "")
        unpreempted = (" (called with the line's raw lock held: never preempted, on "
                       "PREEMPT_RT too)" if features.preempt_rt else "")
        plans.append(ToolPlan("irq", "exact", f"depth changes 0->1 (irq_disable) and 1->0 "
                              f"(irq_startup) via {method}{unpreempted}{handlers}"))

    # locks and deadlock
    kinds = kind_functions(features.preempt_rt)
    if not features.preempt_rt:
        del kinds["raw_spinlock"]  # one with spinlock there
    traced_kinds = [k for k, fns in kinds.items() if _traceable(features, fns)[0]]
    if not blocker and not features.preempt_count.available:
        blocker = f"needs preempt_count: {features.preempt_count.detail}"
    if blocker or not traced_kinds:
        plans.append(ToolPlan("locks", "unavailable", blocker or "no lock function can be traced"))
        plans.append(ToolPlan("deadlock", "unavailable", blocker or "needs the lock tracer"))
    else:
        waits = ("contended waits from lock:contention_begin/end"
                 if features.lock_contention_tracepoints.available
                 else "waits from acquire entry/return")
        how = _lock_attachment(features, {k: kinds[k] for k in traced_kinds})
        plans.append(ToolPlan("locks", "exact", f"{how}; {waits}"))
        plans.append(ToolPlan("deadlock", "exact", "lock-order graph and wait-for graph from "
                              f"{how}"))
    return plans
