"""Lock-order cycles (tracers/deadlock.py): on reused memory, the born stamps of a cycle's
edges; and a cycle of static locks, which is its own class cycle."""

from __future__ import annotations

from typing import Any, cast

from irqlock.bpf.loader import Map
from irqlock.tracers.deadlock import (
    ClassGraph,
    EdgeUseStruct,
    LockCycle,
    born_apart,
    rotated_to_least,
)


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


def test_a_cycle_is_written_from_its_least_node() -> None:
    assert rotated_to_least([30, 10, 20]) == (10, 20, 30)
    assert rotated_to_least([10, 20]) == (10, 20)


def class_graph(*cycles: tuple[tuple[Any, ...], ...]) -> ClassGraph:
    return ClassGraph(edges=cast(Map, None), examples={}, node_cycles=[], key_cycles=list(cycles))


def test_a_cycle_of_static_classes_is_the_instance_cycle_of_its_locks() -> None:
    static = (("static", 0x300), ("static", 0x100), ("static", 0x200))
    twins = class_graph(static).static_twins()
    assert twins == {(0x100, 0x200, 0x300): static}


def test_a_cycle_through_a_slab_or_per_cpu_class_has_no_instance_twin() -> None:
    slab = (("static", 0x100), ("slab", 0xffff8880, 0x40))
    per_cpu = (("static", 0x100), ("percpu", "runqueues", 0))
    assert class_graph(slab, per_cpu).static_twins() == {}


def test_a_cycle_at_both_levels_is_one_record_that_says_both() -> None:
    both = LockCycle(locks=[], edges=[], also_class=True).to_json()
    assert (both["level"], both["levels"]) == ("instance", ["instance", "class"])
    class_only = LockCycle(locks=[], edges=[], level="class").to_json()
    assert class_only["levels"] == ["class"]
