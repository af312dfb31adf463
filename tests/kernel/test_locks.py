"""irqlock locks against the fixture's own lock holds and its own ktime measurements."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from irqlock.analysis.histograms import LOGLIN_BUCKETS, loglinear_index, loglinear_percentile
from tests.kernel.fixture import Fixture
from tests.kernel.load import stress_ng
from tests.kernel.tool import Tool

PREEMPT_RT = "PREEMPT_RT" in os.uname().version


def lock_named(tool: Tool, name: str) -> dict[str, Any]:
    found = [r for r in tool.of_type("lock") if r["name"] == name]
    assert len(found) == 1, [r["name"] for r in tool.of_type("lock")][:50]
    return found[0]


def fixture_hold_p50(truths: list[dict[str, Any]]) -> float:
    return float(statistics.median(t["hold_ns"]["p50"] for truth in truths for t in truth["threads"]))


def assert_holders(record: dict[str, Any], truths: list[dict[str, Any]]) -> None:
    """Every fixture thread is a holder with its own count and a first stack in the fixture."""
    expected: dict[int, int] = {}
    for truth in truths:
        for t in truth["threads"]:
            expected[t["task"]["pid"]] = expected.get(t["task"]["pid"], 0) + t["acquisitions"]
    holders = {h["pid"]: h for h in record["holders"]}
    assert set(holders) == set(expected), (holders.keys(), expected)
    for pid, count in expected.items():
        assert holders[pid]["acquisitions"] == count
        assert holders[pid]["comm"].startswith("fx_hold_")
        functions = {t["function"] for t in truths}
        assert any(f.split("+")[0] in functions for f in holders[pid]["first_stack"][:3]), \
            holders[pid]["first_stack"]
    assert record["acquisitions"] == sum(expected.values())


# Holds of the fixture's empty sections (0 us) lie below this, its 50 and 100 us ones above.
EMPTY_BELOW_NS = 25_000


def histogram_p50(buckets: list[list[int]]) -> int:
    """The median of a lock record's hold or wait histogram ([bucket low, count] pairs)."""
    counts = [0] * LOGLIN_BUCKETS
    for low, count in buckets:
        counts[loglinear_index(low)] += count
    return loglinear_percentile(counts, 0.5, max_value=1 << 62)


def hold_twice(fixture: Fixture, kind: str, us: int, times: int) -> list[dict[str, Any]]:
    """The fixture's `us` holds, then as many empty ones: [held, empty]."""
    return [fixture.run(f"hold {kind} {us} {times}"), fixture.run(f"hold {kind} 0 {times}")]


def assert_hold_p50(record: dict[str, Any], held: list[dict[str, Any]],
                    empty: list[dict[str, Any]]) -> None:
    """The median hold within 5 us + 2 % of the fixture's own (measured inside the section),
    once what the lock calls and our probes on them cost is taken off.

    A hold runs from the acquire's return to the release's entry: it includes their
    probes and the calls' own return and entry, microseconds under emulation and more
    on a busy host.  The same lock's empty holds in the same run measure that cost.  A
    median read from the histogram is its bucket's middle: within 1/16 of the value."""
    buckets = record["hold_histogram"]
    calls_cost = histogram_p50([b for b in buckets if b[0] < EMPTY_BELOW_NS]) \
        - fixture_hold_p50(empty)
    measured = histogram_p50([b for b in buckets if b[0] >= EMPTY_BELOW_NS]) - calls_cost
    truth = fixture_hold_p50(held)
    assert abs(measured - truth) <= 5_000 + 0.02 * truth, (buckets, calls_cost, truth)


@pytest.mark.parametrize("kind,fixture_kind", [("spin", "spin"), ("spin", "spin_irqsave"),
                                               ("spin", "spin_bh")])
