"""Lock-order cycles on reused memory: the born stamps of a cycle's edges (tracers/deadlock.py)."""

from __future__ import annotations

import ctypes

import pytest

from irqlock.bpf.loader import BpfObject, object_path
from irqlock.tracers.classes import CacheInfoStruct
from irqlock.tracers.deadlock import ClassEdgeStruct, EdgeUseStruct, HeldStackStruct, born_apart
from irqlock.tracers.locks import LockStatsStruct


def edge(held_born_ns: int, acquired_born_ns: int) -> EdgeUseStruct:
    return EdgeUseStruct(held_born_ns=held_born_ns, acquired_born_ns=acquired_born_ns)


def test_edges_that_saw_each_lock_born_once_are_one_cycle() -> None:
    # A -> B -> C -> A, A born at 1, B at 2, C at 3 in every edge through them
    assert not born_apart([edge(1, 2), edge(2, 3), edge(3, 1)])


def test_a_lock_born_again_between_two_edges_is_reused_memory() -> None:
    # B freed and reused between the edge into it (born 2) and the edge out of it (born 5)
    assert born_apart([edge(1, 2), edge(5, 3), edge(3, 1)])


def test_two_lock_cycle_checks_both_locks() -> None:
    assert not born_apart([edge(1, 2), edge(2, 1)])
    assert born_apart([edge(1, 2), edge(2, 4)])  # A: born 1 leaving, 4 arriving


@pytest.mark.parametrize(("map_name", "mirror"), [
    ("edges", EdgeUseStruct), ("class_edges", ClassEdgeStruct), ("locks", LockStatsStruct),
    ("caches", CacheInfoStruct), ("cpu_held", HeldStackStruct)])
def test_mirror_is_the_size_of_the_map_value(map_name: str, mirror: type[ctypes.Structure]) -> None:
    """The structs the lock-order analysis reads are the size locks.bpf.o declares."""
    obj = BpfObject.open("locks", object_path("locks"))  # as built: no preempt_count placed
    try:
        assert obj.map(map_name).value_size == ctypes.sizeof(mirror)
    finally:
        obj.close()
