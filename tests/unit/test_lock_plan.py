"""How each lock function is traced (lock_plan, kernel.features.lock_methods): pure logic; what
it does on PREEMPT_RT is measured in the VM (tests/kernel/test_locks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from irqlock.errors import IrqlockError
from irqlock.kernel.features import (
    MUTEX_FUNCTIONS,
    RT_SPIN_FUNCTIONS,
    RWLOCK_FUNCTIONS,
    RWSEM_FUNCTIONS,
    SPIN_FUNCTIONS,
    KernelFeatures,
    lock_methods,
    plan,
    preemption_model,
)
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from tests.unit.test_features import features


def rt(f: KernelFeatures) -> KernelFeatures:
    f.preempt_rt, f.preemption = True, "rt"
    return f


def preempted(f: KernelFeatures, model: str) -> KernelFeatures:
    f.preemption = model
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


def test_full_preemption_traces_sleeping_locks_by_kprobe_and_spinning_ones_by_fentry() -> None:
    locks_plan = choose_functions(LocksConfig(), preempted(features(), "full"))
    assert locks_plan.method == "fentry+kprobe"
    assert {locks_plan.method_of(f) for f in SPIN_FUNCTIONS + RWLOCK_FUNCTIONS} == {"fentry"}
    assert {locks_plan.method_of(f) for f in MUTEX_FUNCTIONS + RWSEM_FUNCTIONS
            if f in locks_plan.functions} == {"kprobe"}
    assert locks_plan.free_method == "kprobe"


@pytest.mark.parametrize("model", ["none", "voluntary", "unknown"])
def test_a_kernel_that_does_not_preempt_our_programs_keeps_fentry(model: str) -> None:
    locks_plan = choose_functions(LocksConfig(), preempted(features(), model))
    assert locks_plan.method == "fentry" and locks_plan.free_method == "fentry"


@pytest.mark.parametrize("control, cmdline, config, model", [
    ("none voluntary (full)\n", "", {"CONFIG_PREEMPT_DYNAMIC": "y"}, "full"),
    ("none (voluntary) full\n", "preempt=full", {"CONFIG_PREEMPT_DYNAMIC": "y"}, "voluntary"),
    (None, "ro preempt=full", {"CONFIG_PREEMPT_DYNAMIC": "y", "CONFIG_PREEMPT_VOLUNTARY": "y"},
     "full"),
    (None, "ro", {"CONFIG_PREEMPT_DYNAMIC": "y", "CONFIG_PREEMPT_VOLUNTARY": "y"}, "voluntary"),
    (None, "preempt=full", {"CONFIG_PREEMPT": "y"}, "full"),  # no dynamic: preempt= is ignored
    (None, "", {"CONFIG_PREEMPT_NONE": "y"}, "none"),
    (None, "", {}, "unknown"),
])
def test_preemption_model(tmp_path: Path, control: str | None, cmdline: str,
                          config: dict[str, str], model: str) -> None:
    """The model now: debugfs's current one, else the boot's preempt= (dynamic), else the build's."""
    control_file, cmdline_file = tmp_path / "preempt", tmp_path / "cmdline"
    if control is not None:
        control_file.write_text(control)
    cmdline_file.write_text(cmdline)
    assert preemption_model(config, False, control_file, cmdline_file) == model
    assert preemption_model(config, True, control_file, cmdline_file) == "rt"


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
        assert "mutex, rwsem via kprobe/kretprobe (where the kernel preempts" in plans[tool]
    stock = {p.tool: p.detail for p in plan(features())}
    assert "via fentry/fexit" in stock["locks"] and "kprobe" not in stock["locks"]
    full = {p.tool: p.detail for p in plan(preempted(features(), "full"))}
    assert full["locks"].startswith("spinlock, rwlock via fentry/fexit; mutex, rwsem via "
                                    "kprobe/kretprobe (where the kernel preempts"), full["locks"]


def test_check_says_the_other_tools_are_never_preempted_on_preempt_rt() -> None:
    plans = {p.tool: p.detail for p in plan(rt(features()))}
    assert "never preempted" in plans["irqoff"] and "never preempted" in plans["irq"], plans
