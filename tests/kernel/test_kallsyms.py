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
