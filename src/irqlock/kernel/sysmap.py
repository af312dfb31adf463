"""Where this CPU's preempt_count is, on kernels whose kallsyms has no data symbols.

The irqoff and locks programs read preempt_count (which context they run in, whether
softirqs are off).  They name the per-CPU variable `__preempt_count` as a ksym, which the
verifier places through kallsyms -- and a kernel built without CONFIG_KALLSYMS_ALL lists
only functions there: the object does not load.  For such kernels the same programs are
built to read it at addresses user space gives (`<name>.sysmap.bpf.o`): its offset in the
per-CPU area and `__per_cpu_offset`'s address, from the kernel's System.map, moved by
KASLR's slide (a function's address in kallsyms less its address in System.map).  Where
no map places it either, irqoff runs without it (`irqoff.nopc.bpf.o`: no softirq-off
sampling) and the lock tracers cannot run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from irqlock.errors import IrqlockError

KALLSYMS = Path("/proc/kallsyms")
# Debian and Fedora put it in /boot, some distributions beside the modules
SYSTEM_MAP_PATHS = ("/boot/System.map-{release}", "/lib/modules/{release}/System.map")
# A System.map to take preempt_count's place from, even where kallsyms has it: for a map kept
# elsewhere (Debian's /boot one is a stub: the real one is in linux-image-*-dbg), and for the
# tests of this path, which run on kernels that list data symbols.
SYSTEM_MAP_ENV = "IRQLOCK_SYSTEM_MAP"
ANCHOR = "_text"  # a symbol kallsyms always has, to measure KASLR's slide by
MAPPED_SYMBOLS = ("__preempt_count", "__per_cpu_offset", ANCHOR)  # what is read from a map


@dataclass(frozen=True)
class PreemptCountPlace:
    """The rodata a `.sysmap` object needs (see preempt_count.h)."""

    preempt_count_offset: int
    per_cpu_offset_addr: int
    system_map: str

    def rodata(self) -> dict[str, int]:
        return {"preempt_count_offset": self.preempt_count_offset,
                "per_cpu_offset_addr": self.per_cpu_offset_addr}


def symbol_addresses(text: str, names: tuple[str, ...]) -> dict[str, int]:
    """The addresses of `names` in a kallsyms or System.map text ("ADDR TYPE NAME" lines;
    kallsyms adds a module column, which none of these has)."""
    found = {}
    for name in names:
        match = re.search(rf"^([0-9a-fA-F]+) \S {re.escape(name)}$", text, re.MULTILINE)
        if match:
            found[name] = int(match.group(1), 16)
    return found


def system_map_path(release: str) -> Path | None:
    for pattern in SYSTEM_MAP_PATHS:
        path = Path(pattern.format(release=release))
        if path.is_file():
            return path
    return None


def place_from_system_map(kallsyms: str, system_map: Path) -> PreemptCountPlace:
    """preempt_count's place from `system_map`, KASLR's slide measured against `kallsyms`."""
    try:
        mapped = symbol_addresses(system_map.read_text(errors="replace"), MAPPED_SYMBOLS)
    except OSError as exc:
        raise IrqlockError(f"cannot read {system_map}: {exc.strerror}") from None
    missing = [n for n in MAPPED_SYMBOLS if n not in mapped]
    if missing:
        raise IrqlockError(f"{system_map} has no {', '.join(missing)}: not this kernel's map?")
    running = symbol_addresses(kallsyms, (ANCHOR,)).get(ANCHOR, 0)
    if not running:
        raise IrqlockError("kallsyms shows no kernel addresses (needs root, and "
                           "kernel.kptr_restrict below 2)")
    slide = running - mapped[ANCHOR]
    return PreemptCountPlace(preempt_count_offset=mapped["__preempt_count"],
                             per_cpu_offset_addr=mapped["__per_cpu_offset"] + slide,
                             system_map=str(system_map))


@dataclass(frozen=True)
class PreemptCountSource:
    """Where the programs find preempt_count: the per-CPU ksym (neither field set), a
    System.map (`place`), or nowhere (`unplaced`: why)."""

    place: PreemptCountPlace | None = None
    unplaced: str = ""

    def describe(self) -> str:
        if self.unplaced:
            return f"none ({self.unplaced})"
        if self.place:
            return f"from {self.place.system_map}"
        return "per-CPU ksym (kallsyms lists data symbols)"


@lru_cache(maxsize=1)
def preempt_count_source() -> PreemptCountSource:
    """The per-CPU ksym where kallsyms lists `__preempt_count` (the verifier places it);
    else its place from System.map; else nowhere, and why."""
    try:
        kallsyms = KALLSYMS.read_text()
    except OSError as exc:
        return PreemptCountSource(unplaced=f"cannot read {KALLSYMS}: {exc.strerror}")
    given = os.environ.get(SYSTEM_MAP_ENV)
    if not given and symbol_addresses(kallsyms, ("__preempt_count",)):
        return PreemptCountSource()
    release = os.uname().release
    system_map = Path(given) if given else system_map_path(release)
    if system_map is None:
        return PreemptCountSource(unplaced=(
            "this kernel's kallsyms has no data symbols (built without CONFIG_KALLSYMS_ALL) and "
            f"there is no System.map ({', '.join(p.format(release=release) for p in SYSTEM_MAP_PATHS)}"
            f", or {SYSTEM_MAP_ENV}=PATH) to find preempt_count by"))
    try:
        return PreemptCountSource(place=place_from_system_map(kallsyms, system_map))
    except IrqlockError as exc:
        return PreemptCountSource(unplaced=str(exc))
