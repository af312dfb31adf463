"""Recordings, metrics, folded stacks and the HTML page, on records shaped as docs/records.md.

These test the formats alone; tests/kernel/test_report.py makes the records from
the fixture in the VM and checks every output against the fixture's truth.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from irqlock.commands.report import folded_stacks
from irqlock.errors import IrqlockError
from irqlock.report import html
from irqlock.report.prometheus import Metrics
from irqlock.report.recording import RecordingReader, RecordingWriter

STACK = ["_raw_spin_unlock_irqrestore+0x1d/0x40", "fx_irqoff_spin_irqsave+0x63/0xa0 [fx]"]


def window(start: int, duration: int, cpu: int = 0) -> dict[str, Any]:
    return {"type": "irqoff", "kind": "hardirq", "cpu": cpu, "pid": 42, "comm": "fx_irqoff",
            "start_ns": start, "end_ns": start + duration, "duration_ns": duration, "exact": True,
            "source": "lock", "error_ns": 0, "disable_ip": None, "disable_parent_ip": None,
            "disable_stack": STACK, "enable_stack": STACK[:1]}


def lock(name: str, acquisitions: int) -> dict[str, Any]:
    timing = {"total": 1000 * acquisitions, "max": 2000, "p50": 1000, "p99": 2000}
    return {"type": "lock", "addr": "0xffffffffc0001000", "name": name, "site": None,
            "kind": "spinlock", "acquisitions": acquisitions, "contended": 0, "hold_ns": timing,
            "wait_ns": {"total": 0, "max": 0, "p50": 0, "p99": 0},
            "hold_histogram": [[960, acquisitions]], "wait_histogram": [],
            "holders": [{"pid": 42, "tgid": 42, "comm": "fx_hold_0", "acquisitions": acquisitions,
                         "first_stack": STACK}]}


def test_recording_round_trip_keeps_records_and_dedups_stacks(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    writer = RecordingWriter(path, {"tools": ["irqoff", "locks"]})
    records = [window(1000 * i, 500_000) for i in range(50)]
    for record in records:
        writer.add(record)
    writer.replace_snapshot("lock", [lock("fx_spin", 10)])
    writer.replace_snapshot("lock", [lock("fx_spin", 20), lock("fx_mutex", 3)])
    writer.close()
    reader = RecordingReader(path)
    assert list(reader.records("irqoff")) == records
    assert [r["acquisitions"] for r in reader.records("lock")] == [20, 3]
    assert reader.meta["tools"] == ["irqoff", "locks"] and reader.meta["finished"] == 1
    assert reader.db.execute("SELECT COUNT(*) FROM stacks").fetchone()[0] == 2


def test_recording_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "run.db").write_text("mine")
    with pytest.raises(IrqlockError, match="exists"):
        RecordingWriter(tmp_path / "run.db", {})


def test_unfinished_recording_still_reads(tmp_path: Path) -> None:
    """What was committed survives a writer that never closed (as after SIGKILL)."""
    path = tmp_path / "run.db"
    writer = RecordingWriter(path, {"tools": ["irqoff"]})
    writer.add(window(0, 1000))
    writer.commit()
    writer.add(window(1, 1000))  # not committed: lost with the writer
    reader = RecordingReader(path)
    assert [r["start_ns"] for r in reader.records()] == [0]
    assert reader.meta["finished"] == 0


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_corrupt_or_foreign_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(content)
    with pytest.raises(IrqlockError, match="not an irqlock recording"):
        RecordingReader(path)


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    RecordingWriter(path, {}).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(IrqlockError, match="schema 99"):
        RecordingReader(path)


def test_metrics_parse_and_count() -> None:
    metrics = Metrics()
    for i in range(3):
        metrics.observe(window(i, 2_000_000, cpu=1))
    metrics.observe({"type": "lock_cycle"})
    metrics.set_locks([lock('fx "odd" name', 7)])
    metrics.set_stats([{"tool": "irqoff", "lost_events": 5, "recursion_misses": 1,
                        "locks_dropped": 2, "blind_ns": 12_500_000},
                       {"tool": "locks", "acquisitions_missed": 3}])
    families = {f.name: f for f in text_string_to_metric_families(metrics.text())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    key = (("cpu", "1"), ("kind", "hardirq"), ("source", "lock"))
    assert samples[("irqlock_irqoff_duration_seconds_count", key)] == 3
    def bucket(le: str) -> float:
        return samples[("irqlock_irqoff_duration_seconds_bucket", tuple(sorted((*key, ("le", le)))))]

    assert bucket("0.001") == 0 and bucket("0.0025") == 3 and bucket("+Inf") == 3
    assert samples[("irqlock_lock_cycles_total", ())] == 1
    assert samples[("irqlock_lock_acquisitions_missed_total", (("tool", "locks"),))] == 3
    assert samples[("irqlock_deadlocks_total", ())] == 0
    assert samples[("irqlock_lock_acquisitions_total",
                    (("kind", "spinlock"), ("lock", 'fx "odd" name')))] == 7
    assert samples[("irqlock_lost_events_total", (("tool", "irqoff"),))] == 5
    assert samples[("irqlock_dropped_total", (("tool", "irqoff"), ("what", "locks")))] == 2
    assert samples[("irqlock_sampler_blind_seconds_total", (("tool", "irqoff"),))] == 0.0125


def test_folded_stacks_outer_frame_first_weighted_by_time() -> None:
    lines = folded_stacks([window(0, 300), window(1, 700), lock("fx_spin", 1)])
    assert lines == ["fx_irqoff_spin_irqsave+0x63/0xa0_[fx];_raw_spin_unlock_irqrestore+0x1d/0x40 1000"]


def test_html_page_has_every_chart_with_its_data() -> None:
    cycle = {"type": "lock_cycle", "length": 2,
             "locks": [{"addr": "0x1", "name": "a"}, {"addr": "0x2", "name": "b"}],
             "edges": [{"from": "0x1", "to": "0x2", "from_name": "a", "to_name": "b", "pid": 1,
                        "comm": "t1", "held_stack": STACK, "acquire_stack": STACK},
                       {"from": "0x2", "to": "0x1", "from_name": "b", "to_name": "a", "pid": 2,
                        "comm": "t2", "held_stack": STACK, "acquire_stack": STACK}]}
    page = html.render([window(0, 1_000_000), window(2_000_000, 5_000_000, cpu=1),
                        lock("fx_spin", 4), cycle],
                       {"tools": ["irqoff", "locks", "deadlock"], "kernel": "6.1"})
    for element in ('id="irqoff-histogram" class="histogram" data-count="2"',
                    'id="irqoff-timeline" class="timeline" data-count="2"',
                    'id="irqoff-flamegraph" class="flamegraph" data-total="6000000"',
                    'id="lock-hold-histogram-0" class="histogram" data-count="4"',
                    'id="lock-graph" class="graph" data-nodes="2" data-edges="2" '
                    'data-cycle-edges="2"', 'id="findings"'):
        assert element in page
    assert "<script" not in page and "http" not in page.split("</title>")[1]


def test_sampled_windows_are_shown_by_where_interrupts_came_back_on() -> None:
    """A sampler knows no disable stack: its confirmed windows get a flame graph of their
    enable stacks; unconfirmed ones (--unconfirmed) stay out of it."""
    sampled = {**window(0, 3_000_000), "source": "sample", "exact": False, "confirmed": True,
               "disable_stack": []}
    unconfirmed = {**sampled, "start_ns": 5_000_000, "end_ns": 9_000_000, "duration_ns": 4_000_000,
                   "confirmed": False}
    page = html.render([window(10_000_000, 1_000_000), sampled, unconfirmed],
                       {"tools": ["irqoff"], "kernel": "6.1"})
    assert 'id="irqoff-flamegraph" class="flamegraph" data-total="1000000"' in page
    assert 'id="irqoff-enable-flamegraph" class="flamegraph" data-total="3000000"' in page
