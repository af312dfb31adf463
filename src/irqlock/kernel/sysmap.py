"""Where this CPU's preempt_count is: a per-CPU ksym, or, on kernels whose kallsyms has no
data symbols, an address from System.map.

The irqoff and locks programs read preempt_count (which context they run in, whether
softirqs are off).  x86 keeps it in the per-CPU int `__preempt_count` (to 6.1, and again
from 6.15) or in the per-CPU `struct pcpu_hot` (6.2 to 6.14: Debian's 6.12); the programs
name both as weak ksyms and read whichever this kernel has (preempt_count.h).  The verifier
places a per-CPU ksym through kallsyms -- and a kernel built without CONFIG_KALLSYMS_ALL
lists only functions there: the object does not load.  For such kernels the same programs
are built to read it at addresses user space gives (`<name>.sysmap.bpf.o`): its variable's
offset in the per-CPU area and `__per_cpu_offset`'s address, from the kernel's System.map,
moved by KASLR's slide (a function's address in kallsyms less its address in System.map).
A map that is a stub (Debian's /boot one) or another kernel's (its functions do not all
move by one slide) is refused with the reason.  Where no map places it, irqoff runs without
it (`irqoff.nopc.bpf.o`: no softirq-off sampling) and the lock tracers cannot run.
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
# The per-CPU variables preempt_count is in, by kernel (see preempt_count.h)
PREEMPT_COUNT_VARIABLES = ("__preempt_count", "pcpu_hot")
MAPPED_SYMBOLS = ("__per_cpu_offset", ANCHOR)  # read from a map, beside one of those
# Functions every x86-64 kernel has, spread over its text: a map whose addresses for them are
# not all moved by _text's slide is another build's
SLIDE_WITNESSES = ("start_kernel", "schedule", "do_exit", "__x64_sys_read")
# Debian's /boot/System.map-* holds only this line; the real map is in linux-image-*-dbg
STUB_MARKER = "The real System.map is in"


@dataclass(frozen=True)
class PreemptCountPlace:
    """The rodata a `.sysmap` object needs (see preempt_count.h)."""

    preempt_count_offset: int  # of its variable (below) in the per-CPU area
    per_cpu_offset_addr: int
    system_map: str
    variable: str = "__preempt_count"  # or "pcpu_hot": the field's offset comes from BTF

    def rodata(self) -> dict[str, int]:
        return {"preempt_count_offset": self.preempt_count_offset,
                "preempt_count_in_pcpu_hot": int(self.variable == "pcpu_hot"),
                "per_cpu_offset_addr": self.per_cpu_offset_addr}


def symbol_addresses(text: str, names: tuple[str, ...]) -> dict[str, int]:
    """The addresses of `names` in a kallsyms or System.map text ("ADDR TYPE NAME" lines;
    kallsyms adds a module column, which none of these has).  Found by str.find, not by a
    regular expression: under emulation each regex pass over kallsyms' 10 MB took 0.3 s."""
    if not text.endswith("\n"):
        text += "\n"
    found = {}
    for name in names:
        needle = f" {name}\n"
        at = text.find(needle)
        while at >= 0:
            line = _ADDRESS_AND_TYPE.fullmatch(text, text.rfind("\n", 0, at) + 1, at)
            if line:
                found[name] = int(line.group(1), 16)
                break
            at = text.find(needle, at + 1)
    return found


_ADDRESS_AND_TYPE = re.compile(r"([0-9a-fA-F]+) \S")


def system_map_path(release: str) -> Path | None:
    for pattern in SYSTEM_MAP_PATHS:
        path = Path(pattern.format(release=release))
        if path.is_file():
            return path
    return None


