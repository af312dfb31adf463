"""The symbolizer names the fixture module's functions and static locks."""

from __future__ import annotations

import re

from irqlock.kernel.kallsyms import Kallsyms
from tests.kernel.fixture import Fixture


def test_module_function_is_symbolized_with_module(fixture: Fixture, kallsyms: Kallsyms) -> None:
    start = kallsyms.address_of("fx_hold_spin")
    assert start
    text = kallsyms.symbolize(start + 4)
    assert re.fullmatch(r"fx_hold_spin\+0x4/0x[0-9a-f]+ \[irqlock_fixture\]", text), text


def test_kernel_function_has_no_module(kallsyms: Kallsyms) -> None:
    start = kallsyms.address_of("_raw_spin_lock_irqsave")
    assert start
    assert re.fullmatch(r"_raw_spin_lock_irqsave\+0x0/0x[0-9a-f]+", kallsyms.symbolize(start))


def test_static_lock_names_match_fixture_addresses(fixture: Fixture, kallsyms: Kallsyms) -> None:
    truth = fixture.run("order abba")
    for edge in truth["edges"]:
        assert kallsyms.data_name(int(edge["held_addr"], 16)) == edge["held"]
        assert kallsyms.data_name(int(edge["acquired_addr"], 16)) == edge["acquired"]


def test_per_cpu_copies_are_named_by_variable_and_cpu(fixture: Fixture, kallsyms: Kallsyms) -> None:
    """The kernel's own per_cpu_ptr() says where each CPU's copy is (runqueues[1] in a
    lock table is the same arithmetic)."""
    truth = fixture.run("percpu")
    assert len(truth["addrs"]) >= 2
    for cpu, addr in truth["addrs"].items():
        assert kallsyms.data_name(int(addr, 16)) == f"{truth['symbol']}[{cpu}]"
        assert kallsyms.data_name(int(addr, 16) + 2) == f"{truth['symbol']}[{cpu}]+0x2"
