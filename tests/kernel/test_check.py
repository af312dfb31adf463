"""`irqlock check` on the guest kernel: what it finds, proven by a real attach."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.kernel.fixture import Fixture


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "irqlock", "check", *args],
                          capture_output=True, text=True, timeout=120)


def test_check_json_reports_btf_kprobes_fentry_and_plans(fixture: Fixture) -> None:
    done = run_check("-j")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["type"] == "check"
    assert report["btf"]["available"]
    assert report["kprobes"]["available"] and "saw" in report["kprobes"]["detail"]
    assert report["fentry"]["available"] and "saw" in report["fentry"]["detail"]
    assert report["functions"]["_raw_spin_lock_irqsave"] == {"fentry": True, "kprobe": True}
    assert report["functions"]["mutex_lock"]["fentry"]
    plans = {p["tool"]: p for p in report["plan"]}
    assert set(plans) == {"irqoff", "irq", "locks", "deadlock"}
    assert all(p["mode"] != "unavailable" for p in plans.values()), plans
    exact_kernel = report["preemptirq_tracepoints"]["available"]
    assert plans["irqoff"]["mode"] == ("exact" if exact_kernel else "exact+sampled")


def test_check_console_names_every_capability(fixture: Fixture) -> None:
    done = run_check()
    assert done.returncode == 0, done.stderr
    for label in ("kernel", "BTF", "fentry", "kprobes", "preemptirq tracepoints", "plan:"):
        assert label in done.stdout


def test_missing_btf_is_reported_not_crashed(fixture: Fixture) -> None:
    done = run_check("-j", "--btf", "/nonexistent/vmlinux")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert not report["btf"]["available"]
    assert all(p["mode"] == "unavailable" for p in report["plan"])