def place_from_system_map(kallsyms: str, system_map: Path) -> PreemptCountPlace:
    """preempt_count's place from `system_map`, KASLR's slide measured against `kallsyms`;
    an error saying why if the map is a stub or another kernel's."""
    try:
        text = system_map.read_text(errors="replace")
    except OSError as exc:
        raise IrqlockError(f"cannot read {system_map}: {exc.strerror}") from None
    if STUB_MARKER in text[:4096] and len(text) < 4096:
        raise IrqlockError(f"{system_map} is a stub (the real one is in the kernel's -dbg "
                           "package, or give it with IRQLOCK_SYSTEM_MAP=PATH)")
    mapped = symbol_addresses(text, (*PREEMPT_COUNT_VARIABLES, *MAPPED_SYMBOLS, *SLIDE_WITNESSES))
    variable = next((v for v in PREEMPT_COUNT_VARIABLES if v in mapped), None)
    missing = [n for n in MAPPED_SYMBOLS if n not in mapped]
    if variable is None or missing:
        names = ([" or ".join(PREEMPT_COUNT_VARIABLES)] if variable is None else []) + missing
        raise IrqlockError(f"{system_map} has no {', '.join(names)}: not this kernel's map?")
    running = symbol_addresses(kallsyms, (ANCHOR, *SLIDE_WITNESSES))
    if not running.get(ANCHOR):
        raise IrqlockError("kallsyms shows no kernel addresses (needs root, and "
                           "kernel.kptr_restrict below 2)")
    slide = running[ANCHOR] - mapped[ANCHOR]
    moved = [n for n in SLIDE_WITNESSES if n in mapped and n in running
             and running[n] - mapped[n] != slide]
    if moved:
        raise IrqlockError(f"{system_map} is not this kernel's map ({moved[0]} is not where "
                           "it puts it)")
    return PreemptCountPlace(preempt_count_offset=mapped[variable],
                             per_cpu_offset_addr=mapped["__per_cpu_offset"] + slide,
                             system_map=str(system_map), variable=variable)


@dataclass(frozen=True)
class PreemptCountSource:
    """Where the programs find preempt_count: a per-CPU ksym (`ksym`), a System.map
    (`place`), or nowhere (`unplaced`: why)."""

    place: PreemptCountPlace | None = None
    unplaced: str = ""
    ksym: str = ""

    def describe(self) -> str:
        if self.unplaced:
            return f"none ({self.unplaced})"
        if self.place:
            return f"{self.place.variable} from {self.place.system_map}"
        return f"per-CPU ksym {self.ksym} (kallsyms lists data symbols)"


@lru_cache(maxsize=1)
def preempt_count_source() -> PreemptCountSource:
    """The per-CPU ksym where kallsyms lists `__preempt_count` or `pcpu_hot` (the verifier
    places it); else its place from System.map; else nowhere, and why."""
    try:
        kallsyms = KALLSYMS.read_text()
    except OSError as exc:
        return PreemptCountSource(unplaced=f"cannot read {KALLSYMS}: {exc.strerror}")
    given = os.environ.get(SYSTEM_MAP_ENV)
    listed = symbol_addresses(kallsyms, PREEMPT_COUNT_VARIABLES)
    if not given and listed:
        variable = next(iter(listed))
        return PreemptCountSource(ksym=variable if variable == "__preempt_count"
                                  else f"{variable}.preempt_count")
    release = os.uname().release
    system_map = Path(given) if given else system_map_path(release)
    if not given and symbol_addresses(kallsyms, ("__per_cpu_offset",)):
        return PreemptCountSource(unplaced=(
            f"kallsyms lists data symbols but neither {' nor '.join(PREEMPT_COUNT_VARIABLES)}: "
            f"irqlock does not know where this kernel ({os.uname().machine}) keeps it"))
    if system_map is None:
        return PreemptCountSource(unplaced=(
            "this kernel's kallsyms has no data symbols (built without CONFIG_KALLSYMS_ALL) and "
            f"there is no System.map ({', '.join(p.format(release=release) for p in SYSTEM_MAP_PATHS)}"
            f", or {SYSTEM_MAP_ENV}=PATH) to find preempt_count by"))
    try:
        return PreemptCountSource(place=place_from_system_map(kallsyms, system_map))
    except IrqlockError as exc:
        return PreemptCountSource(unplaced=str(exc))
