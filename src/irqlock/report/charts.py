"""Small SVG charts for the HTML report: no library, no script, no network at view time."""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from irqlock.units import format_ns

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def log2_buckets(values: Sequence[int]) -> list[tuple[int, int]]:
    """(lower bound, count) of each non-empty [2^i, 2^(i+1)) ns bucket, ascending."""
    counts: dict[int, int] = {}
    for value in values:
        low = 1 << (max(value, 1).bit_length() - 1)
        counts[low] = counts.get(low, 0) + 1
    return sorted(counts.items())


def histogram_svg(element_id: str, buckets: Sequence[tuple[int, int]], title: str,
                  color: str = PALETTE[0]) -> str:
    """Bars per bucket (log2 or finer), labelled with the bucket's lower bound."""
    total = sum(count for _low, count in buckets)
    width, height, bar_gap, left, bottom = 640, 200, 4, 40, 40
    if not buckets:
        return (f'<svg id="{esc(element_id)}" class="histogram" data-count="0" width="{width}" '
                f'height="40"><text x="10" y="25">{esc(title)}: no data</text></svg>')
    top = max(count for _low, count in buckets)
    bar = max(4, (width - left) // len(buckets) - bar_gap)
    parts = [f'<svg id="{esc(element_id)}" class="histogram" data-count="{total}" '
             f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
             f'<text x="{left}" y="14" class="chart-title">{esc(title)} ({total})</text>']
    for i, (low, count) in enumerate(buckets):
        h = max(1, round((height - bottom - 24) * count / top))
        x, y = left + i * (bar + bar_gap), height - bottom - h
        parts.append(f'<rect class="bar" x="{x}" y="{y}" width="{bar}" height="{h}" fill="{color}" '
                     f'data-low-ns="{low}" data-count="{count}"><title>&gt;= {esc(format_ns(low))}: '
                     f'{count}</title></rect>')
        if len(buckets) <= 16 or i % 2 == 0:
            parts.append(f'<text x="{x}" y="{height - bottom + 14}" font-size="9" '
                         f'transform="rotate(30 {x} {height - bottom + 14})">'
                         f'{esc(format_ns(low))}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class Span:
    row: int
    start_ns: int
    end_ns: int
    label: str
    color: str


def timeline_svg(element_id: str, spans: Sequence[Span], rows: Sequence[str]) -> str:
    """One row per CPU; each window a rectangle at its place in time (at least 1 px wide)."""
    width, row_h, left = 900, 22, 60
    if not spans:
        return (f'<svg id="{esc(element_id)}" class="timeline" data-count="0" width="{width}" '
                f'height="40"><text x="10" y="25">no windows</text></svg>')
    t0 = min(s.start_ns for s in spans)
    t1 = max(s.end_ns for s in spans)
    scale = (width - left - 10) / max(t1 - t0, 1)
    height = row_h * len(rows) + 30
    parts = [f'<svg id="{esc(element_id)}" class="timeline" data-count="{len(spans)}" '
             f'width="{width}" height="{height}">']
    for i, name in enumerate(rows):
        y = i * row_h + 4
        parts.append(f'<text x="4" y="{y + 14}">{esc(name)}</text>'
                     f'<line x1="{left}" x2="{width - 10}" y1="{y + 10}" y2="{y + 10}" '
                     'stroke="#ddd"/>')
    for s in spans:
        x = left + (s.start_ns - t0) * scale
        w = max(1.0, (s.end_ns - s.start_ns) * scale)
        parts.append(f'<rect class="window" x="{x:.1f}" y="{s.row * row_h + 4}" width="{w:.1f}" '
                     f'height="{row_h - 6}" fill="{s.color}" data-start-ns="{s.start_ns}" '
                     f'data-duration-ns="{s.end_ns - s.start_ns}"><title>{esc(s.label)}</title>'
                     '</rect>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="10">0</text>'
                 f'<text x="{width - 80}" y="{height - 6}" font-size="10">'
                 f'{esc(format_ns(t1 - t0))}</text></svg>')
    return "".join(parts)


@dataclass
class _Frame:
    name: str
    weight: int = 0
    children: dict[str, _Frame] = field(default_factory=dict)


def flamegraph_svg(element_id: str, stacks: Sequence[tuple[list[str], int]], unit: str) -> str:
    """A flame graph: stacks given innermost frame first, each with a weight."""
    root = _Frame("all")
    for frames, weight in stacks:
        node = root
        node.weight += weight
        for frame in reversed(frames):  # outermost at the bottom
            node = node.children.setdefault(frame, _Frame(frame))
            node.weight += weight
    width, row_h = 900, 16
    depth = _depth(root)
    height = (depth + 1) * row_h + 10
    parts = [f'<svg id="{esc(element_id)}" class="flamegraph" data-total="{root.weight}" '
             f'width="{width}" height="{height}" font-size="10">']
    if not root.weight:
        parts.append('<text x="10" y="14">no stacks</text></svg>')
        return "".join(parts)

    def draw(node: _Frame, x: float, level: int) -> None:
        w = width * node.weight / root.weight
        if w < 0.5:
            return
        y = height - (level + 1) * row_h
        color = PALETTE[zlib.crc32(node.name.encode()) % len(PALETTE)] if level else "#999"
        share = 100 * node.weight / root.weight
        parts.append(f'<g class="frame" data-name="{esc(node.name)}" data-weight="{node.weight}">'
                     f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 1}" '
                     f'fill="{color}"/><title>{esc(node.name)}: {node.weight} {esc(unit)} '
                     f'({share:.1f}%)</title>')
        if w > 40:
            chars = int(w / 6)
            parts.append(f'<text x="{x + 2:.1f}" y="{y + 11}">{esc(node.name[:chars])}</text>')
        parts.append("</g>")
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, child_x, level + 1)
            child_x += width * child.weight / root.weight

    draw(root, 0.0, 0)
    parts.append("</svg>")
    return "".join(parts)


