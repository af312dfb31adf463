#!/usr/bin/env python3
"""What tracing a lock acquisition costs on PREEMPT_RT, next to the stock kernel's fentry path.

Runs on the host: boots Debian's 6.1 stock and 6.1 PREEMPT_RT kernels in the VM (one after
the other, as scripts/vmtest.py does), runs section (f) of bench/locks_bench.py in each (a
spin_lock/spin_unlock pair of the fixture, untraced and under `irqlock locks --probe
auto|fentry|kprobe`) and prints what each adds per pair, and RT's auto path (kprobes for
spinlock_t there) against stock's fentry path:

    .venv/bin/python bench/rt_bench.py [--kernels stock rt 6.12 6.12-rt]

Under TCG only the ratios mean anything.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDED = re.compile(r"^\[[^]]*\]\s+probe (\w+)\s+(\d+) ns\s+\+(-?\d+) ns")


def added_ns(kernel: str) -> dict[str, int]:
    """Section (f) on `kernel`: probe -> ns added per pair."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vmtest.py"), "--kernel", kernel,
         "--name", f"rtbench-{kernel}", "--", str(ROOT / ".venv" / "bin" / "python"),
         str(ROOT / "bench" / "locks_bench.py"), "f"],
        capture_output=True, text=True, cwd=ROOT)
    print(done.stdout, end="")
    found = {m.group(1): int(m.group(3)) for line in done.stdout.splitlines()
             if (m := ADDED.match(line))}
    if done.returncode or not found:
        raise SystemExit(f"rt_bench: the bench failed on {kernel}:\n{done.stderr[-2000:]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kernels", nargs=2, default=["stock", "rt"], metavar=("STOCK", "RT"),
                        help="the stock and the PREEMPT_RT kernel (vmtest.py names; "
                             "default: stock rt)")
    stock_kernel, rt_kernel = parser.parse_args().kernels
    stock, rt = added_ns(stock_kernel), added_ns(rt_kernel)
    print(f"\nadded per spin pair: {stock_kernel} fentry +{stock['fentry']} ns; "
          f"{rt_kernel} auto +{rt['auto']} ns (fentry +{rt['fentry']}, kprobe +{rt['kprobe']})")
    print(f"{rt_kernel} auto / {stock_kernel} fentry: {rt['auto'] / max(stock['fentry'], 1):.2f}x "
          "(issue 23 allows 1.5x)")


if __name__ == "__main__":
    main()
