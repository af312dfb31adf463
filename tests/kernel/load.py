"""Ordinary load for the kernel tests: the soak's stress-ng mix, and the kernel's preemption
model switched for a while (Debian's stock kernel is PREEMPT_DYNAMIC)."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from irqlock.kernel.features import PREEMPT_CONTROL, preemption_model, read_config

# What the soak and the no-false-findings tests run: CPU, context switches, pipes, forks,
# file I/O, file locks and SysV semaphores, one worker each.
STRESS_MIX = ["--cpu", "1", "--switch", "1", "--pipe", "1", "--fork", "1", "--hdd", "1",
              "--flock", "1", "--sem-sysv", "1",
              "--hdd-bytes", "64M"]  # (1 GiB by default: the guest's /tmp, in its memory, fills)


@contextmanager
def stress_ng(seconds: float, temp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """stress-ng's mix for `seconds` at most; killed with all its workers on leaving.

    A tracer under test is started before it and stopped after it: under TCG beside
    stress-ng's workers, `irqlock locks` took 96 s to load and attach (9 s without them)
    and the suite paid that in every load test, for nothing the tests look at."""
    stress = subprocess.Popen(
        ["stress-ng", *STRESS_MIX, "--temp-path", str(temp_path), "--timeout", str(int(seconds))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield stress
    finally:
        os.killpg(stress.pid, signal.SIGKILL)  # its workers too: the next test wants quiet
        stress.wait()


def _fixed_model() -> str:
    """The preemption model of a kernel without the debugfs switch: the boot's or the build's
    (the preemptirq kernel is PREEMPT_DYNAMIC without SCHED_DEBUG: full, though uname -v
    names only PREEMPT_DYNAMIC)."""
    return preemption_model(read_config(platform.uname().release)[0], False)


@contextmanager
def preemption(model: str) -> Iterator[None]:
    """The kernel's preemption model set to `model` (none, voluntary, full, rt) meanwhile.

    A kernel built with one fixed model has nothing to switch: the test is skipped
    there unless it asks for that very model."""
    if "PREEMPT_RT" in platform.uname().version:
        # An RT kernel is "rt" whichever of its dynamic models (6.12's full, lazy) is on.
        if model != "rt":
            pytest.skip("this kernel is PREEMPT_RT")
        yield
        return
    if not PREEMPT_CONTROL.parent.is_dir():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=False)
    if not PREEMPT_CONTROL.exists():
        fixed = _fixed_model()
        if fixed != model:
            pytest.skip(f"this kernel's preemption model is fixed at {fixed}")
        yield
        return
    # The file lists every model with the current one in parentheses.
    models = PREEMPT_CONTROL.read_text().split()
    if model not in (m.strip("()") for m in models):
        pytest.skip(f"this kernel switches between {', '.join(models)}, not to {model}")
    before = next(m.strip("()") for m in models if m.startswith("("))
    PREEMPT_CONTROL.write_text(model)
    try:
        yield
    finally:
        PREEMPT_CONTROL.write_text(before)