def _depth(node: _Frame) -> int:
    pending, deepest = [(node, 0)], 0
    while pending:
        current, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in current.children.values())
    return deepest


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    label: str
    in_cycle: bool


def graph_svg(element_id: str, nodes: Sequence[str], edges: Sequence[GraphEdge]) -> str:
    """Nodes on a circle, edges as arrows; edges of a cycle in red."""
    size, radius = 520, 200
    center = size / 2
    if not nodes:
        return (f'<svg id="{esc(element_id)}" class="graph" data-nodes="0" data-edges="0" '
                f'width="{size}" height="40"><text x="10" y="25">no lock-order cycles</text></svg>')
    position = {}
    for i, name in enumerate(nodes):
        angle = 2 * math.pi * i / len(nodes) - math.pi / 2
        position[name] = (center + radius * math.cos(angle), center + radius * math.sin(angle))
    cycles = sum(1 for e in edges if e.in_cycle)
    parts = [f'<svg id="{esc(element_id)}" class="graph" data-nodes="{len(nodes)}" '
             f'data-edges="{len(edges)}" data-cycle-edges="{cycles}" width="{size}" '
             f'height="{size}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
             'markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z"/>'
             '</marker></defs>']
    for e in edges:
        (x1, y1), (x2, y2) = position[e.source], position[e.target]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1
        # stop short of the node's circle, and bend a little so A->B and B->A both show
        ox, oy = -dy / length * 12, dx / length * 12
        sx, sy = x1 + dx / length * 14 + ox, y1 + dy / length * 14 + oy
        ex, ey = x2 - dx / length * 14 + ox, y2 - dy / length * 14 + oy
        color = "#d62728" if e.in_cycle else "#888"
        parts.append(f'<line class="edge{" cycle" if e.in_cycle else ""}" x1="{sx:.1f}" '
                     f'y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="{color}" '
                     f'stroke-width="2" marker-end="url(#arrow)" data-from="{esc(e.source)}" '
                     f'data-to="{esc(e.target)}"><title>{esc(e.label)}</title></line>')
    for name, (x, y) in position.items():
        parts.append(f'<g class="node" data-name="{esc(name)}"><circle cx="{x:.1f}" cy="{y:.1f}" '
                     f'r="12" fill="#4e79a7"/><text x="{x + 14:.1f}" y="{y + 4:.1f}">'
                     f'{esc(name)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
