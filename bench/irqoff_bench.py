#!/usr/bin/env python3
"""What `irqlock irqoff` costs, from one run: workload slowdown per mode and start-to-attached time.

Runs inside the VM (the fixture module must be loaded):

    scripts/vmtest.py -- .venv/bin/python bench/irqoff_bench.py
    scripts/vmtest.py --kernel irqtrace -- .venv/bin/python bench/irqoff_bench.py

Workloads: a syscall-heavy one (dd with 1-byte reads and writes) and a lock-heavy
one (the fixture's spin_lock_irqsave/unlock_irqrestore micro-loop).  Each runs
untraced and with each mode attached; the figures are ratios to untraced, the
median of REPEAT runs.  Under TCG only the ratios mean anything.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from tools import irqlock, lockloop  # bench/ is on the path: these are scripts

REPEAT = 3
DD_BYTES = 100_000
LOCK_PAIRS = 200_000
EXACT_KERNEL = Path("/sys/kernel/tracing/events/preemptirq/irq_disable").exists()
MODES = [["-m", "exact"], ["-m", "sample"], ["-m", "auto"], ["-m", "auto", "--softirq"]]


def syscall_heavy() -> float:
    start = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={DD_BYTES}"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def lock_heavy() -> float:
    return lockloop("spin_irqsave", LOCK_PAIRS)


WORKLOADS = {"syscall-heavy (dd bs=1)": syscall_heavy, "lock-heavy (spin_lock_irqsave loop)": lock_heavy}


def measure() -> dict[str, float]:
    return {name: statistics.median(fn() for _ in range(REPEAT)) for name, fn in WORKLOADS.items()}


def traced(args: list[str]) -> tuple[float, dict[str, float]]:
    """Start irqlock irqoff with ``args``; returns (seconds to attached, workload times)."""
    with irqlock("irqoff", "-t", "1ms", *args) as attached:
        return attached, measure()


def main() -> None:
    kernel = "preemptirq tracepoints" if EXACT_KERNEL else "stock (no preemptirq tracepoints)"
    print(f"irqoff bench on {Path('/proc/sys/kernel/osrelease').read_text().strip()}, {kernel}; "
          f"median of {REPEAT}")
    base = measure()
    rows = []
    for args in MODES:
        attached, times = traced(args)
        rows.append((" ".join(args), attached, times))
    names = list(WORKLOADS)
    print(f"{'mode':<22}{'attach s':>9}" + "".join(f"{n[:28]:>30}" for n in names))
    print(f"{'untraced':<22}{'-':>9}" + "".join(f"{base[n]:>24.3f}s 1.00x" for n in names))
    for mode, attached, times in rows:
        print(f"{mode:<22}{attached:>9.2f}"
              + "".join(f"{times[n]:>24.3f}s {times[n] / base[n]:.2f}x" for n in names))


if __name__ == "__main__":
    main()
