"""How each lock function is traced (lock_plan, kernel.features.lock_methods): pure logic; what
it does on PREEMPT_RT is measured in the VM (tests/kernel/test_locks.py)."""

from __future__ import annotations

import pytest

from irqlock.errors import IrqlockError
from irqlock.kernel.features import (
    MUTEX_FUNCTIONS,
    RT_SPIN_FUNCTIONS,
    SPIN_FUNCTIONS,
    KernelFeatures,
    lock_methods,
    plan,
)
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from tests.unit.test_features import features


def rt(f: KernelFeatures) -> KernelFeatures:
    f.preempt_rt = True
    return f


def test_stock_kernel_traces_everything_by_fentry() -> None:
    locks_plan = choose_functions(LocksConfig(), features())
    assert locks_plan.method == "fentry" and not locks_plan.uses_kprobes
    assert locks_plan.free_method == "fentry"


def test_preempt_rt_traces_sleeping_locks_by_kprobe_and_raw_spinlocks_by_fentry() -> None:
    locks_plan = choose_functions(LocksConfig(), rt(features()))
    assert locks_plan.method == "fentry+kprobe"
    assert {locks_plan.method_of(f) for f in SPIN_FUNCTIONS} == {"fentry"}
    assert {locks_plan.method_of(f) for f in RT_SPIN_FUNCTIONS + MUTEX_FUNCTIONS
            if f in locks_plan.functions} == {"kprobe"}
    assert locks_plan.free_method == "kprobe"  # kfree is preemptible there too


def test_preempt_rt_without_kprobes_keeps_fentry() -> None:
    methods = lock_methods(["rt_spin_lock", "_raw_spin_lock"], "auto", rt(features(kprobes=False)))
    assert methods == {"rt_spin_lock": "fentry", "_raw_spin_lock": "fentry"}


@pytest.mark.parametrize("probe", ["fentry", "kprobe"])
def test_a_probe_asked_for_is_used_for_every_function(probe: str) -> None:
    locks_plan = choose_functions(LocksConfig(probe=probe), rt(features()))
    assert locks_plan.method == probe
    assert locks_plan.free_method == probe


def test_kprobes_where_fentry_is_missing() -> None:
    assert set(lock_methods(SPIN_FUNCTIONS, "auto", features(fentry=False)).values()) == {"kprobe"}


@pytest.mark.parametrize("probe, missing, message", [
    ("fentry", {"fentry": False}, "--probe fentry: missing"),
    ("kprobe", {"kprobes": False}, "--probe kprobe: missing"),
    ("auto", {"fentry": False, "kprobes": False}, "needs fentry/fexit or kprobes"),
])
def test_a_method_that_cannot_attach_is_one_error(probe: str, missing: dict[str, bool],
                                                  message: str) -> None:
    with pytest.raises(IrqlockError, match=message.replace("/", ".")):
        lock_methods(SPIN_FUNCTIONS, probe, features(**missing))


def test_check_says_which_attachment_and_why_on_preempt_rt() -> None:
    plans = {p.tool: p.detail for p in plan(rt(features()))}
    for tool in ("locks", "deadlock"):
        assert "raw_spinlock via fentry/fexit" in plans[tool], plans[tool]
        assert "spinlock, rwlock, mutex, rwsem via kprobe/kretprobe" in plans[tool], plans[tool]
        assert "mutex, rwsem via kprobe/kretprobe (on PREEMPT_RT" in plans[tool]
    stock = {p.tool: p.detail for p in plan(features())}
    assert "via fentry/fexit" in stock["locks"] and "kprobe" not in stock["locks"]


def test_check_says_the_other_tools_are_never_preempted_on_preempt_rt() -> None:
    plans = {p.tool: p.detail for p in plan(rt(features()))}
    assert "never preempted" in plans["irqoff"] and "never preempted" in plans["irq"], plans
