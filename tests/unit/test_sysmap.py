"""irqlock.kernel.sysmap: preempt_count's place from a System.map, KASLR applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from irqlock.errors import IrqlockError
from irqlock.kernel import sysmap
from irqlock.kernel.sysmap import place_from_system_map, symbol_addresses

SYSTEM_MAP = """\
0000000000000000 D __per_cpu_start
000000000002a0c8 D __preempt_count
ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff82a13c40 R __per_cpu_offset_end_marker
ffffffff82a13e80 R __per_cpu_offset
"""
# kallsyms of the running kernel: functions only (no CONFIG_KALLSYMS_ALL), moved by KASLR
KALLSYMS = """\
ffffffffa5200000 T _text
ffffffffa5200000 T startup_64
ffffffffc0a01000 t fx_hold_spin\t[irqlock_fixture]
"""


def test_symbol_addresses_match_whole_names() -> None:
    found = symbol_addresses(SYSTEM_MAP, ("__per_cpu_offset", "_text", "nothing"))
    assert found == {"__per_cpu_offset": 0xffffffff82a13e80, "_text": 0xffffffff81000000}


def test_place_moves_data_by_the_text_slide(tmp_path: Path) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text(SYSTEM_MAP)
    place = place_from_system_map(KALLSYMS, system_map)
    assert place.preempt_count_offset == 0x2a0c8  # a per-CPU offset: KASLR leaves it
    assert place.per_cpu_offset_addr == 0xffffffff82a13e80 + 0xffffffffa5200000 - 0xffffffff81000000
    assert place.rodata() == {"preempt_count_offset": 0x2a0c8, "preempt_count_in_pcpu_hot": 0,
                              "per_cpu_offset_addr": place.per_cpu_offset_addr}


def test_place_of_pcpu_hot_asks_the_object_to_add_the_field(tmp_path: Path) -> None:
    """6.2 to 6.14 keep the count in struct pcpu_hot: the map gives the struct's offset, the
    object adds the field's from BTF."""
    system_map = tmp_path / "System.map"
    system_map.write_text(SYSTEM_MAP.replace("D __preempt_count", "D pcpu_hot"))
    place = place_from_system_map(KALLSYMS, system_map)
    assert place.variable == "pcpu_hot"
    assert place.rodata()["preempt_count_in_pcpu_hot"] == 1
    assert place.rodata()["preempt_count_offset"] == 0x2a0c8


def test_hidden_addresses_and_a_foreign_map_are_errors(tmp_path: Path) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text(SYSTEM_MAP)
    with pytest.raises(IrqlockError, match="no kernel addresses"):
        place_from_system_map(KALLSYMS.replace("ffffffffa5200000", "0000000000000000"), system_map)
    system_map.write_text("ffffffff81000000 T _text\n")
    with pytest.raises(IrqlockError, match="has no __preempt_count or pcpu_hot, __per_cpu_offset"):
        place_from_system_map(KALLSYMS, system_map)


def test_a_stub_and_another_builds_map_are_refused(tmp_path: Path) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffffffffffff B The real System.map is in the linux-image-6.1.0-57"
                          "-amd64-dbg package\n")
    with pytest.raises(IrqlockError, match="is a stub"):
        place_from_system_map(KALLSYMS, system_map)
    # same _text, but schedule is elsewhere than KASLR's slide would put it: another build
    system_map.write_text(SYSTEM_MAP + "ffffffff81e00000 T schedule\n")
    running = KALLSYMS + "ffffffffa5f00100 T schedule\n"
    with pytest.raises(IrqlockError, match="not this kernel's map \\(schedule"):
        place_from_system_map(running, system_map)
    running = KALLSYMS + "ffffffffa6000000 T schedule\n"  # moved by the slide: accepted
    assert place_from_system_map(running, system_map).preempt_count_offset == 0x2a0c8


@pytest.mark.parametrize("system_map, says", [
    (SYSTEM_MAP, "from "), ("", "has no __preempt_count or pcpu_hot"), (None, "no System.map")])
def test_source_without_data_symbols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     system_map: str | None, says: str) -> None:
    """kallsyms without data symbols: the map's place, or why there is none."""
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(KALLSYMS)
    monkeypatch.setattr(sysmap, "KALLSYMS", kallsyms)
    monkeypatch.setattr(sysmap, "SYSTEM_MAP_PATHS", (str(tmp_path / "none-{release}"),))
    monkeypatch.delenv(sysmap.SYSTEM_MAP_ENV, raising=False)
    if system_map is not None:
        (tmp_path / "System.map").write_text(system_map)
        monkeypatch.setenv(sysmap.SYSTEM_MAP_ENV, str(tmp_path / "System.map"))
    sysmap.preempt_count_source.cache_clear()
    try:
        source = sysmap.preempt_count_source()
    finally:
        sysmap.preempt_count_source.cache_clear()
    assert says in source.describe()
    assert bool(source.place) == (system_map == SYSTEM_MAP)
