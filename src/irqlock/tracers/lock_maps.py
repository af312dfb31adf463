"""The lock program's maps as Python reads them: mirrors of the structs of locks.h, for
the lock statistics (locks, holders) and for the deadlock side (lock uses, order edges
between instances and classes, held-lock stacks, waits, blocked tasks).  Each is checked
against locks.bpf.o's BTF when its map is opened (bpf/btf.py)."""

from __future__ import annotations

import ctypes

from irqlock.analysis.histograms import LOGLIN_BUCKETS
from irqlock.bpf.btf import Mirror
from irqlock.bpf.constants import LOCKS_MAX_STACK, MAX_HELD, TASK_COMM_LEN
from irqlock.bpf.loader import BpfObject, Map
from irqlock.tracers.classes import CacheInfoStruct, LockClassStruct

MAX_STACK = LOCKS_MAX_STACK


class LockStatsStruct(Mirror):
    """struct lock_stats (locks.h)."""

    c_struct = "lock_stats"
    _fields_ = (
        ("kind", ctypes.c_uint32),
        ("first_pid", ctypes.c_uint32),
        ("acquisitions", ctypes.c_uint64),
        ("contended", ctypes.c_uint64),
        ("hold_total_ns", ctypes.c_uint64),
        ("hold_max_ns", ctypes.c_uint64),
        ("wait_total_ns", ctypes.c_uint64),
        ("wait_max_ns", ctypes.c_uint64),
        ("last_acquired_ns", ctypes.c_uint64),
        ("created_ns", ctypes.c_uint64),
        ("born_ns", ctypes.c_uint64),
        ("cls", LockClassStruct),
        ("first_acquisitions", ctypes.c_uint64),
        ("first_tgid", ctypes.c_uint32),
        ("first_stack_bytes", ctypes.c_int32),
        ("first_comm", ctypes.c_char * TASK_COMM_LEN),
        ("first_stack", ctypes.c_uint64 * MAX_STACK),
        ("hold_hist", ctypes.c_uint32 * LOGLIN_BUCKETS),
        ("wait_hist", ctypes.c_uint32 * LOGLIN_BUCKETS),
    )


class HolderKey(Mirror):
    c_struct = "holder_key"
    _fields_ = (("lock", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("pad", ctypes.c_uint32))


class HolderStruct(Mirror):
    """struct holder (locks.h)."""

    c_struct = "holder"
    _fields_ = (
        ("acquisitions", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("stack_bytes", ctypes.c_int32),
        ("comm", ctypes.c_char * TASK_COMM_LEN),
        ("stack", ctypes.c_uint64 * MAX_STACK),
    )


class LockUseStruct(Mirror):
    """struct lock_use (locks.h)."""

    c_struct = "lock_use"
    _fields_ = (
        ("pid", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("stack_bytes", ctypes.c_int32),
        ("pad", ctypes.c_uint32),
        ("comm", ctypes.c_char * TASK_COMM_LEN),
        ("stack", ctypes.c_uint64 * MAX_STACK),
    )


class EdgeUseStruct(Mirror):
    """struct edge_use (locks.h)."""

    c_struct = "edge_use"
    _fields_ = (
        ("use", LockUseStruct),
        ("held_stack_bytes", ctypes.c_int32),
        ("pad", ctypes.c_uint32),
        ("held_stack", ctypes.c_uint64 * MAX_STACK),
        ("held_cls", LockClassStruct),
        ("acquired_cls", LockClassStruct),
        ("held_born_ns", ctypes.c_uint64),
        ("acquired_born_ns", ctypes.c_uint64),
    )


class EdgeKey(Mirror):
    c_struct = "edge_key"
    _fields_ = (("held", ctypes.c_uint64), ("acquired", ctypes.c_uint64))


class ClassEdgeKey(Mirror):
    """struct class_edge_key (locks.h)."""

    c_struct = "class_edge_key"
    _fields_ = (("held", LockClassStruct), ("acquired", LockClassStruct))


class ClassEdgeStruct(Mirror):
    """struct class_edge (locks.h): the first example, its two instances."""

    c_struct = "class_edge"
    _fields_ = (("held_lock", ctypes.c_uint64), ("acquired_lock", ctypes.c_uint64),
                ("edge", EdgeUseStruct))


class HeldLockStruct(Mirror):
    c_struct = "held_lock"
    _fields_ = (("lock", ctypes.c_uint64), ("acquired_ns", ctypes.c_uint64),
                ("kind", ctypes.c_uint32), ("mode", ctypes.c_uint32),
                ("cls", LockClassStruct), ("born_ns", ctypes.c_uint64))


class HeldStackStruct(Mirror):
    """struct held_stack (locks.h)."""

    c_struct = "held_stack"
    _fields_ = (("depth", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("locks", HeldLockStruct * MAX_HELD), ("pending", ctypes.c_uint64))


class WaitStateStruct(Mirror):
    """struct wait_state (locks.h)."""

    c_struct = "wait_state"
    _fields_ = (("lock", ctypes.c_uint64), ("start_ns", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("owner_pid", ctypes.c_uint32))


class WaitStackStruct(Mirror):
    """struct wait_stack (locks.h)."""

    c_struct = "wait_stack"
    _fields_ = (("stack_bytes", ctypes.c_int32), ("pad", ctypes.c_uint32),
                ("stack", ctypes.c_uint64 * MAX_STACK))


class BlockedTaskStruct(Mirror):
    c_struct = "blocked_task"
    _fields_ = (("since_ns", ctypes.c_uint64), ("tgid", ctypes.c_uint32),
                ("flags", ctypes.c_uint32))


class LockMaps:
    """The lock program's maps, each opened with its mirrors (checked on first use): the
    typed view the lock statistics and the deadlock side read locks.bpf.o through."""

    def __init__(self, obj: BpfObject) -> None:
        self._obj = obj

    def locks(self) -> Map:
        return self._obj.map("locks", value=LockStatsStruct)

    def holders(self) -> Map:
        return self._obj.map("holders", key=HolderKey, value=HolderStruct)

    def caches(self) -> Map:
        return self._obj.map("caches", value=CacheInfoStruct)

    def edges(self) -> Map:
        """held -> acquired between lock instances, the first example of each."""
        return self._obj.map("edges", key=EdgeKey, value=EdgeUseStruct)

    def class_edges(self) -> Map:
        return self._obj.map("class_edges", key=ClassEdgeKey, value=ClassEdgeStruct)

    def hardirq_locks(self) -> Map:
        """Locks taken in hardirq context, the first use of each."""
        return self._obj.map("hardirq_locks", value=LockUseStruct)

    def irqs_on_locks(self) -> Map:
        """Locks held while a hardirq arrived (interrupts were on), the first of each."""
        return self._obj.map("irqs_on_locks", value=LockUseStruct)

    def task_wait(self) -> Map:
        return self._obj.map("task_wait", value=WaitStateStruct)

    def wait_stacks(self) -> Map:
        return self._obj.map("wait_stacks", value=WaitStackStruct)

    def task_held(self) -> Map:
        return self._obj.map("task_held", value=HeldStackStruct)

    def blocked(self) -> Map:
        return self._obj.map("blocked", value=BlockedTaskStruct)