def test_spinlock_holders_and_hold_time(fixture: Fixture, kind: str, fixture_kind: str) -> None:
    with Tool("locks", "--kind", kind) as tool:
        truth, empty = hold_twice(fixture, fixture_kind, 50, 100)
        tool.stop()
    record = lock_named(tool, "fx_spin")
    assert record["kind"] == "spinlock"
    assert_holders(record, [truth, empty])
    assert_hold_p50(record, [truth], [empty])
    assert record["hold_ns"]["max"] >= max(t["hold_ns"]["max"] for t in truth["threads"])
    assert record["site"] and record["site"].startswith(f"fx_hold_{fixture_kind}+")
    stats = tool.of_type("stats")[0]
    assert stats["locks_dropped"] == 0 and stats["holders_dropped"] == 0
    # PREEMPT_RT: spinlock_t's functions by kprobe (see test_check); the fixture's counts
    # are exact above, and what others' locks missed (interrupts nested over our programs)
    # is counted
    assert stats["probe"] == ("kprobe" if PREEMPT_RT else "fentry"), stats
    assert stats["acquisitions_missed"] <= MISSED_SHARE * stats["acquisitions_seen"], stats


def test_rwlock_read_and_write(fixture: Fixture) -> None:
    with Tool("locks", "--kind", "rw") as tool:
        (read, read_empty), (write, write_empty) = (hold_twice(fixture, "read", 50, 50),
                                                    hold_twice(fixture, "write", 50, 50))
        tool.stop(signal.SIGTERM)  # the same clean end as Ctrl-C
    record = lock_named(tool, "fx_rwlock")
    assert record["kind"] == "rwlock"
    assert_holders(record, [read, read_empty, write, write_empty])
    assert_hold_p50(record, [read, write], [read_empty, write_empty])


def test_mutex_contended_wait_matches_the_other_holder(fixture: Fixture) -> None:
    """Each contended wait lies inside one lock call and outside the hold that followed.

    The fixture times each mutex_lock() call to the unlock's return (call_ns) and
    the hold inside; what a call took beyond its hold is the waiting (plus the
    calls' own cost).  So the waits irqlock reports must fit in that, and make up
    most of it.  Under TCG the vCPUs take turns, so a waiter often waits for the
    other vCPU's time slice, not just the other thread's 100 us hold.
    """
    with Tool("locks", "--kind", "mutex") as tool:
        truth, empty = hold_twice(fixture, "mutex", 100, 200)
        tool.stop()
    record = lock_named(tool, "fx_mutex")
    assert record["kind"] == "mutex"
    assert_holders(record, [truth, empty])
    assert_hold_p50(record, [truth], [empty])
    threads = truth["threads"] + empty["threads"]
    outside_holds = sum(t["call_ns"]["total"] - t["hold_ns"]["total"] for t in threads)
    wait = record["wait_ns"]
    assert 0 < record["contended"] < record["acquisitions"]
    assert wait["max"] <= max(t["call_ns"]["max"] for t in threads), (wait, threads)
    assert 0.3 * outside_holds <= wait["total"] <= outside_holds, (wait, outside_holds)


def test_rwsem_read_and_write(fixture: Fixture) -> None:
    with Tool("locks", "--kind", "rwsem") as tool:
        (read, read_empty), (write, write_empty) = (hold_twice(fixture, "rwsem_read", 50, 50),
                                                    hold_twice(fixture, "rwsem_write", 50, 50))
        tool.stop()
    record = lock_named(tool, "fx_rwsem")
    assert record["kind"] == "rwsem"
    assert_holders(record, [read, read_empty, write, write_empty])
    assert_hold_p50(record, [read, write], [read_empty, write_empty])


def test_every_kind_through_kprobes(fixture: Fixture) -> None:
    """Where a kernel has no fentry/fexit: kprobe at each acquire's entry, kretprobe at its
    return, kprobe at each release.  Forced here on a kernel that has both.

    A hold then runs from the kretprobe to the release's kprobe, so it includes those
    probes' own cost: several microseconds under emulation, more on a busy host.  Each
    lock's empty holds (0 us) in the same run measure that cost, and the 50 us holds must
    come within 5 us + 2 % of the fixture's figure once it is taken off."""
    kinds = {"fx_spin": "spin", "fx_rwlock": "write", "fx_mutex": "mutex", "fx_rwsem": "rwsem_read"}
    with Tool("locks", "--probe", "kprobe") as tool:
        runs = {name: hold_twice(fixture, kind, 50, 50) for name, kind in kinds.items()}
        tool.stop()
    for name, (held, empty) in runs.items():
        record = lock_named(tool, name)
        assert_holders(record, [held, empty])
        assert_hold_p50(record, [held], [empty])
    stats = tool.of_type("stats")[0]
    # On PREEMPT_RT spinlocks sleep too: more tasks can be inside an acquire at once than a
    # kretprobe has instances (10); what it missed is counted (the fixture's counts above
    # are exact all the same).
    assert stats["probe"] == "kprobe" and (stats["returns_missed"] == 0 or PREEMPT_RT), stats
    assert stats["locks_dropped"] == 0 and stats["holders_dropped"] == 0, stats


