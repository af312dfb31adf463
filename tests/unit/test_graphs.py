"""Cycle finding on lock-order and wait-for graphs, against brute force."""

from __future__ import annotations

import itertools
import random

from irqlock.analysis.graphs import simple_cycles, strongly_connected


def brute_force_cycles(graph: dict[int, list[int]]) -> set[tuple[int, ...]]:
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    found = set()
    for length in range(2, len(nodes) + 1):
        for path in itertools.permutations(nodes, length):
            if path[0] == min(path) and all(path[(i + 1) % length] in graph.get(path[i], ())
                                            for i in range(length)):
                found.add(path)
    return found


def test_abba_is_one_cycle() -> None:
    assert simple_cycles({1: [2], 2: [1]}).cycles == [[1, 2]]


def test_three_lock_cycle_starts_at_its_smallest_lock() -> None:
    assert simple_cycles({3: [1], 1: [2], 2: [3]}).cycles == [[1, 2, 3]]


def test_consistent_order_and_self_loops_are_no_cycles() -> None:
    assert simple_cycles({1: [2, 3], 2: [3], 3: [3]}).cycles == []


def test_random_graphs_match_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(400):
        n = rng.randint(1, 7)
        density = rng.random()
        graph = {i: [j for j in range(n) if j != i and rng.random() < density] for i in range(n)}
        result = simple_cycles(graph, limit=10**6)
        assert not result.truncated
        assert len(result.cycles) == len({tuple(c) for c in result.cycles})
        assert {tuple(c) for c in result.cycles} == brute_force_cycles(graph)


def test_limit_truncates_and_says_so() -> None:
    complete = {i: [j for j in range(8) if j != i] for i in range(8)}
    result = simple_cycles(complete, limit=50)
    assert result.truncated and len(result.cycles) == 50


def test_components_partition_the_nodes() -> None:
    components = strongly_connected({1: [2], 2: [3], 3: [1], 4: [1], 5: []})
    assert sorted(sorted(c) for c in components) == [[1, 2, 3], [4], [5]]


def test_deep_chain_needs_no_recursion() -> None:
    chain = {i: [i + 1] for i in range(20000)}
    chain[20000] = [0]
    (cycle,) = simple_cycles(chain).cycles
    assert len(cycle) == 20001
