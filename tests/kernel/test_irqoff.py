"""irqlock irqoff against the fixture's own ktime windows.

On a stock kernel lock-path windows are exact and the rest sampled; on a kernel
with preemptirq tracepoints every window is exact, whatever API made it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.fixture import Fixture
from tests.kernel.tool import Tool

EXACT_KERNEL = Path("/sys/kernel/tracing/events/preemptirq/irq_disable").exists()
PREEMPT_RT = "PREEMPT_RT" in os.uname().version
# The fixture's lock sections that turn interrupts off: spinlock_t's on a stock kernel, raw
# spinlocks' on PREEMPT_RT (where spin_lock_irqsave leaves them on: test_rt_* checks that).
IRQSAVE = "raw_irqsave" if PREEMPT_RT else "spin_irqsave"
IRQSAVE_NESTED = "raw_irqsave_nested" if PREEMPT_RT else "spin_irqsave_nested"
OTHER_IRQ_APIS = ("raw_irq",) if PREEMPT_RT else ("spin_irq", "write_irqsave")
stock_only = pytest.mark.skipif(EXACT_KERNEL, reason="stock-kernel behaviour (lock paths + sampler)")
exact_only = pytest.mark.skipif(not EXACT_KERNEL,
                                reason="needs preemptirq tracepoints: scripts/vmtest.py --kernel irqtrace")


def of_task(tool: Tool, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Every window the tool reported for the fixture's task: the context of a failure."""
    return [w for w in tool.of_type("irqoff") if w["pid"] == truth["task"]["pid"]]


