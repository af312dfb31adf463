"""`irqlock check` on the guest kernel: what it finds, proven by a real attach."""

from __future__ import annotations

import json
import subprocess
import sys

from irqlock.kernel.features import PREEMPTIBLE_MODELS
from tests.kernel.fixture import Fixture
from tests.records import record_problems


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "irqlock", "check", *args],
                          capture_output=True, text=True, timeout=120)


def test_check_json_reports_btf_kprobes_fentry_and_plans(fixture: Fixture) -> None:
    done = run_check("-j")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["type"] == "check"
    assert record_problems(report) == []
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
    preempts = report["preemption"] in PREEMPTIBLE_MODELS
    if report["preempt_rt"]:
        assert report["preemption"] == "rt", report["preemption"]
    for tool in ("locks", "deadlock"):  # which attachment, and where the kernel preempts why
        detail = plans[tool]["detail"]
        if preempts:
            spinning = "raw_spinlock" if report["preempt_rt"] else "spinlock, rwlock"
            assert f"{spinning} via fentry/fexit" in detail, detail
            assert "mutex, rwsem via kprobe/kretprobe (where the kernel preempts" in detail, detail
        else:
            assert "via fentry/fexit" in detail and "kprobe" not in detail, detail


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


PLANNED_RUNS = {"irqoff": ["irqoff", "-d", "1"], "irq": ["irq", "--all", "-d", "1"],
                "locks": ["locks", "-d", "1"], "deadlock": ["deadlock", "-d", "1"]}


def test_every_tool_the_plan_offers_then_runs(fixture: Fixture) -> None:
    """The plan is a promise: each tool it does not call unavailable starts, traces and
    stops cleanly on this kernel (stock, PREEMPT_RT and preemptirq kernels alike)."""
    report = json.loads(run_check("-j").stdout)
    offered = [p["tool"] for p in report["plan"] if p["mode"] != "unavailable"]
    assert offered, report["plan"]
    for tool in offered:
        done = subprocess.run([sys.executable, "-m", "irqlock", *PLANNED_RUNS[tool]],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (tool, done.stderr)
        assert "Traceback" not in done.stderr
