"""Directed graphs of locks and tasks: strongly connected components and their cycles.

The lock-order graph (an edge held -> acquired) and the wait-for graph (an edge
waiter -> owner) are small in practice but can have many cycles: cycles are
enumerated with Johnson's algorithm inside each strongly connected component
(Tarjan), up to a limit, and the caller is told when the limit cut it short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Node = int  # a lock's address or a task's pid

DEFAULT_CYCLE_LIMIT = 1000


def strongly_connected(graph: Mapping[Node, Iterable[Node]]) -> list[list[Node]]:
    """Tarjan's strongly connected components (iterative: no recursion limit on deep graphs)."""
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on_stack: set[Node] = set()
    stack: list[Node] = []
    components: list[list[Node]] = []
    successors = {node: list(targets) for node, targets in graph.items()}
    for targets in list(successors.values()):
        for target in targets:
            successors.setdefault(target, [])
    for root in successors:
        if root in index:
            continue
        work: list[tuple[Node, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = successors[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:  # back in the parent: fold this node's low link into it
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


@dataclass
class Cycles:
    """Elementary cycles, each rotated to start at its smallest node, in a stable order;
    truncated is set when the limit cut the search short."""

    cycles: list[list[Node]]
    truncated: bool


def _canonical(cycle: list[Node]) -> list[Node]:
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _cycles_through(start: Node, successors: Mapping[Node, list[Node]], allowed: set[Node],
                    limit: int, found: list[list[Node]]) -> bool:
    """Johnson's circuit search from `start` within `allowed`; False once `limit` is reached."""
    blocked: set[Node] = set()
    blocked_by: dict[Node, set[Node]] = {}
    path: list[Node] = [start]
    blocked.add(start)
    frames: list[tuple[Node, list[Node], bool]] = [
        (start, [n for n in successors[start] if n in allowed], False)]

    def unblock(node: Node) -> None:
        pending = [node]
        while pending:
            n = pending.pop()
            if n in blocked:
                blocked.discard(n)
                pending.extend(blocked_by.pop(n, set()))

    while frames:
        node, targets, closed = frames[-1]
        if targets:
            target = targets.pop()
            if target == start:
                found.append(list(path))
                frames[-1] = (node, targets, True)
                if len(found) >= limit:
                    return False
            elif target not in blocked:
                path.append(target)
                blocked.add(target)
                frames.append((target, [n for n in successors[target] if n in allowed], False))
            continue
        frames.pop()
        path.pop()
        if closed:
            unblock(node)
        else:
            for n in successors[node]:
                if n in allowed:
                    blocked_by.setdefault(n, set()).add(node)
        if frames:
            parent, parent_targets, parent_closed = frames[-1]
            frames[-1] = (parent, parent_targets, parent_closed or closed)
    return True


def simple_cycles(graph: Mapping[Node, Iterable[Node]],
                  limit: int = DEFAULT_CYCLE_LIMIT) -> Cycles:
    """Every elementary cycle of length >= 2 (self-loops are not lock-order cycles).

    Johnson: in each strongly connected component, the least node starts a search
    for the cycles through it; then it leaves the component, whose remains are
    split into components again.  Cycles come sorted, each from its least node.
    """
    successors: dict[Node, list[Node]] = {}
    for node, targets in graph.items():
        successors.setdefault(node, [])
        for target in targets:
            if target != node and target not in successors[node]:
                successors[node].append(target)
            successors.setdefault(target, [])
    found: list[list[Node]] = []
    pending = [c for c in strongly_connected(successors) if len(c) > 1]
    while pending:
        component = pending.pop()
        start = min(component)
        if not _cycles_through(start, successors, set(component), limit, found):
            return Cycles(sorted(_canonical(c) for c in found), truncated=True)
        # Without its least node, what is left of the component may fall apart.
        rest = set(component) - {start}
        induced = {n: [t for t in successors[n] if t in rest] for n in rest}
        pending.extend(c for c in strongly_connected(induced) if len(c) > 1)
    return Cycles(sorted(_canonical(c) for c in found), truncated=False)
