"""What irqlock deadlock reports: lock-order cycles, IRQ-unsafe locks, deadlocks and hung
tasks, each as the record of docs/records.md (to_json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from irqlock.tracers.classes import LockClass


@dataclass(frozen=True)
class LockRef:
    addr: int
    name: str | None
    cls: LockClass | None = None  # its class, where known

    @property
    def label(self) -> str:
        return self.name or hex(self.addr)

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"addr": hex(self.addr), "name": self.name}
        if self.cls:
            found.update(self.cls.to_json())
        return found


@dataclass(frozen=True)
class OrderEdge:
    """`acquired` was taken while `held` was held, first by this task."""

    held: LockRef
    acquired: LockRef
    pid: int
    tgid: int
    comm: str
    held_stack: list[str]  # where this task first took `held` (its first stack of that lock)
    acquire_stack: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"from": hex(self.held.addr), "to": hex(self.acquired.addr),
                "from_name": self.held.name, "to_name": self.acquired.name,
                "from_class": self.held.cls.label if self.held.cls else None,
                "to_class": self.acquired.cls.label if self.acquired.cls else None,
                "pid": self.pid,
                "tgid": self.tgid, "comm": self.comm, "held_stack": self.held_stack,
                "acquire_stack": self.acquire_stack}


@dataclass(frozen=True)
class LockCycle:
    """A cycle between lock instances, or (level "class") between classes: then each
    lock stands for its class, with the instances of each edge's first example."""

    locks: list[LockRef]
    edges: list[OrderEdge]
    level: str = "instance"
    # An instance cycle of static locks only: each lock is its own class, so it is the
    # class cycle too -- one finding, one report, at both levels.
    also_class: bool = False
    # A lock of the cycle was born anew between two of its edges: its slab object was
    # freed, and the address became another object's lock (seen by the BPF side's frees).
    reused_memory: bool = False

    @property
    def dynamic(self) -> bool:
        """Only dynamic locks (no symbol), each edge from another process: the same
        addresses may have been different locks when each edge was made (memory
        freed and reused, as page-table locks are).  Reported, with that caveat.
        (A class is computed when its lock is taken: never a reused address's.)"""
        return (self.level == "instance" and all(lock.name is None for lock in self.locks)
                and len({edge.tgid for edge in self.edges}) == len(self.edges))

    @property
    def recursive(self) -> bool:
        """Instances of one class taken in both orders (lockdep's recursive locking)."""
        classes = {lock.cls.key if lock.cls else None for lock in self.locks}
        return self.level == "instance" and len(classes) == 1 and None not in classes

    @property
    def merged_caches(self) -> list[str]:
        """Classes in merged slab caches: each may be several types' locks."""
        return [lock.cls.label for lock in self.locks if lock.cls and lock.cls.merged]

    @property
    def levels(self) -> list[str]:
        """Every level the cycle holds at."""
        return ["instance", "class"] if self.also_class else [self.level]

    @property
    def labels(self) -> list[str]:
        return [lock.cls.label if self.level == "class" and lock.cls else lock.label
                for lock in self.locks]

    def to_json(self) -> dict[str, Any]:
        return {"type": "lock_cycle", "level": self.level, "levels": self.levels,
                "length": len(self.locks),
                "locks": [lock.to_json() for lock in self.locks],
                "edges": [edge.to_json() for edge in self.edges],
                "maybe_reused_addresses": self.dynamic or self.reused_memory,
                "reused_memory": self.reused_memory, "recursive": self.recursive,
                "merged_caches": self.merged_caches}


@dataclass(frozen=True)
class IrqUnsafeLock:
    """Taken in hardirq context and held elsewhere with interrupts on."""

    lock: LockRef
    hardirq_stack: list[str]
    hardirq_comm: str  # the task the interrupt happened to land on
    irqs_on_stack: list[str]
    pid: int  # the task that held it with interrupts on
    comm: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "irq_unsafe_lock", "addr": hex(self.lock.addr), "name": self.lock.name,
                "hardirq_stack": self.hardirq_stack, "hardirq_comm": self.hardirq_comm,
                "irqs_on_stack": self.irqs_on_stack, "pid": self.pid, "comm": self.comm}


@dataclass(frozen=True)
class DeadlockedTask:
    pid: int
    comm: str
    waits_for: LockRef
    waiting_ns: int
    holds: list[LockRef]
    stack: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "comm": self.comm, "waits_for": hex(self.waits_for.addr),
                "lock_name": self.waits_for.name, "waiting_ns": self.waiting_ns,
                "holds": [lock.to_json() for lock in self.holds], "stack": self.stack}


@dataclass(frozen=True)
class Deadlock:
    tasks: list[DeadlockedTask]
    detected_ns: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "deadlock", "detected_ns": self.detected_ns,
                "tasks": [task.to_json() for task in self.tasks]}


@dataclass(frozen=True)
class HungTask:
    pid: int
    comm: str
    since_ns: int
    blocked_ns: int
    before_start: bool  # asleep already when irqlock started: blocked_ns is a lower bound
    stack: list[str]
    waits_for: LockRef | None
    owner_pid: int | None

    def to_json(self) -> dict[str, Any]:
        return {"type": "hung_task", "pid": self.pid, "comm": self.comm,
                "since_ns": self.since_ns, "blocked_ns": self.blocked_ns,
                "blocked_before_start": self.before_start, "stack": self.stack,
                "waits_for": hex(self.waits_for.addr) if self.waits_for else None,
                "lock_name": self.waits_for.name if self.waits_for else None,
                "owner_pid": self.owner_pid}
