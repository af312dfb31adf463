"""Lock-order cycles (tracers/deadlock.py): on reused memory, the born stamps of a cycle's
edges; and a cycle of static locks, which is its own class cycle."""

from __future__ import annotations

from irqlock.tracers.classes import LockClass
from irqlock.tracers.deadlock import all_static, born_apart, class_cycle_key
from irqlock.tracers.findings import LockCycle
from irqlock.tracers.lock_maps import EdgeUseStruct


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


def test_a_class_cycle_is_the_same_however_it_was_entered() -> None:
    a, b, c = ("static", 0x300), ("slab", 0xffff8880, 0x40), ("percpu", "runqueues", 0)
    assert class_cycle_key([a, b, c]) == class_cycle_key([b, c, a]) == class_cycle_key([c, a, b])
    assert class_cycle_key([a, b, c]) != class_cycle_key([a, c, b])  # the other direction


def test_only_static_classes_make_a_cycle_at_both_levels() -> None:
    static = [LockClass(key=("static", 0x100), label="a"), LockClass(key=("static", 0x200),
                                                                      label="b")]
    slab = LockClass(key=("slab", 0xffff8880, 0x40), label="&cache+0x40")
    assert all_static(static)
    assert not all_static([*static, slab])
    assert not all_static([*static, None])  # a lock whose class is not known


def test_a_cycle_at_both_levels_is_one_record_that_says_both() -> None:
    both = LockCycle(locks=[], edges=[], also_class=True).to_json()
    assert (both["level"], both["levels"]) == ("instance", ["instance", "class"])
    class_only = LockCycle(locks=[], edges=[], level="class").to_json()
    assert class_only["levels"] == ["class"]