def test_one_lock_by_symbol(fixture: Fixture) -> None:
    with Tool("locks", "--lock", "fx_mutex") as tool:
        truth = fixture.run("hold mutex 50 20")
        fixture.run("hold spin 50 20")
        tool.stop()
    (record,) = tool.of_type("lock")
    assert record["name"] == "fx_mutex"
    assert_holders(record, [truth])


def test_pid_filter_keeps_only_that_process(fixture: Fixture) -> None:
    """Writing to the fixture's control file takes its ctl_lock mutex in this process."""
    me = os.getpid()
    with Tool("locks", "-p", str(me)) as tool:
        fixture.run("fire 1")
        tool.stop()
    records = tool.of_type("lock")
    assert records, "this process takes locks when it writes the control file"
    assert all(h["tgid"] == me for r in records for h in r["holders"])
    assert "ctl_lock" in {r["name"] for r in records}


@pytest.mark.parametrize("probe", ["fentry", "kprobe"])
def test_max_locks_caps_the_maps_and_counts_the_rest(fixture: Fixture, probe: str) -> None:
    """fentry: the locks in use stay (LRU), and the share of acquisitions they cover is
    said; kprobe: a full map takes no new lock, and what it turned away is counted."""
    with Tool("locks", "--max-locks", "16", "--probe", probe) as tool:
        fixture.run("hold mutex 50 10")
        tool.stop()
    assert 0 < len(tool.of_type("lock")) <= 16
    stats = tool.of_type("stats")[0]
    assert stats["max_locks"] == 16
    assert stats["acquisitions_covered"] == sum(r["acquisitions"] for r in tool.of_type("lock"))
    assert stats["acquisitions_covered"] < stats["acquisitions_seen"]
    assert stats["covered_share"] < 1
    if probe == "kprobe":
        assert stats["locks_dropped"] > 0
    # 16 locks and 32 holders, plus the fixed per-task state (8192 tasks' held locks, 16
    # of 48 bytes each, and waits): ~5 MiB with the kernel's per-entry overhead on 6.1,
    # ~8.5 MiB on 6.12, whose count (map_mem_usage, since 6.4) adds each CPU's spare
    # elements and bucket locks; the default caps come to ~60 MiB
    assert stats["map_bytes"] < 10 << 20


