"""Kernel locks: who takes which, hold and wait times, from locks.bpf.c's in-kernel aggregates.

The BPF side keeps, per lock, counts, totals, maxima and log-linear histograms
of hold and (contended) wait times, and per (task, lock) a count and the first
stack.  This module reads those maps into LockRecord objects: names from
kallsyms (a static lock's symbol), percentiles from the histograms.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from irqlock.analysis.histograms import (
    LOGLIN_BUCKETS,
    loglinear_bounds,
    loglinear_index,
    loglinear_percentile,
)
from irqlock.bpf.constants import RAW_LOCK_TAG
from irqlock.bpf.loader import BPF_MAP_TYPE_LRU_HASH, BpfObject, Map
from irqlock.bpf.tracer import BpfTracer
from irqlock.defaults import LOCK_KINDS
from irqlock.errors import IrqlockError
from irqlock.kernel.features import (
    KernelFeatures,
    kind_functions,
    require_tracing,
)
from irqlock.kernel.kallsyms import Kallsyms, Symbols
from irqlock.kernel.percpu import possible_cpus
from irqlock.kernel.tasks import tgid_exists
from irqlock.tracers.classes import ClassNames, LockClass
from irqlock.tracers.lock_maps import HolderKey, HolderStruct, LockMaps, LockStatsStruct
from irqlock.tracers.lock_plan import (
    BLOCKED_PROGRAMS,
    CONTENTION_PROGRAMS,
    CONTEXT_START_PROGRAMS,
    FREE_PROGRAMS,
    LOCK_FUNCTION_NAMES,
    NOT_TRACED,
    LocksConfig,
    LocksPlan,
    is_release,
    program_names,
)

MAX_LOCKS_LIMIT = 1_000_000
KINDS = LOCK_KINDS
HOLDERS_PER_LOCK = 2  # holders map size = this x --max-locks
# Per-lock maps that are LRU where fentry traces the raw spinlocks: the locks in use
# stay.  (Where kprobes trace them, the lock calls our own map updates make are counted,
# which an LRU map's eviction makes uncountable: there they stay plain hash maps, full is
# full.)
LRU_MAPS = ("locks", "holders")
MAX_TASKS = 8192
IRQ_USES = 4096  # locks taken in hardirq / held with interrupts on, each
# Maps only irqlock deadlock fills, and the entries each gets then (None: --max-edges;
# the class graph a quarter of that: there are far fewer classes than locks); otherwise
# 1, as a hash map is allocated whole at load, used or not.
DEADLOCK_MAPS: dict[str, int | None] = {"edges": None, "class_edges": None,
                                        "hardirq_locks": IRQ_USES,
                                        "irqs_on_locks": IRQ_USES, "blocked": MAX_TASKS,
                                        "wait_stacks": MAX_TASKS}
CLASS_EDGES_SHARE = 4  # class_edges = max_edges // this
CACHES = 4096  # slab caches named (a kernel has a few hundred)


def lock_address(key: int) -> int:
    """The address of the lock a map key stands for (see RAW_LOCK_TAG)."""
    return key & ~RAW_LOCK_TAG


# stats' guard_full, said by both lock tools (see locks_guard.bpf.h)
GUARD_FULL_WARNING = ("map updates were not made: that many of our programs were preempted "
                      "mid-update on one CPU, findings may be missing")

# What a kretprobe's stack may start with: the trampoline the function returned into.
RETURN_TRAMPOLINES = ("arch_rethook_trampoline", "__kretprobe_trampoline", "kretprobe_trampoline")


def caller_frames(stack: list[str]) -> list[str]:
    """A stack taken on return from a lock function starts inside it: start at its caller."""
    start = 0
    while start < len(stack) and (stack[start].split("+", 1)[0] in LOCK_FUNCTION_NAMES
                                  or stack[start].startswith(RETURN_TRAMPOLINES)):
        start += 1
    return stack[start:]


@dataclass(frozen=True)
class Timing:
    """Completed holds (or contended waits) of a lock: count, total, max and percentiles,
    all from one reading of its in-kernel aggregates, so that p50 <= p99 <= max."""

    total: int
    max: int
    p50: int
    p99: int
    # (bucket's lower bound in ns, count) of each non-empty log-linear bucket, ascending
    histogram: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(n for _low, n in self.histogram)

    @classmethod
    def of(cls, total: int, max_ns: int, hist: Sequence[int]) -> Timing:
        counts = list(hist)
        if not any(counts):
            return cls(0, 0, 0, 0)  # never held (or waited for) while we watched
        return cls(total=total, max=max_ns, p50=loglinear_percentile(counts, 0.50, max_ns),
                   p99=loglinear_percentile(counts, 0.99, max_ns),
                   histogram=[(loglinear_bounds(i)[0], n) for i, n in enumerate(counts) if n])

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "total": self.total, "max": self.max, "p50": self.p50,
                "p99": self.p99}

    @classmethod
    def merged(cls, timings: Sequence[Timing]) -> Timing:
        """Of several locks at once (a class): their histograms added, bucket by bucket."""
        counts = [0] * LOGLIN_BUCKETS
        for timing in timings:
            for low, n in timing.histogram:
                counts[loglinear_index(low)] += n
        return cls.of(sum(t.total for t in timings), max((t.max for t in timings), default=0),
                      counts)


@dataclass(frozen=True)
class Coverage:
    """How many of all acquisitions the locks in a snapshot account for: the per-lock
    maps keep the locks in use (LRU) or stop taking new ones when full (kprobe mode); and
    how many the kernel did not let our programs see at all (missed)."""

    shown: int  # acquisitions counted in the locks of the snapshot
    seen: int  # acquisitions of every lock in the same time
    missed: int = 0  # acquisitions whose program the kernel skipped (see acquisitions_missed)

    @property
    def share(self) -> float:
        return min(1.0, self.shown / self.seen) if self.seen else 1.0

    @property
    def counted_share(self) -> float:
        """The share of all acquisitions (seen or missed) that the programs counted."""
        return self.seen / (self.seen + self.missed) if self.seen + self.missed else 1.0

    def to_json(self) -> dict[str, Any]:
        return {"acquisitions_covered": self.shown, "covered_share": round(self.share, 6)}


@dataclass(frozen=True)
class Holder:
    pid: int
    tgid: int
    comm: str
    acquisitions: int
    first_stack: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "tgid": self.tgid, "comm": self.comm,
                "acquisitions": self.acquisitions, "first_stack": self.first_stack}


@dataclass
class LockRecord:
    addr: int
    name: str | None  # the static lock's symbol, else None
    site: str | None  # first acquiring call site seen (names a dynamic lock)
    kind: str
    acquisitions: int
    contended: int
    hold: Timing
    wait: Timing
    holders: list[Holder] = field(default_factory=list)
    cls: LockClass | None = None  # its class when first seen (classes.py)

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}@{self.site or hex(self.addr)}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "lock", "addr": hex(self.addr), "name": self.name, "site": self.site,
                "class": self.cls.label if self.cls else None,
                "merged_cache": self.cls.merged if self.cls else False,
                "kind": self.kind, "acquisitions": self.acquisitions,
                "contended": self.contended, "hold_ns": self.hold.to_json(),
                "wait_ns": self.wait.to_json(),
                "hold_histogram": [list(b) for b in self.hold.histogram],
                "wait_histogram": [list(b) for b in self.wait.histogram],
                "holders": [h.to_json() for h in self.holders]}


@dataclass
class ClassRecord:
    """The locks of one class (classes.py) together: "all i_rwsems", not one of them."""

    cls: LockClass
    kind: str
    locks: int  # instances seen
    acquisitions: int
    contended: int
    hold: Timing
    wait: Timing
    holders: list[Holder] = field(default_factory=list)  # per task, over all its instances

    @property
    def label(self) -> str:
        return self.cls.label

    def to_json(self) -> dict[str, Any]:
        return {"type": "lock_class", "class": self.cls.label, "merged_cache": self.cls.merged,
                "kind": self.kind, "locks": self.locks, "acquisitions": self.acquisitions,
                "contended": self.contended, "hold_ns": self.hold.to_json(),
                "wait_ns": self.wait.to_json(),
                "hold_histogram": [list(b) for b in self.hold.histogram],
                "wait_histogram": [list(b) for b in self.wait.histogram],
                "holders": [h.to_json() for h in self.holders]}


def by_class(records: Sequence[LockRecord]) -> list[ClassRecord]:
    """Lock records added up per class and kind (a record without a class is its own)."""
    groups: dict[tuple[Any, ...], tuple[LockClass, list[LockRecord]]] = {}
    for r in records:
        cls = r.cls or LockClass(key=("addr", r.addr), label=r.label)
        groups.setdefault((cls.key, r.kind), (cls, []))[1].append(r)
    result = []
    for cls, members in groups.values():
        holders: dict[int, Holder] = {}
        for r in members:
            for h in r.holders:
                seen = holders.get(h.pid)
                holders[h.pid] = h if seen is None else \
                    replace(seen, acquisitions=seen.acquisitions + h.acquisitions)
        result.append(ClassRecord(
            cls=cls, kind=members[0].kind, locks=len(members),
            acquisitions=sum(r.acquisitions for r in members),
            contended=sum(r.contended for r in members),
            hold=Timing.merged([r.hold for r in members]),
            wait=Timing.merged([r.wait for r in members]),
            holders=sorted(holders.values(), key=lambda h: -h.acquisitions)))
    return result


class LocksTracer(BpfTracer):
    """Loads and attaches locks.bpf.c; snapshot() reads what it has aggregated."""

    OBJECT = "locks"

    def __init__(self, config: LocksConfig, plan: LocksPlan, symbols: Symbols | None = None,
                 attach: bool = True) -> None:
        """attach=False: only load (irqlock check proves the object loads here)."""
        self.config = config
        self.plan = plan
        self.covered: Coverage | None = None  # as of the latest snapshot
        self._missed_before = 0  # acquire-program misses until the last clear()
        self._start(plan.method != "kprobe", attach, symbols)

    @property
    def maps(self) -> LockMaps:
        """The object's maps, typed (lock_maps.py)."""
        return LockMaps(self.obj)

    @property
    def kallsyms(self) -> Kallsyms:
        return self.symbols.current

    def _extra_programs(self) -> list[str]:
        """The programs beyond acquire and release this run needs."""
        c = self.config
        return (self.plan.context_programs
                + (CONTENTION_PROGRAMS if self.plan.contention else [])
                + (BLOCKED_PROGRAMS if c.blocked else [])
                + (FREE_PROGRAMS[self.plan.free_method] if c.order else []))

    def _configure(self, obj: BpfObject, use_fentry: bool) -> None:
        c = self.config
        # Our map updates take raw spinlocks: kprobes there miss each of those lock calls.
        spin_kprobes = any(self.plan.method_of(f) == "kprobe" for f in self.plan.functions
                           if f in kind_functions(False)["spinlock"])
        obj.set_rodata(target_tgid=-1 if c.tgid is None else c.tgid,
                            target_lock=c.lock_addr or 0, track_order=int(c.order),
                            track_irq_safety=int(c.irq_safety), track_blocked=int(c.blocked),
                            rt_kernel=int(self.plan.preempt_rt), own_tgid=os.getpid(),
                            plain_unlock_traced=int("_raw_spin_lock" not in self.plan.functions
                                                    or "_raw_spin_unlock" in self.plan.functions),
                            own_misses_per_lock_call=3 if spin_kprobes else 0,
                            nr_cpus=max(1, possible_cpus()))
        if not spin_kprobes:
            for name in LRU_MAPS:
                obj.set_type(name, BPF_MAP_TYPE_LRU_HASH)
        obj.set_max_entries("locks", c.max_locks)
        obj.set_max_entries("holders", c.max_locks * HOLDERS_PER_LOCK)
        obj.set_max_entries("task_held", MAX_TASKS)
        obj.set_max_entries("task_wait", MAX_TASKS)
        obj.set_max_entries("caches", CACHES)
        used = {"edges": c.order, "class_edges": c.order, "hardirq_locks": c.irq_safety,
                "irqs_on_locks": c.irq_safety, "blocked": c.blocked, "wait_stacks": c.blocked}
        for name, size in DEADLOCK_MAPS.items():
            entries = size if size is not None else \
                max(1, c.max_edges // CLASS_EDGES_SHARE) if name == "class_edges" else c.max_edges
            obj.set_max_entries(name, entries if used[name] else 1)
        for function in LOCK_FUNCTION_NAMES - NOT_TRACED:
            method_used = self.plan.method_of(function) if function in self.plan.functions \
                else None
            for method in ("fentry", "kprobe"):
                if method != method_used:
                    for program in program_names(function, method):
                        obj.disable(program)
        extra = self._extra_programs()
        for program in [*CONTEXT_START_PROGRAMS, *CONTENTION_PROGRAMS, *BLOCKED_PROGRAMS,
                        *(p for programs in FREE_PROGRAMS.values() for p in programs)]:
            if program not in extra:
                obj.disable(program)

    def _attach(self) -> None:
        # Paused while the probes go on one by one: a kprobe on an acquire's entry
        # whose kretprobe is not on yet would look like a missed return.
        self._pause(True)
        self._attach_programs()
        self._pause(False)

    def _attach_programs(self) -> None:
        # What ends a hold or a wait first, so that nothing opens before its end is watched.
        self.obj.attach("task_exit")
        for program in self._extra_programs():
            self.obj.attach(program)
        ordered = sorted(self.plan.functions, key=lambda f: not is_release(f))
        for function in ordered:
            for program in program_names(function, self.plan.method_of(function)):
                self.obj.attach(program)

    def _holders(self) -> dict[int, list[Holder]]:
        result: dict[int, list[Holder]] = {}
        for key, value in self.entries(self.maps.holders()):
            k = HolderKey.from_buffer_copy(key)
            h = HolderStruct.from_buffer_copy(value)
            stack = caller_frames(
                self.kallsyms.stack(list(h.stack[: max(h.stack_bytes, 0) // 8])))
            result.setdefault(k.lock, []).append(Holder(
                pid=k.pid, tgid=h.tgid, comm=h.comm.decode(errors="replace"),
                acquisitions=h.acquisitions, first_stack=stack))
        return result

    def snapshot(self, with_holders: bool = True) -> list[LockRecord]:
        """Every lock seen so far, with its holders (most acquisitions first).

        Without holders (and so without the first call site that names a dynamic
        lock) it is much cheaper: what a metrics refresh every second needs.
        """
        holders = self._holders() if with_holders else {}
        names = self.class_names()
        records: list[LockRecord] = []
        for key, value in self.entries(self.maps.locks()):
            lock = int.from_bytes(key, "little")
            s = LockStatsStruct.from_buffer_copy(value)
            lock_holders = holders.get(lock, [])
            first = next((h for h in lock_holders if h.pid == s.first_pid), None)
            if first is None and with_holders:  # its holders entry gone: the lock kept it
                first = self._first_holder(s)
                lock_holders.append(first)
            lock_holders.sort(key=lambda h: -h.acquisitions)
            addr = lock_address(lock)
            records.append(LockRecord(
                addr=addr, name=self.kallsyms.data_name(addr),
                site=first.first_stack[0] if first and first.first_stack else None,
                kind=KINDS[s.kind] if s.kind < len(KINDS) else "unknown",
                acquisitions=s.acquisitions, contended=s.contended,
                hold=Timing.of(s.hold_total_ns, s.hold_max_ns, s.hold_hist),
                wait=Timing.of(s.wait_total_ns, s.wait_max_ns, s.wait_hist),
                holders=lock_holders, cls=names.of(s.cls)))
        self.covered = Coverage(shown=sum(r.acquisitions for r in records),
                                seen=self.acquisitions_seen(), missed=self.acquisitions_missed())
        return self._name_wait_locks(records)

    def _name_wait_locks(self, records: list[LockRecord]) -> list[LockRecord]:
        """PREEMPT_RT: a spinlock_t or mutex starts with its rt_mutex, whose raw wait_lock
        has the same address: that raw spinlock is named as the part it is, and left out
        where one lock was asked for (--lock names the lock, not its inside)."""
        sleeping = {r.addr for r in records if r.kind != "raw_spinlock"}
        named = []
        for r in records:
            if r.kind == "raw_spinlock" and r.addr in sleeping:
                if self.config.lock_addr is not None:
                    continue
                r.name = f"{r.name or hex(r.addr)}.wait_lock"
            named.append(r)
        return named

    def _first_holder(self, s: LockStatsStruct) -> Holder:
        stack = caller_frames(self.kallsyms.stack(list(s.first_stack[: max(s.first_stack_bytes,
                                                                            0) // 8])))
        return Holder(pid=s.first_pid, tgid=s.first_tgid, comm=s.first_comm.decode(errors="replace"),
                      acquisitions=s.first_acquisitions, first_stack=stack)

    def class_names(self) -> ClassNames:
        """Names for the classes seen so far (the slab caches met, kallsyms)."""
        return ClassNames.from_map(self.entries(self.maps.caches()), self.kallsyms)

    def entries(self, bpf_map: Map) -> Iterator[tuple[bytes, bytes]]:
        """A map's entries: a batch at a time, but one by one while kprobes trace (a batch
        would hold the CPU's kprobe programs off while it copies: see Map.items_singly)."""
        if self.plan.uses_kprobes and self.obj.attached:
            return bpf_map.items_singly()
        return bpf_map.items()

    def acquisitions_seen(self) -> int:
        """Acquisitions of every lock since the start or the last clear (kept or not)."""
        return sum(int.from_bytes(v[:8], "little")
                   for v in self.obj.map("acquisitions_seen").lookup_per_cpu(bytes(4)))

    def _acquire_misses(self) -> int:
        """Runs of the acquire programs the kernel skipped since loading, less those our own
        map updates caused (each of those is a lock call of ours, no one's acquisition)."""
        misses = self.obj.recursion_misses()
        # (by kprobe, an acquisition is lost if its entry or its return is skipped, and
        # what skips one mostly skips both: the more of the two)
        lost = sum(max(misses.get(p, 0) for p in program_names(f, self.plan.method_of(f)))
                   for f in self.plan.functions if not is_release(f))
        return lost - self.obj.read_global("own_acquire_misses")

    def acquisitions_missed(self) -> int:
        """Acquisitions the programs never saw since the start or the last clear: the kernel
        skips a program while another run of it is going on on that CPU (an interrupt
        nested over it; on PREEMPT_RT, with fentry, a task preempted inside it).  As the
        kernel counts them: 6.1 does not count a kprobe's (see lock_methods)."""
        return max(0, self._acquire_misses() - self._missed_before)

    def clear(self) -> None:
        """Start the next interval from zero (holds in progress end uncounted).

        The programs pause meanwhile: a delete holds the map's own locks while it
        calls the lock functions we trace (see control in locks.bpf.c).
        """
        self._pause(True)
        try:
            for name in ("locks", "holders"):
                m = self.obj.map(name)
                for key in list(m.keys()):
                    m.delete(key)
            seen = self.obj.map("acquisitions_seen")
            seen.update(bytes(4), bytes(8 * len(seen.lookup_per_cpu(bytes(4)))))
            self._missed_before = self._acquire_misses()
            self.covered = None
        finally:
            self._pause(False)

    def stats(self) -> dict[str, Any]:
        g = self.obj.read_global
        kernel_misses = sum(self.obj.recursion_misses().values())
        counted = Coverage(shown=0, seen=self.acquisitions_seen(), missed=self.acquisitions_missed())
        return {"type": "stats", "tool": "locks", "lost_events": 0,
                # what the kernel counts, less the re-entries our own map updates cause
                "recursion_misses": max(0, kernel_misses - g("own_recursion")),
                "recursion_misses_kernel": kernel_misses,
                "locks_dropped": g("locks_dropped"), "holders_dropped": g("holders_dropped"),
                "tasks_dropped": g("tasks_dropped"), "held_overflow": g("held_overflow"),
                "stale_dropped": g("stale_dropped"), "acquisitions_seen": counted.seen,
                "acquisitions_missed": counted.missed,
                "counted_share": round(counted.counted_share, 6),
                # irqlock's own process (its map reads take the maps' bucket locks)
                "own_process_skipped": g("own_process_skipped"),
                **(self.covered.to_json() if self.covered else {}),
                "waits_dropped": g("waits_dropped"), "self_skipped": g("self_skipped"),
                "guard_full": g("guard_full"),
                "probe": self.plan.method, "returns_missed": g("returns_missed"),
                "max_locks": self.config.max_locks,
                "lock_classes": "unavailable (the kernel's memory layout cannot be read: "
                "no page_offset_base, vmemmap_base or high_memory in kallsyms, or no struct "
                "slab / PG_slab in its BTF): classes are addresses"
                if g("classes_unavailable") else "slab cache + offset",
                "slab_locks": g("slab_locks"), "caches_dropped": g("caches_dropped"),
                "lock_offsets_dropped": g("lock_offsets_dropped"),
                "map_bytes": self.map_bytes(),
                "preempt_count": self.obj.preempt_count_from,
                "waits": "lock:contention_begin/end" if self.plan.contention
                else "unavailable (no lock:contention tracepoints)",
                "not_attached": self.plan.not_attached}

    def map_bytes(self) -> int:
        """Memory the kernel charges for the tracer's big maps (preallocated: this is the cap)."""
        return sum(self.obj.map(name).memlock_bytes()
                   for name in ("locks", "holders", "task_held", "task_wait", "caches",
                                *DEADLOCK_MAPS))

    def _pause(self, paused: bool) -> None:
        """While paused every lock program does nothing (control in locks.bpf.c)."""
        self.obj.map("control").update(bytes(4), int(paused).to_bytes(4, "little"))

    def detach(self) -> None:
        self._pause(True)  # the probes come off one by one, as they went on
        self.obj.detach()


def resolve_lock(text: str, kallsyms: Kallsyms) -> int:
    """--lock: a hex address or a data symbol (a static lock)."""
    if text.lower().startswith("0x"):
        try:
            return int(text, 16)
        except ValueError:
            raise IrqlockError(f"--lock: bad address {text!r}") from None
    address = kallsyms.address_of(text)
    if address is None:
        raise IrqlockError(f"--lock: no kernel or module symbol {text!r} (give a symbol of a "
                           "static lock or a hex address)")
    if kallsyms.data_name(address) is None:
        raise IrqlockError(f"--lock: {text} is a function, not a lock")
    return address


def validate(config: LocksConfig, lock_text: str | None, features: KernelFeatures) -> None:
    """Checks the request against this machine; --lock's text becomes config.lock_addr."""
    if not 1 <= config.max_locks <= MAX_LOCKS_LIMIT:
        raise IrqlockError(f"--max-locks must be 1..{MAX_LOCKS_LIMIT}, not {config.max_locks}")
    require_tracing(features, "locks")
    if config.tgid is not None and not tgid_exists(config.tgid):
        raise IrqlockError(f"no process with pid {config.tgid}")
    if lock_text is not None:
        config.lock_addr = resolve_lock(lock_text, Kallsyms.load())
