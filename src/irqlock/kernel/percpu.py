"""Per-CPU variables: which CPU's copy of which variable an address is (`runqueues[1]`).

A per-CPU variable's symbol in /proc/kallsyms is its offset in the per-CPU area;
CPU n's copy lives at that offset plus `__per_cpu_offset[n]`.  Those bases are
read from the kernel's memory through /proc/kcore (root); where that cannot be
read, per-CPU addresses stay unnamed.
"""

from __future__ import annotations

import struct
from pathlib import Path

KCORE = Path("/proc/kcore")
_PT_LOAD = 1
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")


def read_kernel(address: int, size: int, kcore: Path = KCORE) -> bytes | None:
    """`size` bytes of kernel memory at `address` from /proc/kcore, or None."""
    try:
        with kcore.open("rb") as f:
            header = _ELF_HEADER.unpack(f.read(_ELF_HEADER.size))
            phoff, phentsize, phnum = header[5], header[9], header[10]
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _flags, offset, vaddr, _paddr, filesz, _memsz, _align = \
                    _PROGRAM_HEADER.unpack_from(table, i * phentsize)
                if p_type == _PT_LOAD and vaddr <= address and address + size <= vaddr + filesz:
                    f.seek(offset + address - vaddr)
                    data = f.read(size)
                    return data if len(data) == size else None
    except (OSError, struct.error):
        return None
    return None


def possible_cpus() -> int:
    """How many CPUs the kernel keeps per-CPU copies for (cpu_possible_mask's range)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return 0
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1


def per_cpu_bases(offsets_symbol: int, cpus: int, kcore: Path = KCORE) -> list[int]:
    """__per_cpu_offset[0..cpus) read at its address (empty if it cannot be read)."""
    raw = read_kernel(offsets_symbol, 8 * cpus, kcore) if cpus else None
    return list(struct.unpack(f"<{cpus}Q", raw)) if raw else []