def test_interval_and_count_print_that_many_tables(fixture: Fixture) -> None:
    done = subprocess.run([sys.executable, "-m", "irqlock", "locks", "1", "2", "-j", "-n", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = [line for line in done.stdout.splitlines() if '"type": "lock"' in line]
    assert len(records) == 6, done.stdout  # two tables of the top 3


@pytest.mark.parametrize("lock,message", [("no_such_lock_anywhere", "no kernel or module symbol"),
                                          ("schedule", "is a function, not a lock")])
def test_bad_lock_is_one_line_exit_2(fixture: Fixture, lock: str, message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "irqlock", "locks", "--lock", lock],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.splitlines()) == 1


def inconsistencies(record: dict[str, Any]) -> list[str]:
    """What in one lock record contradicts the rest of it."""
    found = []
    for timing, histogram in (("hold_ns", "hold_histogram"), ("wait_ns", "wait_histogram")):
        t = record[timing]
        if not t["p50"] <= t["p99"] <= t["max"]:
            found.append(f"{timing}: p50 {t['p50']} p99 {t['p99']} max {t['max']}")
        if t["count"] != sum(n for _low, n in record[histogram]):
            found.append(f"{timing}: count {t['count']} is not the histogram's")
        if t["total"] > t["count"] * t["max"]:
            found.append(f"{timing}: total {t['total']} over count x max")
    if record["hold_ns"]["count"] > record["acquisitions"]:
        found.append(f"{record['hold_ns']['count']} holds of {record['acquisitions']} acquisitions")
    if record["wait_ns"]["count"] != record["contended"]:
        found.append(f"{record['wait_ns']['count']} waits timed of {record['contended']} contended")
    return found


# Half a minute in the suite; IRQLOCK_LOAD_S=60 for the minute (README).
LOAD_S = int(os.environ.get("IRQLOCK_LOAD_S", "30"))
# The share of acquisitions a run may miss under load (the kernel skips a program of ours
# while another run of it goes on on that CPU), PREEMPT_RT included (issue 23).
MISSED_SHARE = 0.01


def locks_under_load(how: str, tmp_path: Path) -> list[dict[str, Any]]:
    """LOAD_S seconds of `irqlock locks` (or of a recording of locks, as its report prints
    it) under stress-ng's mix, with the default settings: its lock and stats records."""
    recording = tmp_path / "run.db"
    command = {"locks": ["locks"], "record": ["record", "--locks", "-o", str(recording)]}[how]
    with Tool(*command) as tool:
        with stress_ng(LOAD_S + 60, tmp_path):
            time.sleep(LOAD_S)
        tool.stop()
    if how == "locks":
        return tool.records
    done = subprocess.run([sys.executable, "-m", "irqlock", "report", str(recording), "-j"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["locks", "record"])
def test_every_lock_counted_and_consistent_under_load(fixture: Fixture, tmp_path: Path,
                                                       how: str) -> None:
    """The locks kept cover 99 % of all acquisitions, every record agrees with itself, and
    nearly every one has its holders."""
    lines = locks_under_load(how, tmp_path)
    records = [r for r in lines if r["type"] == "lock"]
    (stats,) = [r for r in lines if r["type"] == "stats" and r["tool"] == "locks"]
    assert records and stats["covered_share"] >= 0.99, stats
    assert stats["acquisitions_missed"] <= MISSED_SHARE * stats["acquisitions_seen"], stats
    assert stats["map_bytes"] <= 64 << 20, stats  # the default budget, kernel overhead included
    bad = {r["addr"]: problems for r in records if (problems := inconsistencies(r))}
    assert not bad, bad
    without_holders = [r for r in records if not r["holders"]]
    assert len(without_holders) <= 0.01 * len(records), (len(without_holders), len(records))
    print(json.dumps({k: stats[k] for k in ("acquisitions_seen", "acquisitions_missed", "probe",
                                            "covered_share", "map_bytes",
                                            "locks_dropped", "holders_dropped", "stale_dropped")}))


def test_by_class_adds_up_each_class_under_load(fixture: Fixture, tmp_path: Path) -> None:
    """--by class under stress-ng: each of the fixture's classes (two slab caches of its
    own: both foos' spinlocks are one class, bar's mutex another) with every acquisition
    of all its instances, and every class row consistent."""
    with Tool("locks", "--by", "class") as tool:
        with stress_ng(LOAD_S + 60, tmp_path):
            time.sleep(LOAD_S / 2)
            truth = fixture.run("classes 1000")
            time.sleep(LOAD_S / 2)
        tool.stop()
    rows = {r["class"]: r for r in tool.of_type("lock_class")}
    (stats,) = tool.of_type("stats")
    for c in truth["classes"]:
        name = f"&{c['cache']}+{c['offset']:#x}"
        assert name in rows, (name, len(rows), stats)
        row = rows[name]
        assert (row["kind"], row["locks"], row["acquisitions"], row["merged_cache"]) == \
            (c["kind"], c["locks"], c["acquisitions"], False), row
        assert [h["pid"] for h in row["holders"]] == [truth["pid"]]
    bad = {r["class"]: problems for r in rows.values() if (problems := inconsistencies(r))}
    assert not bad, bad
    assert stats["lock_classes"] == "slab cache + offset" and stats["slab_locks"] > 0, stats
    assert stats["acquisitions_missed"] <= MISSED_SHARE * stats["acquisitions_seen"], stats
    # every CPU's runqueue lock (the rq's first member) is one class, one row
    assert [r["class"] for r in tool.of_type("lock_class")].count("runqueues") == 1, rows.keys()
