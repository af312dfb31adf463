"""Symbolizer logic on a synthetic /proc/kallsyms."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from irqlock.errors import IrqlockError
from irqlock.kernel import kallsyms
from irqlock.kernel.kallsyms import Kallsyms, Symbols
from irqlock.kernel.percpu import per_cpu_bases

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



PER_CPU_TEXT = TEXT + """\
0000000000000000 A __per_cpu_start
0000000000001000 A irq_stack_backing_store
0000000000029e40 A runqueues
000000000002b000 A cpu_tss_rw
000000000002d000 A __per_cpu_end
ffffffff82400000 D __per_cpu_offset
"""


def fake_kcore(path: Path, vaddr: int, data: bytes) -> None:
    """An ELF core with one PT_LOAD segment holding `data` at `vaddr`, as /proc/kcore is."""
    phoff, phentsize = 64, 56
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0,
                         phoff, 0, 0, 64, phentsize, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 4, phoff + phentsize, vaddr, 0, len(data), len(data), 0)
    path.write_bytes(header + segment + data)


def test_per_cpu_bases_read_from_kcore(tmp_path: Path) -> None:
    kcore = tmp_path / "kcore"
    bases = [0xff11_0000_7dc0_0000, 0xff11_0000_7de0_0000]
    fake_kcore(kcore, 0xffffffff82400000, struct.pack("<2Q", *bases))
    assert per_cpu_bases(0xffffffff82400000, 2, kcore) == bases
    assert per_cpu_bases(0xffffffff82500000, 2, kcore) == [], "outside every segment"
    assert per_cpu_bases(0xffffffff82400000, 2, tmp_path / "none") == []


def test_per_cpu_lock_names_the_variable_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    bases = [0xff11_0000_7dc0_0000, 0xff11_0000_7de0_0000]
    monkeypatch.setattr(kallsyms, "possible_cpus", lambda: 2)
    monkeypatch.setattr(kallsyms, "per_cpu_bases",
                        lambda at, cpus: bases if at == 0xffffffff82400000 else [])
    syms = Kallsyms(PER_CPU_TEXT)
    assert syms.data_name(bases[1] + 0x29e40) == "runqueues[1]"
    assert syms.data_name(bases[0] + 0x29e48) == "runqueues[0]+0x8"
    assert syms.data_name(bases[0] + 0x2d000) is None, "past the static per-CPU area"
    assert syms.data_name(0xff11_0000_1234_5678) is None, "an ordinary dynamic lock"
    assert syms.data_name(0xffffffff82000000) == "jiffies_lock"
