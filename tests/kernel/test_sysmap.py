"""Kernels built without CONFIG_KALLSYMS_ALL: the programs find preempt_count through
System.map (irqlock.kernel.sysmap), or, with no map either, irqoff runs without it.

Debian's kernels list data symbols in kallsyms (and ship a stub System.map); here irqlock is
given a System.map made of the symbols it reads (IRQLOCK_SYSTEM_MAP), so the System.map
builds of the irqoff and locks programs run on the real kernel, against the fixture's own
figures.  A wrong address would put the locks in the wrong context (none counted, or held
stacks mixed up) and hide softirqs-off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from irqlock.kernel.sysmap import (
    KALLSYMS,
    MAPPED_SYMBOLS,
    PREEMPT_COUNT_VARIABLES,
    SLIDE_WITNESSES,
    SYSTEM_MAP_ENV,
    symbol_addresses,
)
from tests.kernel import test_irqoff, test_locks
from tests.kernel.fixture import Fixture
from tests.kernel.tool import irqlock


@pytest.fixture
def no_data_symbols(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A System.map of this kernel's (KASLR-moved) addresses, for the tools the test starts."""
    kallsyms = KALLSYMS.read_text()
    variables = symbol_addresses(kallsyms, PREEMPT_COUNT_VARIABLES)
    assert len(variables) == 1, variables  # the one this kernel keeps its count in
    found = symbol_addresses(kallsyms, (*MAPPED_SYMBOLS, *SLIDE_WITNESSES)) | variables
    assert set(found) == {*MAPPED_SYMBOLS, *SLIDE_WITNESSES, *variables}, found
    system_map = tmp_path / "System.map"
    system_map.write_text("".join(f"{address:016x} D {name}\n" for name, address in found.items()))
    monkeypatch.setenv(SYSTEM_MAP_ENV, str(system_map))


def test_check_plans_preempt_count_from_system_map(no_data_symbols: None) -> None:
    done = irqlock("check", "-j")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["preempt_count"]["available"], record["preempt_count"]
    assert "/System.map" in record["preempt_count"]["detail"]
    # the objects' System.map builds load (check proves each plan by loading it)
    modes = {p["tool"]: (p["mode"], p["detail"]) for p in record["plan"]}
    assert modes["locks"][0] == "exact" and modes["deadlock"][0] == "exact", modes
    assert modes["irqoff"][0] != "unavailable", modes


def test_lock_holders_from_system_map(fixture: Fixture, no_data_symbols: None) -> None:
    test_locks.test_spinlock_holders_and_hold_time(fixture, "spin", "spin_bh")


@pytest.mark.skipif(test_irqoff.PREEMPT_RT, reason="softirqs-off is per task on PREEMPT_RT")
def test_softirq_off_sampled_from_system_map(fixture: Fixture, no_data_symbols: None) -> None:
    test_irqoff.test_softirq_off_is_sampled_within_bound(fixture)


@pytest.fixture
def no_preempt_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A System.map without the symbols: nothing places preempt_count."""
    system_map = tmp_path / "System.map"
    system_map.write_text("")
    monkeypatch.setenv(SYSTEM_MAP_ENV, str(system_map))


def test_check_without_preempt_count_offers_irqoff_only(no_preempt_count: None) -> None:
    record: dict[str, Any] = json.loads(irqlock("check", "-j").stdout)
    assert not record["preempt_count"]["available"]
    assert "has no __preempt_count or pcpu_hot" in record["preempt_count"]["detail"]
    modes = {p["tool"]: (p["mode"], p["detail"]) for p in record["plan"]}
    assert modes["locks"][0] == modes["deadlock"][0] == "unavailable", modes
    assert "has no __preempt_count or pcpu_hot" in modes["locks"][1]
    assert modes["irqoff"][0] != "unavailable", modes
    assert "no softirq-off sampling" in modes["irqoff"][1]


@pytest.mark.skipif(test_irqoff.PREEMPT_RT, reason="PREEMPT_RT's sampler misses windows (issue 16)")
def test_irqoff_samples_without_preempt_count(fixture: Fixture, no_preempt_count: None) -> None:
    test_irqoff.test_local_irq_disable_and_save_are_sampled_within_bound(fixture)


@pytest.mark.parametrize("option", [["--softirq"], ["-m", "exact"]])
def test_what_needs_preempt_count_is_one_line_exit_2(no_preempt_count: None,
                                                     option: list[str]) -> None:
    """softirq-off sampling, and the exact lock paths (on a kernel without preemptirq
    tracepoints: the preemptirq one needs no preempt_count for them)."""
    if option == ["-m", "exact"] and Path("/sys/kernel/tracing/events/preemptirq").is_dir():
        pytest.skip("exact mode comes from the preemptirq tracepoints here")
    done = irqlock("irqoff", *option, "-d", "1")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "preempt_count" in done.stderr, done.stderr
