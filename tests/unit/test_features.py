"""Per-tool plans from kernel facts (pure logic; the real probing is tested in the VM)."""

from __future__ import annotations

import pytest

from irqlock.kernel.features import (
    IRQ_LINE_FUNCTIONS,
    LOCK_FUNCTIONS,
    Capability,
    FunctionSupport,
    KernelFeatures,
    plan,
)

YES, NO = Capability(True, ""), Capability(False, "missing")


def features(*, root: bool = True, btf: bool = True, fentry: bool = True, kprobes: bool = True,
             preemptirq: bool = False, perf: bool = True, functions: bool = True,
             preempt_count: bool = True) -> KernelFeatures:
    f = KernelFeatures(
        release="6.1.0-test", root=root, btf=YES if btf else NO, btf_path="/btf",
        config_source=None, tracefs="/sys/kernel/tracing",
        fentry=YES if fentry else NO, kprobes=YES if kprobes else NO,
        preemptirq_tracepoints=YES if preemptirq else NO, lock_contention_tracepoints=YES,
        irq_handler_tracepoints=YES, perf_cpu_clock=YES if perf else NO,
        preempt_count=YES if preempt_count else NO)
    f.functions = {n: FunctionSupport(fentry and functions, kprobes and functions)
                   for n in IRQ_LINE_FUNCTIONS + LOCK_FUNCTIONS}
    return f


def modes(f: KernelFeatures) -> dict[str, str]:
    return {p.tool: p.mode for p in plan(f)}


def test_stock_kernel_plan() -> None:
    assert modes(features()) == {"irqoff": "exact+sampled", "irq": "exact", "locks": "exact",
                                 "deadlock": "exact"}


def test_without_preempt_count_irqoff_only_samples() -> None:
    """No data symbols in kallsyms and no System.map (a kernel without KALLSYMS_ALL)."""
    plans = {p.tool: p for p in plan(features(preempt_count=False))}
    assert plans["irqoff"].mode == "sampled" and "no softirq-off" in plans["irqoff"].detail
    assert plans["locks"].mode == plans["deadlock"].mode == "unavailable"
    assert "preempt_count" in plans["locks"].detail


def test_preemptirq_kernel_is_exact() -> None:
    assert modes(features(preemptirq=True))["irqoff"] == "exact"


def test_kprobes_alone_suffice() -> None:
    plans = {p.tool: p for p in plan(features(fentry=False))}
    assert plans["locks"].mode == "exact" and "kprobe" in plans["locks"].detail


@pytest.mark.parametrize("kwargs, reason", [
    ({"root": False}, "root"),
    ({"btf": False}, "BTF"),
])
def test_every_tool_unavailable_with_reason(kwargs: dict[str, bool], reason: str) -> None:
    plans = plan(features(**kwargs))
    assert all(p.mode == "unavailable" for p in plans)
    assert all(reason in p.detail for p in plans), plans


def test_without_fentry_and_kprobes_only_sampling_is_left() -> None:
    plans = {p.tool: p for p in plan(features(fentry=False, kprobes=False))}
    assert plans["irqoff"].mode == "sampled"
    assert "neither fentry nor kprobes" in plans["irqoff"].detail
    for tool in ("irq", "locks", "deadlock"):
        assert plans[tool].mode == "unavailable"
        assert "neither fentry nor kprobes" in plans[tool].detail


def test_nothing_at_all_says_why() -> None:
    p = plan(features(fentry=False, kprobes=False, perf=False))[0]
    assert p.mode == "unavailable" and "perf cpu-clock" in p.detail


def test_no_attachable_functions_leaves_only_sampling() -> None:
    m = modes(features(functions=False))
    assert m == {"irqoff": "sampled", "irq": "unavailable", "locks": "unavailable",
                 "deadlock": "unavailable"}
