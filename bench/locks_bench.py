#!/usr/bin/env python3
"""What `irqlock locks` costs, from one run, next to bcc's klockstat and untraced.

Runs inside the VM (the fixture module loaded; bpfcc-tools, stress-ng and
linux-perf installed by `scripts/setup.sh --bench`):

    scripts/vmtest.py -- .venv/bin/python bench/locks_bench.py [SECTION...]

(a) mutex-heavy: the fixture's mutex_lock/mutex_unlock micro-loop, untraced,
    under `irqlock locks --kind mutex`, under `irqlock locks` (all kinds) and
    under klockstat (which traces mutexes only);
(b) mixed: `perf bench sched messaging` (pipes, wakeups, every lock kind),
    untraced and under `irqlock locks`;
(c) the cost added to one spinlock acquire/release pair, in ns, from the
    fixture's spin_lock/spin_unlock micro-loop;
(d) the same pair taken while a mutex is held, untraced, under `irqlock locks`
    and under `irqlock deadlock`, whose every such acquisition checks the held
    mutex against its owner word before it draws (here: finds) the order edge;
(e) the pair of (d) with both locks inside slab objects, under `irqlock deadlock`:
    each acquisition also looks up its lock's class (the slab cache and offset,
    from the struct page of the address) and its class edge;
(f) the pair of (c) under each --probe (auto, fentry, kprobe): on PREEMPT_RT auto
    traces spinlock_t by kprobe (bench/rt_bench.py runs it on RT and stock at once).

Figures are medians of REPEAT runs; under TCG only the ratios mean anything.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

from tools import irqlock, lockloop, started  # bench/ is on the path: these are scripts

REPEAT = 3
MUTEX_PAIRS = 100_000
SPIN_PAIRS = 200_000
KLOCKSTAT = "klockstat-bpfcc"


def median(fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(REPEAT))


def mutex_heavy() -> float:
    return lockloop("mutex", MUTEX_PAIRS)


def messaging() -> float:
    out = subprocess.run(["perf", "bench", "sched", "messaging", "-g", "4", "-l", "50"],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"Total time: ([0-9.]+)", out)
    if not match:
        raise SystemExit(f"perf bench printed no total time: {out}")
    return float(match.group(1))


def per_pair_ns() -> float:
    return lockloop("spin", SPIN_PAIRS) * 1e9 / SPIN_PAIRS


def nested_pair_ns() -> float:
    return lockloop("nested", SPIN_PAIRS) * 1e9 / SPIN_PAIRS


def nested_slab_pair_ns() -> float:
    return lockloop("nested_slab", SPIN_PAIRS) * 1e9 / SPIN_PAIRS


def row(label: str, attach_s: float | None, seconds: float, base: float) -> str:
    attach = f"{attach_s:8.1f}" if attach_s is not None else f"{'-':>8}"
    return f"  {label:<34}{attach}{seconds:>10.3f}s{seconds / base:>8.2f}x"


def mutex_heavy_section() -> None:
    print(f"(a) mutex-heavy: fixture mutex_lock/unlock loop, {MUTEX_PAIRS} pairs")
    base = median(mutex_heavy)
    print(row("untraced", None, base, base))
    for label, args in (("irqlock locks --kind mutex", ["--kind", "mutex"]),
                        ("irqlock locks (all four kinds)", [])):
        with irqlock("locks", *args) as attach:
            print(row(label, attach, median(mutex_heavy), base))
    if shutil.which(KLOCKSTAT):
        with started([KLOCKSTAT], "Tracing lock events") as attach:
            print(row("klockstat (bcc)", attach, median(mutex_heavy), base))
    else:
        print(f"  klockstat: {KLOCKSTAT} not installed (scripts/setup.sh --bench)")


def messaging_section() -> None:
    print("(b) mixed: perf bench sched messaging -g 4 -l 50")
    base = median(messaging)
    print(row("untraced", None, base, base))
    with irqlock("locks") as attach:
        print(row("irqlock locks (all four kinds)", attach, median(messaging), base))


def spin_pair_section() -> None:
    print(f"(c) cost per spin_lock/spin_unlock pair: fixture loop, {SPIN_PAIRS} pairs")
    untraced = median(per_pair_ns)
    with irqlock("locks", "--kind", "spin"):
        traced = median(per_pair_ns)
    print(f"  untraced {untraced:.0f} ns, traced {traced:.0f} ns: +{traced - untraced:.0f} ns "
          f"per pair ({traced / untraced:.1f}x)")


def nested_pair_section() -> None:
    print(f"(d) cost per spin pair taken while a mutex is held: fixture loop, {SPIN_PAIRS} pairs")
    untraced = median(nested_pair_ns)
    print(f"  {'untraced':<34}{untraced:>8.0f} ns")
    for label, args in (("irqlock locks", ["locks"]),
                        ("irqlock deadlock (edge + held check)", ["deadlock"])):
        with irqlock(*args):
            traced = median(nested_pair_ns)
        print(f"  {label:<34}{traced:>8.0f} ns  +{traced - untraced:.0f} ns "
              f"({traced / untraced:.1f}x)")


def class_section() -> None:
    print(f"(e) the pair of (d) in slab objects: the cost of lock classes, {SPIN_PAIRS} pairs")
    static_untraced, slab_untraced = median(nested_pair_ns), median(nested_slab_pair_ns)
    with irqlock("deadlock"):
        static_traced, slab_traced = median(nested_pair_ns), median(nested_slab_pair_ns)
    added_static, added_slab = static_traced - static_untraced, slab_traced - slab_untraced
    print(f"  untraced: static {static_untraced:.0f} ns, slab {slab_untraced:.0f} ns per pair")
    print(f"  irqlock deadlock adds: static locks (no class lookup) +{added_static:.0f} ns, "
          f"slab locks (class lookup) +{added_slab:.0f} ns: the class costs "
          f"{added_slab - added_static:.0f} ns ({added_slab / added_static:.2f}x)")


def attachment_section() -> None:
    print(f"(f) cost per spin_lock/spin_unlock pair by attachment, {SPIN_PAIRS} pairs "
          "(PREEMPT_RT: rt_spin_lock/rt_spin_unlock, which auto traces by kprobe there)")
    untraced = median(per_pair_ns)
    print(f"  {'untraced':<34}{untraced:>8.0f} ns")
    for probe in ("auto", "fentry", "kprobe"):
        with irqlock("locks", "--kind", "spin", "--probe", probe):
            traced = median(per_pair_ns)
        # (parsed by bench/rt_bench.py)
        print(f"  probe {probe:<28}{traced:>8.0f} ns  +{traced - untraced:.0f} ns "
              f"({traced / untraced:.1f}x)")


SECTIONS = {"a": mutex_heavy_section, "b": messaging_section, "c": spin_pair_section,
            "d": nested_pair_section, "e": class_section, "f": attachment_section}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"{' '.join(SECTIONS)} (default: all)")
    chosen = parser.parse_args().sections or list(SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"no section {', '.join(unknown)} (sections: {' '.join(SECTIONS)})")
    release = Path("/proc/sys/kernel/osrelease").read_text().strip()
    print(f"locks bench on {release}; median of {REPEAT}; attach s = start to attached")
    print(f"  {'':<34}{'attach':>8}{'time':>11}{'ratio':>9}")
    for name in chosen:
        SECTIONS[name]()


if __name__ == "__main__":
    main()
