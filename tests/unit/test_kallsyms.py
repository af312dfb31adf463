"""Symbolizer logic on a synthetic /proc/kallsyms."""

from __future__ import annotations

import pytest

from irqlock.errors import IrqlockError
from irqlock.kernel.kallsyms import Kallsyms, Symbols

TEXT = """\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81001000 T _raw_spin_lock_irqsave
ffffffff81001040 t helper
ffffffff82000000 D jiffies_lock
ffffffff82000010 d other_data
ffffffffc0639000 t fx_hold_spin\t[irqlock_fixture]
ffffffffc0639080 t fx_hold_mutex\t[irqlock_fixture]
ffffffffc0500000 t bpf_prog_370d8d4dfa866133_irq_disable_fentry	[bpf]
ffffffffc0500400 t bpf_trampoline_6442533836	[bpf]
ffffffffc0639b6c b fx_order_a\t[irqlock_fixture]
ffffffffc0639b70 b fx_order_b\t[irqlock_fixture]
"""


@pytest.fixture
def syms() -> Kallsyms:
    return Kallsyms(TEXT)


def test_kernel_function_with_offset_and_size(syms: Kallsyms) -> None:
    assert syms.symbolize(0xFFFFFFFF8100101A) == "_raw_spin_lock_irqsave+0x1a/0x40"


def test_module_function_names_module(syms: Kallsyms) -> None:
    assert syms.symbolize(0xFFFFFFFFC0639004) == "fx_hold_spin+0x4/0x80 [irqlock_fixture]"


def test_unknown_address_is_hex(syms: Kallsyms) -> None:
    assert syms.symbolize(0x1234) == "0x1234"


def test_static_lock_by_exact_address(syms: Kallsyms) -> None:
    assert syms.data_name(0xFFFFFFFFC0639B6C) == "fx_order_a"
    assert syms.data_name(0xFFFFFFFF82000004) == "jiffies_lock+0x4"
    assert syms.data_name(0xFFFFFFFF81001000) is None, "a function is not a data object"


def test_address_of_and_stack(syms: Kallsyms) -> None:
    assert syms.address_of("fx_order_b") == 0xFFFFFFFFC0639B70
    assert syms.address_of("missing") is None
    frames = syms.stack([0xFFFFFFFF81001001, 0xFFFFFFFFC0639081, 0, 0xFFFFFFFF81001001])
    assert frames == ["_raw_spin_lock_irqsave+0x1/0x40", "fx_hold_mutex+0x1/0xaec [irqlock_fixture]"]


def test_stack_leaves_out_the_bpf_program_and_trampoline_taking_it(syms: Kallsyms) -> None:
    frames = syms.stack([0xFFFFFFFFC05000C9, 0xFFFFFFFFC0500440, 0xFFFFFFFF81001005])
    assert frames == ["_raw_spin_lock_irqsave+0x5/0x40"]


def test_hidden_addresses_are_one_clear_error() -> None:
    with pytest.raises(IrqlockError, match="kptr_restrict"):
        Kallsyms("0000000000000000 T _stext\n0000000000000000 t helper\n")


def test_shared_symbols_are_read_once_until_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracers sharing a Symbols read /proc/kallsyms once; a refresh (new programs) reads again."""
    snapshots: list[Kallsyms] = []

    def load(cls: type[Kallsyms]) -> Kallsyms:
        snapshots.append(Kallsyms(TEXT))
        return snapshots[-1]

    monkeypatch.setattr(Kallsyms, "load", classmethod(load))
    symbols = Symbols()
    assert not snapshots  # nothing read before it is needed
    first = symbols.current
    assert symbols.current is first and len(snapshots) == 1
    symbols.refresh()
    assert symbols.current is snapshots[1] is not first
    # A tracer given the run's Symbols leaves the reading to its owner; alone, it reads now.
    assert Symbols.after_attach(symbols) is symbols and len(snapshots) == 2
    own = Symbols.after_attach(None)
    assert len(snapshots) == 3 and own.current is snapshots[2]

