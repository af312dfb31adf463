"""Deadlocks, potential and actual, from the lock tracer's state (locks.bpf.c in deadlock mode).

Four findings, each read from maps the BPF side keeps:

- lock-order cycles: an edge held -> acquired for every lock taken while others
  were held (first task and stack of each); cycles of any length in that graph;
- IRQ-unsafe locks: taken in hardirq context, and held elsewhere while a hardirq
  arrived (proof that interrupts were on): one stack of each;
- live deadlocks: tasks inside a sleeping lock's contended acquire, the lock
  each waits for and its owner (our held-lock stacks, else the lock's owner
  word) make a wait-for graph; its cycles are tasks that will never run again;
- hung tasks: asleep in D state longer than a threshold, with the lock they
  wait for and its owner when known.

Lock orders are kept at two levels.  Between instances (addresses): a cycle is
between these very locks.  Between classes (classes.py: a slab cache and offset,
a per-CPU variable, a static lock), as lockdep does: once any task took a lock
of class A and then one of class B, and any other task takes them the other way
round -- on other objects -- the inversion is there before the two ever meet on
the same objects.  Two locks of one class order nothing between classes (as
double_rq_lock takes them); between instances, both orders of such a pair are a
"recursive" cycle.  A trylock orders nothing (it cannot wait).
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from irqlock.analysis.graphs import DEFAULT_CYCLE_LIMIT, simple_cycles
from irqlock.bpf.constants import BLOCKED_BEFORE_START, MAX_HELD
from irqlock.defaults import DEFAULT_DEADLOCK_MAX_LOCKS, DEFAULT_MAX_EDGES
from irqlock.errors import IrqlockError
from irqlock.kernel.features import KernelFeatures, require_tracing
from irqlock.kernel.kmsg import KernelLog, KernelReport
from irqlock.kernel.tasks import d_state_tasks, kernel_stack, task_comm, task_state
from irqlock.tracers.classes import LockClass
from irqlock.tracers.findings import (
    Deadlock,
    DeadlockedTask,
    HungTask,
    IrqUnsafeLock,
    LockCycle,
    LockRef,
    OrderEdge,
)
from irqlock.tracers.lock_maps import (
    BlockedTaskStruct,
    ClassEdgeKey,
    ClassEdgeStruct,
    EdgeKey,
    EdgeUseStruct,
    HeldStackStruct,
    HolderKey,
    HolderStruct,
    LockUseStruct,
    WaitStackStruct,
    WaitStateStruct,
)
from irqlock.tracers.locks import LocksTracer, caller_frames, lock_address

# A wait counts for the wait-for graph once it is this old: every lock is
# waited for now and then; a cycle among waits this old is not a passing one.
SETTLED_WAIT_NS = 1_000_000_000
MAX_EDGES_LIMIT = 1_000_000


def _u32(raw: bytes) -> int:
    return int.from_bytes(raw[:4], "little")


def born_apart(cycle: Sequence[EdgeUseStruct]) -> bool:
    """Whether the edges of a cycle (edge i from lock i to lock i+1) saw a lock born at two
    times: the one leading to it and the one leaving it were made on different objects."""
    return any(edge.acquired_born_ns != cycle[(i + 1) % len(cycle)].held_born_ns
               for i, edge in enumerate(cycle))


ClassCycleKey = tuple[tuple[Any, ...], ...]  # a class cycle's classes (LockClass.key)


def class_cycle_key(classes: Sequence[tuple[Any, ...]]) -> ClassCycleKey:
    """A class cycle written from its least class: the same, however it was entered."""
    start = min(range(len(classes)), key=lambda i: repr(classes[i]))
    return tuple(classes[start:]) + tuple(classes[:start])


def static_lock_of(cls: LockClass | None) -> int | None:
    """The lock (its key) a static lock's class is; None for any other class."""
    return int(cls.key[1]) if cls is not None and cls.key[0] == "static" else None


def all_static(classes: Sequence[LockClass | None]) -> bool:
    """Classes of static locks only: each is its lock, a cycle between them is the cycle
    between their instances (the same finding, once)."""
    return all(static_lock_of(cls) is not None for cls in classes)