def windows_of(tool: Tool, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool's windows made by the fixture's calls: its task, covering one of its windows.

    Other windows of the same task are real too (an interrupt taken just before the
    fixture's call is a window on the exact kernel) but are not what the fixture made.
    """
    spans = [(tw["start_ns"], tw["end_ns"]) for tw in truth["windows"]]
    return [w for w in of_task(tool, truth)
            if any(w["start_ns"] <= start and w["end_ns"] >= end for start, end in spans)
            and any(truth["function"] in f for f in w["disable_stack"] + w["enable_stack"])]


def assert_exact_match(window: dict[str, Any], truth_window: dict[str, Any], truth: dict[str, Any]) -> None:
    """An exact window starts inside the fixture's disabling call and ends inside its enabling one.

    The fixture stamps the time just before that call (outer_start), just after
    it (start), just before the enabling call (end) and just after it
    (outer_end); where inside each call interrupts flip cannot be known more
    precisely.  Under TCG each call costs microseconds, so pinning both edges
    to their calls is the honest form of the "within 5 us + 1 %" bound.
    """
    assert window["exact"] and window["error_ns"] == 0
    assert truth_window["outer_start_ns"] <= window["start_ns"] <= truth_window["start_ns"], \
        (window, truth_window)
    assert truth_window["end_ns"] <= window["end_ns"] <= truth_window["outer_end_ns"], \
        (window, truth_window)
    assert window["comm"] == truth["task"]["comm"]
    assert window["cpu"] == truth_window["cpu"]


@stock_only
def test_spin_lock_irqsave_windows_exact_once_each(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "50us", "-m", "exact") as tool:
        truths = [fixture.run(f"irqoff {IRQSAVE} {us}") for us in (100, 1000, 5000)]
        tool.stop()
    for truth in truths:
        found = windows_of(tool, truth)
        assert len(found) == 1, (truth, found)
        assert found[0]["source"] == "lock"
        assert_exact_match(found[0], truth["windows"][0], truth)
        assert any(f"fx_irqoff_{IRQSAVE}" in f for f in found[0]["disable_stack"])
        assert any(f"fx_irqoff_{IRQSAVE}" in f for f in found[0]["enable_stack"])
    stats = tool.of_type("stats")[0]
    assert stats["lost_events"] == 0


@stock_only
def test_nested_irqsave_is_one_window(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "50us", "-m", "exact") as tool:
        truth = fixture.run(f"irqoff {IRQSAVE_NESTED} 1000 2")
        tool.stop(signal.SIGTERM)  # the same clean end as Ctrl-C
    found = windows_of(tool, truth)
    assert len(found) == 2, found  # two nested runs, one window each
    for window, truth_window in zip(sorted(found, key=lambda w: w["start_ns"]), truth["windows"],
                                    strict=True):
        assert_exact_match(window, truth_window, truth)


@stock_only
def test_other_lock_irq_variants_are_exact(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "50us", "-m", "exact") as tool:
        truths = [fixture.run(f"irqoff {api} 500") for api in OTHER_IRQ_APIS]
        tool.stop()
    for truth in truths:
        found = windows_of(tool, truth)
        assert len(found) == 1, (truth, of_task(tool, truth), tool.of_type("stats"))
        assert_exact_match(found[0], truth["windows"][0], truth)


def assert_confirmed_or_late(w: dict[str, Any], tw: dict[str, Any]) -> None:
    """A sampled window over a fixture window is confirmed by the sti that let its tick in;
    only a tick that came late for another reason (emulation runs a vCPU late too) lands
    past the enabling call, in ordinary code, and leaves it unconfirmed."""
    assert w["confirmed"] == (w["site"] not in ("none", "stall"))
    if w["confirmed"]:
        assert w["site"] in ("sti", "popf"), w
    elif w["site"] == "none":
        assert w["end_ns"] > tw["outer_end_ns"], json.dumps([w, tw])
    # "stall": every CPU's ticks stopped during it (a paused machine): set aside, as any
    # window is that the stall covers, whatever was happening in the guest


@stock_only
def test_local_irq_disable_and_save_are_sampled_within_bound(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "1ms", "--unconfirmed") as tool:
        truths = [fixture.run(f"irqoff {api} {us}") for api in ("irq_disable", "irq_save")
                  for us in (2000, 5000)]
        tool.stop()
    stats = tool.of_type("stats")[0]
    found_windows = []
    for truth in truths:
        tw = truth["windows"][0]
        found = [w for w in tool.of_type("irqoff") if w["pid"] == truth["task"]["pid"]
                 and w["start_ns"] < tw["end_ns"] and w["end_ns"] > tw["start_ns"]]
        # (for a failure: what the same CPU reported around it, of any task)
        near = [w for w in tool.of_type("irqoff") if w["cpu"] == tw["cpu"]
                and w["start_ns"] < tw["end_ns"] + 50_000_000 and w["end_ns"] > tw["start_ns"] - 50_000_000]
        if not found and blind_over(tool, tw):
            # No tick came to that CPU over the window, nor for a while around it, though
            # it kept running: under TCG on a busy host the timer interrupts of every CPU
            # stop for 10-15 ms now and then (seen in one window of 15 on PREEMPT_RT with
            # two host CPUs taken).  The sampler cannot see in there, and it said so.
            continue
        assert len(found) == 1, json.dumps([truth, of_task(tool, truth), near, stats,
                                            tool.of_type("sampler_blind")])
        w = found[0]
        found_windows.append(w)
        assert not w["exact"] and w["source"] == "sample" and w["error_ns"] > 0
        assert_confirmed_or_late(w, tw)
        # The start lies within error_ns of the truth: the tick before the window was at
        # most a period before it, or as late as the run's latest tick (emulation runs a
        # CPU late: sampler_late_max_ns).
        late = stats["sampler_late_max_ns"]
        if w["site"] == "stall":
            # Every CPU's ticks stopped (a blind span) from before the window began: its
            # start is the task's last tick or switch-in, earlier than the truth's, never
            # later.  Such a window is set aside as unconfirmed for that very reason.
            assert w["start_ns"] <= tw["start_ns"] + w["error_ns"] + late, json.dumps([w, tw])
        else:
            assert abs(w["start_ns"] - tw["start_ns"]) <= w["error_ns"] + late, \
                json.dumps([w, tw, late])
        # The end is the first tick after interrupts came back on, in the fixture's call
        # (it stays there a while with interrupts on).  On hardware that tick comes within
        # microseconds; under TCG beside another busy guest it has come milliseconds late.
        assert tw["end_ns"] <= w["end_ns"], json.dumps([w, tw])
        assert any(truth["function"] in f for f in w["enable_stack"]), json.dumps([w, tw])
    assert any(w["confirmed"] for w in found_windows), json.dumps(found_windows)
    assert stats["unconfirmed_windows"] >= sum(not w["confirmed"] for w in found_windows)
    assert_blind_spans_consistent(tool)


def blind_over(tool: Tool, tw: dict[str, Any]) -> list[dict[str, Any]]:
    """The sampler's blind spans (--unconfirmed) on the CPU of a fixture window, covering it."""
    return [b for b in tool.of_type("sampler_blind") if b["cpu"] == tw["cpu"]
            and b["start_ns"] <= tw["start_ns"] and b["end_ns"] >= tw["end_ns"]]


def assert_blind_spans_consistent(tool: Tool) -> None:
    """Blind spans listed (--unconfirmed: those over the threshold) agree with the stats."""
    stats = tool.of_type("stats")[0]
    spans = tool.of_type("sampler_blind")
    assert stats["blind_spans_over_threshold"] == len(spans), stats
    assert stats["blind_max_ns"] == max((b["duration_ns"] for b in spans), default=0), stats
    assert stats["blind_spans"] >= len(spans) and stats["blind_ns"] >= sum(
        b["duration_ns"] for b in spans), stats
    period = stats["sampler_period_ns"]
    assert all(b["duration_ns"] >= max(2 * period, 1_000_000) for b in spans), spans


def test_softirq_on_rt_is_one_line_exit_2(fixture: Fixture) -> None:
    """PREEMPT_RT keeps softirqs-off per task, not in preempt_count: --softirq says so."""
    done = subprocess.run([sys.executable, "-m", "irqlock", "irqoff", "--softirq", "-d", "1"],
                          capture_output=True, text=True, timeout=300)
    if PREEMPT_RT:
        assert done.returncode == 2 and "PREEMPT_RT" in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == 1
    else:
        assert done.returncode == 0, done.stderr


@pytest.mark.skipif(PREEMPT_RT, reason="softirqs-off is per task on PREEMPT_RT: "
                    "test_softirq_on_rt_is_one_line_exit_2")
def test_softirq_off_is_sampled_within_bound(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "1ms", "--softirq") as tool:
        # Long enough for a tick to land inside even when the guest's timer runs
        # milliseconds late (TCG beside another busy guest).
        truths = [fixture.run(f"irqoff bh {us}") for us in (5000, 10000)]
        tool.stop()
    for truth in truths:
        tw = truth["windows"][0]
        # The one window over the fixture's softirqs-off section.  The kthread has other,
        # real ones that a busy TCG host stretches past the threshold: local_bh_enable()
        # serving pending softirqs (a tick in between, softirqs on for an instant, may
        # split it off), softirqs served on the way out of an interrupt.
        found = [w for w in tool.of_type("irqoff") if w["kind"] == "softirq"
                 and w["pid"] == truth["task"]["pid"]
                 and w["start_ns"] < tw["end_ns"] and w["end_ns"] > tw["start_ns"]]
        assert len(found) == 1, (tw, [(w["kind"], w["start_ns"], w["end_ns"], w["error_ns"])
                                      for w in of_task(tool, truth)])
        w = found[0]
        assert not w["exact"] and w["source"] == "sample" and w["error_ns"] > 0
        # local_bh_enable() serves pending softirqs before it returns: the window may
        # run to the fixture's outer end; each edge is off by at most error_ns, and the
        # start by as much as the run's latest tick too (sampler_late_max_ns, as for
        # interrupts): softirqs served just before the section, with no tick between,
        # are one window with it.
        err = w["error_ns"]
        late = tool.of_type("stats")[0]["sampler_late_max_ns"]
        assert tw["outer_start_ns"] - err - late <= w["start_ns"] <= tw["start_ns"] + err, \
            (w, tw, late)
        assert tw["end_ns"] - err <= w["end_ns"] <= tw["outer_end_ns"] + err, (w, tw)
        assert any(truth["function"] in f for f in w["disable_stack"]), w["disable_stack"]
        # Interrupts stayed on: no hardirq window covers the softirq-off one.
        assert not [x for x in of_task(tool, truth) if x["kind"] == "hardirq"
                    and x["start_ns"] <= tw["start_ns"] and x["end_ns"] >= tw["end_ns"]]


def test_threshold_filters_short_windows(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "2ms", "-m", "exact") as tool:
        short = fixture.run(f"irqoff {IRQSAVE} 200")
        long = fixture.run(f"irqoff {IRQSAVE} 3000")
        tool.stop()
    # A host that stalls the guest inside the short section makes it long for real (the
    # fixture's own clock says so): judged by what the fixture measured, not by its request.
    for truth in (short, long):
        tw = truth["windows"][0]
        if tw["outer_end_ns"] - tw["outer_start_ns"] < 2_000_000:
            assert windows_of(tool, truth) == [], tw
        elif tw["duration_ns"] >= 2_000_000:
            assert len(windows_of(tool, truth)) == 1, tw
    assert len(windows_of(tool, long)) == 1
    assert all(w["duration_ns"] >= 2_000_000 for w in tool.of_type("irqoff"))


def test_pid_and_cpu_filters(fixture: Fixture) -> None:
    with Tool("irqoff", "-t", "50us", "-m", "exact", "-p", "1") as by_pid:
        truth = fixture.run(f"irqoff {IRQSAVE} 500")
        by_pid.stop()
    assert windows_of(by_pid, truth) == []
    assert all(w["pid"] == 1 for w in by_pid.of_type("irqoff"))
    with Tool("irqoff", "-t", "50us", "-m", "exact", "-c", "0") as by_cpu:
        truths = [fixture.run(f"irqoff {IRQSAVE} 500 4")]
        by_cpu.stop()
    assert all(w["cpu"] == 0 for w in by_cpu.of_type("irqoff"))
    on_cpu0 = [tw for tw in truths[0]["windows"] if tw["cpu"] == 0]
    assert len(windows_of(by_cpu, truths[0])) == len(on_cpu0)


@exact_only
@pytest.mark.parametrize("api", ["irq_disable", "irq_save", "spin_irqsave", "spin_irq",
                                 "write_irqsave", "spin_irqsave_nested"])
def test_every_api_is_exact_with_tracepoints(fixture: Fixture, api: str) -> None:
    with Tool("irqoff", "-t", "200us") as tool:
        truth = fixture.run(f"irqoff {api} 1000")
        tool.stop()
    found = windows_of(tool, truth)
    assert len(found) == 1, found
    assert found[0]["source"] == "tracepoint"
    assert_exact_match(found[0], truth["windows"][0], truth)
    disable_site = [found[0]["disable_ip"], found[0]["disable_parent_ip"], *found[0]["disable_stack"]]
    assert any(s and truth["function"] in s for s in disable_site), disable_site


@contextmanager
def stalled_vcpus() -> Iterator[None]:
    """The host stops this VM for 2-5 ms at a time, letting it run 10 ms between (what
    scripts/vmtest.py does while the request file is there): a hypervisor running the
    virtual CPUs late, as clouds do."""
    request = Path(os.environ["IRQLOCK_RESULTS"]) / "stall"
    request.write_text("2 5 10")
    try:
        yield
    finally:
        request.unlink()


def overlapping(windows: list[dict[str, Any]], truth: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in windows for tw in truth["windows"]
            if w["start_ns"] < tw["end_ns"] and w["end_ns"] > tw["start_ns"]]


@stock_only
def test_stalled_vcpu_is_no_irqoff_window(fixture: Fixture) -> None:
    """A busy-wait with interrupts on while the host stalls the vCPUs (the whole VM): every
    CPU's ticks stop at once, so the gaps are a paused machine ("stall"), and a late tick
    that lands in ordinary code confirms nothing either: no window of the busy-wait is
    confirmed (they are reported, with --unconfirmed, as unconfirmed).  A local_irq_disable window under the
    same stalls ends at the sti that let its tick in: confirmed, and within its stated
    error, unless a stall covered it."""
    with Tool("irqoff", "-t", "1ms", "--unconfirmed") as tool:
        with stalled_vcpus():
            busy = fixture.run("irqoff busy 30000 3")
            off = fixture.run("irqoff irq_disable 3000 5")
        tool.stop()
    stats = tool.of_type("stats")[0]
    # (an exact lock window in an interrupt over the busy-wait is real: not in question here)
    in_busy = [w for w in overlapping(of_task(tool, busy), busy) if w["source"] == "sample"]
    assert [w for w in in_busy if not w["confirmed"]], \
        "no late tick in the busy-wait: the stalls did not happen, the test proves nothing"
    # A confirmed window here can only be an interrupt's own irqs-off section over the
    # busy-wait that a vCPU descheduled by the host (not the whole VM: the other vCPU ticked
    # on) stretched -- real irqs-off time as the guest sees it, which only a steal clock could
    # tell apart (TCG has none).  Never one that ended in the busy-wait, interrupts on.
    confirmed_in_busy = [w for w in in_busy if w["confirmed"]]
    assert not [w for w in confirmed_in_busy if not w["enable_stack"]
                or w["enable_stack"][0].split("+")[0] == busy["function"]], \
        json.dumps(confirmed_in_busy)
    assert stats["unconfirmed_windows"] >= len(in_busy)
    assert stats["stalled_windows"] >= 1, json.dumps(in_busy)
    # The other CPU idles meanwhile: its ticks stop with the machine, and the stalls it sat
    # through in idle (no window can explain them) are the sampler's blind spans.
    assert stats["blind_spans"] >= 1, stats
    assert_blind_spans_consistent(tool)
    late = stats["sampler_late_max_ns"]
    confirmed = 0
    for tw in off["windows"]:
        found = overlapping(of_task(tool, off), {"windows": [tw]})
        if not found and blind_over(tool, tw):
            continue  # the ticks stopped around it: the sampler said it saw nothing there
        assert len(found) == 1, json.dumps([tw, of_task(tool, off),
                                            tool.of_type("sampler_blind")])
        (w,) = found
        assert_confirmed_or_late(w, tw)
        confirmed += w["confirmed"]
        # A stall between the fixture's call and its cli (emulation delivers the tick held
        # back meanwhile only at its next block, after the cli) starts the window at the
        # last tick before the stall: never before the call began.
        bound = w["error_ns"] + late
        assert tw["outer_start_ns"] - bound <= w["start_ns"] <= tw["start_ns"] + bound, \
            json.dumps([w, tw])
        assert tw["end_ns"] <= w["end_ns"], json.dumps([w, tw])
        assert any(off["function"] in f for f in w["enable_stack"]), json.dumps(w)
    # a stall that holds the tick past the sti leaves a window unconfirmed, not all of them
    assert confirmed >= 1, json.dumps(of_task(tool, off))


@stock_only
def test_spin_lock_irqsave_turns_interrupts_off_except_on_rt(fixture: Fixture) -> None:
    """spin_lock_irqsave turns interrupts off on a stock kernel; on PREEMPT_RT it takes an
    rt_mutex and leaves them on, so no window, while raw_spin_lock_irqsave's is one there."""
    with Tool("irqoff", "-t", "500us", "-m", "exact") as tool:
        spin = fixture.run("irqoff spin_irqsave 2000")
        raw = fixture.run("irqoff raw_irqsave 2000")
        tool.stop()
    assert len(windows_of(tool, spin)) == (0 if PREEMPT_RT else 1), of_task(tool, spin)
    (window,) = windows_of(tool, raw)
    assert_exact_match(window, raw["windows"][0], raw)
