"""What `irqlock locks` and `irqlock deadlock` trace on this kernel, and how: the lock
functions of the kinds asked for, each by fentry/fexit or kprobe/kretprobe (see
kernel.features.lock_methods), and the tracepoints beside them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from irqlock.defaults import DEFAULT_MAX_EDGES, DEFAULT_MAX_LOCKS, LOCK_KINDS
from irqlock.errors import IrqlockError
from irqlock.kernel.features import (
    LOCK_FUNCTIONS,
    PREEMPTIBLE_MODELS,
    KernelFeatures,
    kind_functions,
    lock_methods,
)

# Functions of each kind that release a lock (fentry); the others acquire (fexit).
RELEASES = ("unlock", "up_read", "up_write")
# In the lists but not traced: downgrade_write keeps the lock (the hold goes on).
NOT_TRACED = {"downgrade_write"}
CONTENTION_PROGRAMS = ["contention_end", "contention_begin"]
# Where a context's held stack starts empty (stale entries are dropped: a system call's
# entry empties the task's); a hardirq's start also marks what the interrupted context
# holds for IRQ safety.
CONTEXT_START_PROGRAMS = {
    "on_softirq_entry": "irq/softirq_entry", "on_irq_handler_entry": "irq/irq_handler_entry",
    "on_local_timer_entry": "irq_vectors/local_timer_entry",
    "on_call_function_entry": "irq_vectors/call_function_entry",
    "on_call_function_single_entry": "irq_vectors/call_function_single_entry",
    "on_reschedule_entry": "irq_vectors/reschedule_entry",
    "on_irq_work_entry": "irq_vectors/irq_work_entry",
    "on_sys_enter": "raw_syscalls/sys_enter",
}
BLOCKED_PROGRAMS = ["on_sched_switch"]
# What stamps a slab object's locks born anew when it is freed (lock-order analysis only).
FREE_PROGRAMS = {"fentry": ["kmem_cache_free_entry", "kfree_entry"],
                 "kprobe": ["kmem_cache_free_kprobe", "kfree_kprobe"]}

def is_release(function: str) -> bool:
    return any(part in function for part in RELEASES)


def program_names(function: str, method: str) -> list[str]:
    """The programs that trace `function` by `method` ("fentry" or "kprobe")."""
    if method == "kprobe":
        return [f"{function}_kprobe"] if is_release(function) \
            else [f"{function}_kprobe", f"{function}_kretprobe"]
    return [f"{function}_entry" if is_release(function) else f"{function}_exit"]


LOCK_FUNCTION_NAMES = frozenset(LOCK_FUNCTIONS)


@dataclass
class LocksConfig:
    kinds: list[str] = field(default_factory=lambda: list(LOCK_KINDS))
    tgid: int | None = None
    lock_addr: int | None = None
    max_locks: int = DEFAULT_MAX_LOCKS
    # irqlock deadlock's duties (see locks.bpf.c)
    order: bool = False  # lock-order edges
    irq_safety: bool = False  # locks taken in hardirq vs. held with interrupts on
    blocked: bool = False  # tasks in D state, stacks of sleeping waits
    max_edges: int = DEFAULT_MAX_EDGES
    probe: str = "auto"  # auto (fentry/fexit where the kernel has them) | fentry | kprobe


@dataclass
class LocksPlan:
    functions: list[str]
    not_attached: list[str]
    contention: bool
    context_programs: list[str] = field(default_factory=list)  # the tracepoints this kernel has
    # function -> "fentry" (fentry/fexit) or "kprobe" (kprobe/kretprobe): see lock_methods
    methods: dict[str, str] = field(default_factory=dict)
    preempt_rt: bool = False  # spinlock_t and rwlock_t sleep (rt_spin_lock, ...)
    preemptible: bool = False  # a trampoline's program can be preempted (preempt=full, RT)

    def method_of(self, function: str) -> str:
        return self.methods.get(function, "fentry")

    @property
    def method(self) -> str:
        """"fentry", "kprobe", or "fentry+kprobe" where each traces some functions."""
        used = set(self.methods.values()) or {"fentry"}
        return "+".join(m for m in ("fentry", "kprobe") if m in used)

    @property
    def uses_kprobes(self) -> bool:
        return "kprobe" in self.methods.values()

    @property
    def free_method(self) -> str:
        """How the frees are traced: by kprobe where every lock function is, and where the
        kernel preempts and kprobes are used at all (kfree is as preemptible as mutex_lock)."""
        return "kprobe" if self.method == "kprobe" or (self.preemptible and self.uses_kprobes) \
            else "fentry"


def choose_functions(config: LocksConfig, features: KernelFeatures) -> LocksPlan:
    """The lock functions to trace for the chosen kinds, and how; raises if none can be."""
    by_kind = kind_functions(features.preempt_rt)
    wanted = list(dict.fromkeys(f for kind in config.kinds for f in by_kind[kind]
                                if f not in NOT_TRACED))
    methods = lock_methods(wanted, config.probe, features)
    functions = [f for f in wanted if (support := features.functions.get(f))
                 and (support.fentry if methods[f] == "fentry" else support.kprobe)]
    if not functions:
        raise IrqlockError("no lock function of the chosen kinds can be traced: run 'irqlock check'")
    tracefs = Path(features.tracefs) if features.tracefs else None
    contexts = [program for program, event in CONTEXT_START_PROGRAMS.items()
                if tracefs and (tracefs / "events" / event).is_dir()]
    missing = [event for program, event in CONTEXT_START_PROGRAMS.items()
               if program not in contexts]
    return LocksPlan(functions=functions, preempt_rt=features.preempt_rt,
                     preemptible=features.preemption in PREEMPTIBLE_MODELS,
                     not_attached=[f for f in wanted if f not in functions] + missing,
                     contention=features.lock_contention_tracepoints.available,
                     context_programs=contexts, methods={f: methods[f] for f in functions})
