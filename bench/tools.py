"""What the benchmarks share: the fixture's micro-loops and running a tool until it is attached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CONTROL = Path("/proc/irqlock_fixture")


def lockloop(kind: str, pairs: int) -> float:
    """Seconds the fixture took for ``pairs`` lock/unlock pairs of ``kind``."""
    CONTROL.write_text(f"lockloop {kind} {pairs}")
    return float(json.loads(CONTROL.read_text())["total_ns"]) / 1e9


@contextmanager
def irqlock(*args: str) -> Iterator[float]:
    """Run `irqlock ARGS` until the block ends; yields the seconds it took to attach."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "irqlock", *args, "-j",
                                 "--ready-file", str(ready)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not ready.exists():
            if proc.poll() is not None:
                raise SystemExit(f"irqlock {' '.join(args)} failed: {proc.communicate()[1]}")
            time.sleep(0.01)
        try:
            yield time.perf_counter() - start
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=300)


@contextmanager
def started(command: list[str], ready_line: str, timeout_s: float = 900) -> Iterator[float]:
    """Run another tool until the block ends, once it has printed ``ready_line``."""
    start = time.perf_counter()
    # Python tools (bcc's) buffer a pipe: unbuffered, their ready line arrives when printed.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    for line in proc.stdout:
        if ready_line in line:
            break
        if time.perf_counter() - start > timeout_s:
            proc.kill()
            raise SystemExit(f"{command[0]} did not start in {timeout_s} s")
    else:
        raise SystemExit(f"{command[0]} exited before it was ready: exit {proc.wait()}")
    try:
        yield time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
