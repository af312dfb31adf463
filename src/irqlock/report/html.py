"""The HTML report of a recording: one self-contained page (inline SVG, inline CSS).

Sections: IRQ-off windows (latency histogram, per-CPU timeline, flame graph of
where interrupts went off), IRQ lines, locks (hold and wait histograms of the
busiest), the lock-order graph with its cycles, and the deadlock findings.
Every chart carries its numbers as data-* attributes, so a test (or a script)
can check the page against the recording.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from irqlock.report import cycle_edge_labels, cycle_lock_label
from irqlock.report.charts import (
    PALETTE,
    GraphEdge,
    Span,
    esc,
    flamegraph_svg,
    graph_svg,
    histogram_svg,
    log2_buckets,
    timeline_svg,
)
from irqlock.units import format_ns

TOP_WINDOWS = 20
TOP_LOCKS = 20
LOCK_HISTOGRAMS = 5
SOURCE_COLORS = {"tracepoint": PALETTE[0], "lock": PALETTE[2], "sample": PALETTE[1]}

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } pre { margin: 0; font-size: 0.9em; }
.chart-title { font-weight: bold; font-size: 12px; } .warn { color: #b00; }
"""


def _table(element_id: str, header: list[str], rows: Iterable[list[str]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    return f'<table id="{esc(element_id)}"><tr>{head}</tr>{body}</table>'


def _stack(frames: list[str], limit: int = 12) -> str:
    shown = frames[:limit] + ([f"... {len(frames) - limit} more"] if len(frames) > limit else [])
    return "<pre>" + esc("\n".join(shown) or "(no stack)") + "</pre>"


def _by_type(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["type"]].append(record)
    return grouped


def _irqoff_section(windows: list[dict[str, Any]]) -> str:
    cpus = sorted({w["cpu"] for w in windows})
    rows = [f"CPU {cpu}" for cpu in cpus]
    spans = [Span(cpus.index(w["cpu"]), w["start_ns"], w["end_ns"],
                  f"{w['kind']} off {format_ns(w['duration_ns'])} cpu {w['cpu']} "
                  f"{w['comm']}[{w['pid']}] ({w['source']})",
                  SOURCE_COLORS.get(w["source"], PALETTE[3])) for w in windows]
    top = sorted(windows, key=lambda w: -w["duration_ns"])[:TOP_WINDOWS]
    table = _table("irqoff-top", ["duration", "kind", "cpu", "task", "source", "disabled at"],
                   ([esc(format_ns(w["duration_ns"]) + (f" ±{format_ns(w['error_ns'])}"
                                                        if w["error_ns"] else "")),
                     esc(w["kind"]), str(w["cpu"]), esc(f"{w['comm']}[{w['pid']}]"),
                     esc(w["source"]), _stack(w["disable_stack"], 6)] for w in top))
    flame = flamegraph_svg("irqoff-flamegraph",
                           [(w["disable_stack"], w["duration_ns"]) for w in windows
                            if w["disable_stack"]],
                           "ns with interrupts off")
    # A sampler cannot know where interrupts went off, only where they came back on.
    sampled = [w for w in windows if w["source"] == "sample" and w.get("confirmed", True)]
    enabled = flamegraph_svg("irqoff-enable-flamegraph",
                             [(w["enable_stack"], w["duration_ns"]) for w in sampled],
                             "ns with interrupts off")
    return (f"<h2>IRQ-off windows ({len(windows)})</h2>"
            + histogram_svg("irqoff-histogram", log2_buckets([w["duration_ns"] for w in windows]),
                            "IRQ-off duration")
            + "<h3>Per-CPU timeline</h3>"
            + timeline_svg("irqoff-timeline", spans, rows)
            + "<h3>Where interrupts went off (flame graph of the exact windows, weighted by "
              "time off)</h3>" + flame
            + f"<h3>Where interrupts came back on ({len(sampled)} sampled windows, weighted by "
              "time off)</h3>" + enabled
            + f"<h3>Longest {len(top)}</h3>" + table)


def _irq_section(windows: list[dict[str, Any]], handlers: list[dict[str, Any]]) -> str:
    table = _table("irq-windows", ["IRQ", "duration", "disabled by", "enabled by", "disabled at"],
                   ([esc(f"{w['irq']} ({w['irq_name']})"), esc(format_ns(w["duration_ns"])),
                     esc(f"{w['disable_comm']}[{w['disable_pid']}]"),
                     esc(f"{w['enable_comm']}[{w['enable_pid']}]"), _stack(w["disable_stack"], 6)]
                    for w in sorted(windows, key=lambda w: -w["duration_ns"])[:TOP_WINDOWS]))
    parts = [f"<h2>Disabled IRQ lines ({len(windows)} windows)</h2>",
             histogram_svg("irq-histogram", log2_buckets([w["duration_ns"] for w in windows]),
                           "IRQ line disabled duration", PALETTE[4]), table]
    for h in handlers:
        parts.append(histogram_svg(f"irq-handler-{h['irq']}", [tuple(b) for b in h["histogram"]],
                                   f"IRQ {h['irq']} ({h['irq_name']}) handler run time",
                                   PALETTE[5]))
    return "".join(parts)


def _lock_label(lock: dict[str, Any]) -> str:
    return str(lock["name"] or f"{lock['kind']}@{lock['site'] or lock['addr']}")


def _locks_section(locks: list[dict[str, Any]]) -> str:
    ranked = sorted(locks, key=lambda r: -r["hold_ns"]["total"])
    table = _table("locks-top", ["lock", "class", "kind", "acquired", "contended", "hold p50",
                                 "hold p99", "hold max", "wait p50", "wait max", "holders"],
                   ([esc(_lock_label(r)), esc(r.get("class") or ""), esc(r["kind"]),
                     str(r["acquisitions"]),
                     str(r["contended"]), esc(format_ns(r["hold_ns"]["p50"])),
                     esc(format_ns(r["hold_ns"]["p99"])), esc(format_ns(r["hold_ns"]["max"])),
                     esc(format_ns(r["wait_ns"]["p50"])), esc(format_ns(r["wait_ns"]["max"])),
                     esc(", ".join(f"{h['comm']}[{h['pid']}]" for h in r["holders"][:4]))]
                    for r in ranked[:TOP_LOCKS]))
    parts = [f"<h2>Locks ({len(locks)})</h2>", table]
    for i, r in enumerate(ranked[:LOCK_HISTOGRAMS]):
        label = _lock_label(r)
        parts.append(f'<div class="lock-histograms" data-lock="{esc(label)}">'
                     + histogram_svg(f"lock-hold-histogram-{i}",
                                     [tuple(b) for b in r.get("hold_histogram", [])],
                                     f"{label}: hold time", PALETTE[2])
                     + histogram_svg(f"lock-wait-histogram-{i}",
                                     [tuple(b) for b in r.get("wait_histogram", [])],
                                     f"{label}: contended wait", PALETTE[3]) + "</div>")
    return "".join(parts)


def _graph_section(cycles: list[dict[str, Any]]) -> str:
    nodes: list[str] = []
    edges: dict[tuple[str, str], GraphEdge] = {}
    for cycle in cycles:
        for e in cycle["edges"]:
            source, target = cycle_edge_labels(cycle, e)
            for name in (source, target):
                if name not in nodes:
                    nodes.append(name)
            edges[(source, target)] = GraphEdge(source, target,
                                                f"{e['comm']}[{e['pid']}] took {target} "
                                                f"holding {source}", True)
    details = "".join(
        f'<div class="cycle" data-length="{len(c["locks"])}"><p>'
        + esc(f"[{c.get('level', 'instance')}] " + " -> ".join(
            cycle_lock_label(c, lock) for lock in [*c["locks"], c["locks"][0]]))
        + "</p>" + _table("", ["task", "held", "then took", "held at", "took at"],
                          ([esc(f"{e['comm']}[{e['pid']}]"), esc(cycle_edge_labels(c, e)[0]),
                            esc(cycle_edge_labels(c, e)[1]), _stack(e["held_stack"], 6),
                            _stack(e["acquire_stack"], 6)] for e in c["edges"])) + "</div>"
        for c in cycles)
    return (f"<h2>Lock-order graph ({len(cycles)} cycles)</h2>"
            + graph_svg("lock-graph", nodes, list(edges.values())) + details)


def _findings_section(by_type: dict[str, list[dict[str, Any]]]) -> str:
    rows: list[list[str]] = []
    for d in by_type.get("deadlock", []):
        rows.append(["deadlock", esc(", ".join(f"{t['comm']}[{t['pid']}] waits for "
                                               f"{t['lock_name'] or t['waits_for']}"
                                               for t in d["tasks"])),
                     "".join(_stack(t["stack"], 8) for t in d["tasks"])])
    for h in by_type.get("hung_task", []):
        waits = f", waits for {h['lock_name'] or h['waits_for']} (owner {h['owner_pid']})" \
            if h["waits_for"] else ""
        rows.append(["hung task", esc(f"{h['comm']}[{h['pid']}] blocked "
                                      f"{format_ns(h['blocked_ns'])}{waits}"), _stack(h["stack"])])
    for u in by_type.get("irq_unsafe_lock", []):
        rows.append(["IRQ-unsafe lock", esc(f"{u['name'] or u['addr']}: held with interrupts on "
                                            f"by {u['comm']}[{u['pid']}]"),
                     _stack(u["hardirq_stack"], 6) + _stack(u["irqs_on_stack"], 6)])
    for k in by_type.get("kernel_report", []):
        rows.append([f"kernel: {esc(k['kind'])}", esc(k["message"]), ""])
    return (f"<h2>Deadlocks and hung tasks ({len(rows)} findings)</h2>"
            + _table("findings", ["finding", "what", "stacks"], rows))


def render(records: Iterable[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The whole page for a recording's records."""
    by_type = _by_type(records)
    sections = []
    if by_type.get("irqoff") or "irqoff" in meta.get("tools", []):
        sections.append(_irqoff_section(by_type.get("irqoff", [])))
    if by_type.get("irq_disabled") or "irq" in meta.get("tools", []):
        sections.append(_irq_section(by_type.get("irq_disabled", []),
                                     by_type.get("irq_handler", [])))
    if by_type.get("lock") or "locks" in meta.get("tools", []):
        sections.append(_locks_section(by_type.get("lock", [])))
    if "deadlock" in meta.get("tools", []) or by_type.get("lock_cycle"):
        sections.append(_graph_section(by_type.get("lock_cycle", [])))
        sections.append(_findings_section(by_type))
    stats = by_type.get("stats", [])
    lost = sum(s.get("lost_events", 0) for s in stats)
    warning = f'<p class="warn">{lost} events were lost while recording.</p>' if lost else ""
    stats_table = _table("stats", ["tool", "counters"],
                         ([esc(s.get("tool", "?")),
                           esc(", ".join(f"{k} {v}" for k, v in s.items()
                                         if k not in ("type", "tool") and not isinstance(v, list)))]
                          for s in stats))
    title = f"irqlock report: {meta.get('kernel', '?')}, {meta.get('started_at', '')}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
            f'</title><style>{_CSS}</style></head><body><h1>{esc(title)}</h1>'
            f'<p>tools: {esc(", ".join(meta.get("tools", [])))}; recorded '
            f'{esc(format_ns(meta.get("finished_ns", 0) - meta.get("started_ns", 0)))}'
            f'{"" if meta.get("finished") else " (cut short: the run did not finish)"}</p>'
            f'{warning}{"".join(sections)}<h2>Statistics</h2>{stats_table}</body></html>\n')
