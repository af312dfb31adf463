"""The command line on this machine's own kernel: clean answers, one-line errors, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from irqlock.kernel.features import KPROBE_PMU


def irqlock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "irqlock", *args], capture_output=True,
                          text=True, timeout=120)


def test_check_answers_cleanly_on_the_host_kernel() -> None:
    done = irqlock("check", "-j")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    # This machine's kernel has no kprobes; a developer's may: check it tells the truth.
    assert report["kprobes"]["available"] == KPROBE_PMU.exists()
    assert {p["tool"] for p in report["plan"]} == {"irqoff", "irq", "locks", "deadlock"}
    for p in report["plan"]:
        if p["mode"] == "unavailable":
            assert p["detail"], "an unavailable tool says why"


def test_check_console_on_the_host_kernel() -> None:
    done = irqlock("check")
    assert done.returncode == 0 and "plan:" in done.stdout, done.stderr


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["check", "--bogus"],
    ["check", "-j", "extra"],
    ["irqoff", "-t", "3parsecs"],            # unknown unit
    ["irqoff", "-t", "-3ms"],                # negative duration
    ["irqoff", "-d", "0"],                   # duration must be positive
    ["irqoff", "-m", "fast"],                # unknown mode
    ["irqoff", "--period", "5us"],           # below the sampler's floor
    ["irqoff", "-p", "999999999"],           # no such process
    ["irqoff", "-c", "4096"],                # no such CPU
    ["irqoff", "--btf", "/nonexistent/btf"],  # kernel without BTF
    ["irq"],                                 # no IRQ named
    ["irq", "24", "--all"],                  # conflicting flags
    ["irq", "abc"],                          # not a number
    ["irq", "99999"],                        # no such IRQ
    ["irq", "-t", "1fortnight", "--all"],    # unknown unit
    ["irq", "--all", "--btf", "/nonexistent/btf"],
])
def test_bad_arguments_are_one_line_exit_2(args: list[str]) -> None:
    done = irqlock(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "error:" in done.stderr and "Traceback" not in done.stderr


def test_help_has_examples() -> None:
    done = irqlock("check", "--help")
    assert done.returncode == 0 and "examples:" in done.stdout