@dataclass
class DeadlockState:
    """What has been reported already, so that each finding is reported once."""

    # instance cycles reported, each with whether it was then on reused memory (such a
    # cycle is looked at again: its edges may be made anew between coexisting locks)
    cycles: dict[tuple[int, ...], bool] = field(default_factory=dict)
    class_cycles: set[ClassCycleKey] = field(default_factory=set)
    irq_unsafe: set[int] = field(default_factory=set)
    deadlocks: set[frozenset[int]] = field(default_factory=set)
    hung: set[tuple[int, int]] = field(default_factory=set)
    cycles_truncated: bool = False


class DeadlockFinder:
    """Reads the lock tracer's maps and turns them into findings not reported before."""

    def __init__(self, tracer: LocksTracer, hung_after_ns: int, cycle_limit: int) -> None:
        self.tracer = tracer
        self.maps = tracer.maps
        self.hung_after_ns = hung_after_ns
        self.cycle_limit = cycle_limit
        self.seen = DeadlockState()

    # ---- helpers ------------------------------------------------------------


    def lock(self, key: int, cls: LockClass | None = None) -> LockRef:
        """The lock a map key stands for, named."""
        addr = lock_address(key)
        return LockRef(addr, self.tracer.kallsyms.data_name(addr), cls)

    def _stack(self, raw: ctypes.Array[ctypes.c_uint64], size: int) -> list[str]:
        return caller_frames(self.tracer.kallsyms.stack(list(raw[: max(size, 0) // 8])))

    def _wait_stack(self, pid: int) -> list[str]:
        """Where `pid` went to sleep for its lock (empty if not captured)."""
        raw = self.maps.wait_stacks().lookup(pid.to_bytes(4, "little"))
        if raw is None:
            return []
        ws = WaitStackStruct.from_buffer_copy(raw)
        return self._stack(ws.stack, ws.stack_bytes)

    def _first_stack(self, lock: int, pid: int) -> list[str]:
        holders = self.maps.holders()
        raw = holders.lookup(bytes(HolderKey(lock=lock, pid=pid)))
        if raw is None:
            return []
        holder = HolderStruct.from_buffer_copy(raw)
        return self._stack(holder.stack, holder.stack_bytes)

    # ---- lock-order cycles --------------------------------------------------

    def lock_cycles(self) -> Iterator[LockCycle]:
        """Cycles not reported before, between instances, then between classes, each made
        (symbolized) only when asked for.  A cycle of static locks is a class cycle too
        (a static lock is its own class): it is reported once, between instances, saying
        both levels; the class pass leaves it to the instance pass."""
        yield from self._instance_cycles()
        yield from self._class_cycles()

    def _instance_cycles(self) -> Iterator[LockCycle]:
        # The graph only: an edge's example (two stacks, kilobytes) is read when a new cycle
        # goes through it, or the memory of each analysis would grow with the edges.
        edges_map = self.maps.edges()
        graph: dict[int, list[int]] = {}
        # Keys only: a key walk does not hold the kprobe programs off (Map.items_singly).
        for raw_key in list(edges_map.keys()):
            k = EdgeKey.from_buffer_copy(raw_key)
            graph.setdefault(k.held, []).append(k.acquired)
        names = self.tracer.class_names()  # after the edges: every cache they name is in
        found = simple_cycles(graph, self.cycle_limit)
        self.seen.cycles_truncated |= found.truncated
        for cycle in found.cycles:
            if self.seen.cycles.get(tuple(cycle)) is False:
                continue
            pairs = [(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]
            raws = [edges_map.lookup(bytes(EdgeKey(held, acquired))) for held, acquired in pairs]
            if None in raws:
                continue  # cleared since (irqlock serve's clear): no longer a cycle
            edges = [EdgeUseStruct.from_buffer_copy(raw) for raw in raws if raw is not None]
            reused = born_apart(edges)
            if self.seen.cycles.get(tuple(cycle)) == reused:
                continue
            self.seen.cycles[tuple(cycle)] = reused
            made = [self._edge(held, acquired, edge, names.of(edge.held_cls),
                               names.of(edge.acquired_cls))
                    for (held, acquired), edge in zip(pairs, edges, strict=True)]
            classes = [edge.held.cls for edge in made]
            both = all_static(classes)
            if both:
                self.seen.class_cycles.add(class_cycle_key([c.key for c in classes if c]))
            yield LockCycle(locks=[edge.held for edge in made], edges=made,
                            reused_memory=reused, also_class=both)

    def _class_cycles(self) -> Iterator[LockCycle]:
        """Cycles between classes; per-CPU copies fold into one class here, and edges
        between two copies of one variable are same-class nesting, no edge."""
        index: dict[tuple[Any, ...], int] = {}
        # (the example itself is read when a new cycle goes through it, as for instances)
        examples: dict[tuple[int, int], tuple[bytes, LockClass, LockClass]] = {}
        class_edges = self.maps.class_edges()
        keys = list(class_edges.keys())
        names = self.tracer.class_names()  # after the edges: every cache they name is in
        for raw_key in keys:
            k = ClassEdgeKey.from_buffer_copy(raw_key)
            held, acquired = names.of(k.held), names.of(k.acquired)
            if held.key == acquired.key:
                continue
            a = index.setdefault(held.key, len(index))
            b = index.setdefault(acquired.key, len(index))
            if (a, b) not in examples:
                examples[(a, b)] = (raw_key, held, acquired)
        graph: dict[int, list[int]] = {}
        for a, b in examples:
            graph.setdefault(a, []).append(b)
        found = simple_cycles(graph, self.cycle_limit)
        self.seen.cycles_truncated |= found.truncated
        for cycle in found.cycles:
            steps = [examples[(a, cycle[(i + 1) % len(cycle)])] for i, a in enumerate(cycle)]
            classes = [held for _raw_key, held, _acquired in steps]
            seen_key = class_cycle_key([cls.key for cls in classes])
            if seen_key in self.seen.class_cycles or self._instance_pass_has(classes):
                continue
            self.seen.class_cycles.add(seen_key)
            made = []
            for raw_key, held, acquired in steps:
                raw = class_edges.lookup(raw_key)
                if raw is None:
                    break  # cleared since: no longer a cycle
                example = ClassEdgeStruct.from_buffer_copy(raw)
                made.append(self._edge(example.held_lock, example.acquired_lock, example.edge,
                                       held, acquired))
            else:
                yield LockCycle(locks=[edge.held for edge in made], edges=made, level="class")

    def _instance_pass_has(self, classes: Sequence[LockClass]) -> bool:
        """A cycle of static classes whose instance edges are all kept: the instance pass
        reports it (this pass, or the next if its edges came after that pass read them)."""
        locks = [static_lock_of(cls) for cls in classes]
        if None in locks:
            return False
        edges = self.maps.edges()
        return all(edges.lookup(bytes(EdgeKey(lock, locks[(i + 1) % len(locks)]))) is not None
                   for i, lock in enumerate(locks))

    def _edge(self, held: int, acquired: int, edge: EdgeUseStruct, held_cls: LockClass,
              acquired_cls: LockClass) -> OrderEdge:
        """An edge held -> acquired as the BPF side kept it, its locks of these classes."""
        use = edge.use
        held_stack = self._stack(edge.held_stack, edge.held_stack_bytes) \
            if edge.held_stack_bytes >= 0 else self._first_stack(held, use.pid)
        return OrderEdge(held=self.lock(held, held_cls),
                         acquired=self.lock(acquired, acquired_cls),
                         pid=use.pid, tgid=use.tgid, comm=use.comm.decode(errors="replace"),
                         held_stack=held_stack,
                         acquire_stack=self._stack(use.stack, use.stack_bytes))

    # ---- IRQ safety ---------------------------------------------------------

    def irq_unsafe_locks(self) -> list[IrqUnsafeLock]:
        in_hardirq = {int.from_bytes(k, "little"): LockUseStruct.from_buffer_copy(v)
                      for k, v in self.tracer.entries(self.maps.hardirq_locks())}
        result = []
        for key, value in self.tracer.entries(self.maps.irqs_on_locks()):
            addr = int.from_bytes(key, "little")
            if addr not in in_hardirq or addr in self.seen.irq_unsafe:
                continue
            self.seen.irq_unsafe.add(addr)
            hard, on = in_hardirq[addr], LockUseStruct.from_buffer_copy(value)
            result.append(IrqUnsafeLock(
                lock=self.lock(addr), hardirq_stack=self._stack(hard.stack, hard.stack_bytes),
                hardirq_comm=hard.comm.decode(errors="replace"),
                irqs_on_stack=self._stack(on.stack, on.stack_bytes), pid=on.pid,
                comm=on.comm.decode(errors="replace")))
        return result

    # ---- live deadlocks and hung tasks --------------------------------------

    def waits(self) -> dict[int, WaitStateStruct]:
        """pid -> the sleeping lock it waits for now."""
        waits = {}
        for key, value in self.tracer.entries(self.maps.task_wait()):
            w = WaitStateStruct.from_buffer_copy(value)
            if w.start_ns:
                waits[_u32(key)] = w
        return waits

    def held(self) -> dict[int, list[int]]:
        """pid -> the sleeping locks (mutexes, rw-semaphores) it holds now."""
        held = {}
        for key, value in self.tracer.entries(self.maps.task_held()):
            st = HeldStackStruct.from_buffer_copy(value)
            locks = [st.locks[i].lock for i in range(min(st.depth, MAX_HELD))]
            if locks:
                held[_u32(key)] = locks
        return held

    @staticmethod
    def _owners(lock: int, wait: WaitStateStruct, waiter: int,
                held: dict[int, list[int]]) -> list[int]:
        """Who holds `lock`: the tasks our held stacks say, else the owner word's task."""
        owners = [pid for pid, locks in held.items() if lock in locks and pid != waiter]
        if not owners and wait.owner_pid and wait.owner_pid != waiter:
            owners = [wait.owner_pid]
        return owners

    def deadlocks(self, now_ns: int, all_waits: dict[int, WaitStateStruct],
                  held: dict[int, list[int]]) -> list[Deadlock]:
        """Wait-for cycles among the waits (from waits()) and holds (from held()) now."""
        waits = {pid: w for pid, w in all_waits.items() if now_ns - w.start_ns >= SETTLED_WAIT_NS}
        graph = {pid: [o for o in self._owners(w.lock, w, pid, held) if o in waits]
                 for pid, w in waits.items()}
        result = []
        for cycle in simple_cycles(graph, self.cycle_limit).cycles:
            key = frozenset(cycle)
            if key in self.seen.deadlocks:
                continue
            self.seen.deadlocks.add(key)
            tasks = []
            for pid in cycle:
                w = waits[pid]
                stack = self._wait_stack(pid) or kernel_stack(pid)
                tasks.append(DeadlockedTask(
                    pid=pid, comm=task_comm(pid), waits_for=self.lock(w.lock),
                    waiting_ns=now_ns - w.start_ns,
                    holds=[self.lock(addr) for addr in held.get(pid, [])], stack=stack))
            result.append(Deadlock(tasks=tasks, detected_ns=now_ns))
        return result

    def hung_tasks(self, now_ns: int, waits: dict[int, WaitStateStruct],
                   held: dict[int, list[int]]) -> list[HungTask]:
        """Tasks asleep in D state past the threshold, with what waits() and held() say."""
        result = []
        for key, value in self.tracer.entries(self.maps.blocked()):
            pid, b = _u32(key), BlockedTaskStruct.from_buffer_copy(value)
            if now_ns - b.since_ns < self.hung_after_ns or (pid, b.since_ns) in self.seen.hung:
                continue
            if task_state(pid) != "D":  # woken through a path we did not see, or gone
                continue
            self.seen.hung.add((pid, b.since_ns))
            wait = waits.get(pid)
            owners = self._owners(wait.lock, wait, pid, held) if wait else []
            result.append(HungTask(
                pid=pid, comm=task_comm(pid), since_ns=b.since_ns,
                blocked_ns=now_ns - b.since_ns, before_start=bool(b.flags & BLOCKED_BEFORE_START),
                stack=kernel_stack(pid) or self._wait_stack(pid),
                waits_for=self.lock(wait.lock) if wait else None,
                owner_pid=owners[0] if owners else None))
        return result

    def seed_blocked(self) -> int:
        """Tasks already in D state when we start: blocked since (at least) now."""
        blocked = self.maps.blocked()
        now = time.monotonic_ns()
        seeded = 0
        for pid, tgid in d_state_tasks():
            key = pid.to_bytes(4, "little")
            if blocked.lookup(key) is None and pid != os.getpid():
                blocked.update(key, bytes(BlockedTaskStruct(since_ns=now, tgid=tgid,
                                                            flags=BLOCKED_BEFORE_START)))
                seeded += 1
        return seeded


@dataclass
class DeadlockOptions:
    hung_after_ns: int
    max_edges: int = DEFAULT_MAX_EDGES
    max_locks: int = DEFAULT_DEADLOCK_MAX_LOCKS
    cycle_limit: int = DEFAULT_CYCLE_LIMIT
    probe: str = "auto"  # how lock functions are traced (LocksConfig.probe)


Finding = LockCycle | IrqUnsafeLock | Deadlock | HungTask | KernelReport


class DeadlockWatch:
    """The finder on a schedule: live findings every second, the order graph every 5 s.

    A deadlock forms and is reported within about two seconds; the lock-order graph
    can be large, so it is read less often (and once more at the end), and its findings
    are made a share of a second per poll at most: however many there are, the live
    findings keep their delay.
    """

    LIVE_EVERY_S = 1.0
    ORDER_EVERY_S = 5.0
    ORDER_BUDGET_S = 0.3

    def __init__(self, tracer: LocksTracer, options: DeadlockOptions) -> None:
        self.tracer = tracer
        self.options = options
        self.finder = DeadlockFinder(tracer, options.hung_after_ns, options.cycle_limit)
        self.kernel_log = KernelLog()
        self.blocked_before_start = self.finder.seed_blocked()
        self._next_live = self._next_order = time.monotonic()
        self._order_pending: Iterator[Finding] | None = None

    def _live(self) -> list[Finding]:
        now = time.monotonic_ns()
        waits, held = self.finder.waits(), self.finder.held()  # read once for both
        found: list[Finding] = [*self.finder.deadlocks(now, waits, held),
                                *self.finder.hung_tasks(now, waits, held)]
        return found + list(self.kernel_log.reports())

    def _order(self) -> Iterator[Finding]:
        yield from self.finder.lock_cycles()
        yield from self.finder.irq_unsafe_locks()

    def _drain_order(self, deadline: float) -> list[Finding]:
        """The pending order findings made before `deadline` (all of them if it is inf)."""
        found: list[Finding] = []
        while self._order_pending is not None and time.monotonic() < deadline:
            finding = next(self._order_pending, None)
            if finding is None:
                self._order_pending = None
            else:
                found.append(finding)
        return found

    def poll(self) -> list[Finding]:
        """What is new, when its time has come (call often)."""
        now, found = time.monotonic(), []
        if now >= self._next_live:
            found += self._live()
            self._next_live = now + self.LIVE_EVERY_S
        if now >= self._next_order and self._order_pending is None:
            self._order_pending = self._order()
            self._next_order = now + self.ORDER_EVERY_S
        return found + self._drain_order(time.monotonic() + self.ORDER_BUDGET_S)

    def before_detach(self) -> list[Finding]:
        """Blocked tasks are judged while the probes run (detached, we miss wake-ups)."""
        return self._live()

    def final(self) -> list[Finding]:
        """The order graph is complete once the probes are detached."""
        found = self._drain_order(math.inf)
        self._order_pending = self._order()
        return found + self._drain_order(math.inf)

    def set_hung_after(self, hung_after_ns: int) -> None:
        self.options = replace(self.options, hung_after_ns=hung_after_ns)
        self.finder.hung_after_ns = hung_after_ns

    def forget_reported(self) -> None:
        self.finder.seen = DeadlockState()
        self._order_pending = None

    def stats(self) -> dict[str, Any]:
        g = self.tracer.obj.read_global
        stats = self.tracer.stats()
        stats.update(tool="deadlock", edges=self.tracer.maps.edges().count(),
                     max_edges=self.options.max_edges, cycle_limit=self.options.cycle_limit,
                     cycles_truncated=self.finder.seen.cycles_truncated,
                     edges_dropped=g("edges_dropped"),
                     class_edges=self.tracer.maps.class_edges().count(),
                     class_edges_dropped=g("class_edges_dropped"),
                     irq_uses_dropped=g("irq_uses_dropped"),
                     blocked_dropped=g("blocked_dropped"),
                     blocked_before_start=self.blocked_before_start,
                     kernel_log=self.kernel_log.error or "ok",
                     kernel_log_lost=self.kernel_log.lost)
        return stats

    def close(self) -> None:
        self.kernel_log.close()


def validate(options: DeadlockOptions, features: KernelFeatures) -> None:
    """Checks the request against this machine."""
    if not 1 <= options.max_edges <= MAX_EDGES_LIMIT:
        raise IrqlockError(f"--max-edges must be 1..{MAX_EDGES_LIMIT}, not {options.max_edges}")
    require_tracing(features, "deadlock")
