"""Kernel symbolizer over /proc/kallsyms: functions and data, kernel and modules.

Addresses become ``func+0x1a/0x40`` or ``func+0x1a/0x40 [module]`` (the kernel's
own %pS format); a data address (a static lock) becomes its variable name.  A
symbol's size is the distance to the next symbol, as the kernel's own
kallsyms_lookup_size_offset() computes it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from irqlock.errors import IrqlockError
from irqlock.kernel.percpu import per_cpu_bases, possible_cpus

KALLSYMS = Path("/proc/kallsyms")
# Symbol types that are code or data we can name ('a'/'A' are absolute values,
# 'U' undefined, and per-CPU offsets are tiny numbers: none is an address).
_TEXT_TYPES = frozenset("tTwW")
# The last symbol before a gap (end of text, JIT areas) would otherwise swallow it.
MAX_SYMBOL_SIZE = 1 << 20


@dataclass(frozen=True)
class Symbol:
    address: int
    size: int
    name: str
    module: str | None
    is_text: bool

    def format(self, address: int) -> str:
        text = f"{self.name}+{address - self.address:#x}/{self.size:#x}"
        return f"{text} [{self.module}]" if self.module else text


BPF_FRAME_PREFIXES = ("bpf_prog_", "bpf_trampoline_")


# One symbol we can name: address (not zero: kptr_restrict hides addresses as zeros),
# type letter, name, optional module.  One regular expression over the whole file is
# several times faster than looking at ~150,000 lines in Python, which matters: every
# tool loads kallsyms at start, and under emulation each pass over them costs seconds.
_SYMBOL_LINE = re.compile(
    r"^(?!0+ )([0-9a-f]+) ([tTwWdDbBrRgGsSvV]) (\S+)(?:\t\[(\S+)\])?$", re.M)


def _member(symbol: Symbol, address: int, copy: str = "") -> str:
    """``name``, ``name[cpu]`` or ``name[cpu]+0x10``: where in the variable ``address`` is."""
    offset = address - symbol.address
    return f"{symbol.name}{copy}" + (f"+{offset:#x}" if offset else "")


# A per-CPU variable: its offset in the per-CPU area, listed as an absolute symbol.
_PER_CPU_LINE = re.compile(r"^([0-9a-f]+) A (\S+)$", re.M)
_PER_CPU_LAST_LINE_END = " __per_cpu_end\n"


class PerCpuSymbols:
    """The per-CPU variables (x86-64 lists them as absolute symbols: offsets from 0 to
    __per_cpu_end) and where each CPU's copies are."""

    def __init__(self, symbols: list[tuple[int, str]], end: int, bases: list[int]) -> None:
        self._offsets = [offset for offset, _name in symbols]
        self._names = [name for _offset, name in symbols]
        self._end = end
        self._bases = bases

    @classmethod
    def load(cls, kallsyms_text: str, offsets_symbol: int | None) -> PerCpuSymbols:
        # kallsyms lists the kernel's symbols by address: the per-CPU ones, tiny offsets,
        # come first and end at __per_cpu_end, so only that head is searched (a pass over
        # all of it took seconds under emulation).
        last = kallsyms_text.find(_PER_CPU_LAST_LINE_END)
        head = kallsyms_text[:last + len(_PER_CPU_LAST_LINE_END)] if last >= 0 else ""
        found = sorted((int(hex_offset, 16), name)
                       for hex_offset, name in _PER_CPU_LINE.findall(head))
        end = next((offset for offset, name in found if name == "__per_cpu_end"), 0)
        variables = [(offset, name) for offset, name in found
                     if offset < end and not name.startswith("__per_cpu_")]
        bases = per_cpu_bases(offsets_symbol, possible_cpus()) if offsets_symbol and end else []
        return cls(variables, end, bases)

    def name(self, address: int) -> str | None:
        """``variable[cpu]`` (``+0x..`` inside it) for an address in a CPU's copy, or None."""
        for cpu, base in enumerate(self._bases):
            offset = address - base
            if 0 <= offset < self._end:
                i = bisect.bisect_right(self._offsets, offset) - 1
                if i < 0:
                    return None
                symbol = Symbol(self._offsets[i], 1, self._names[i], None, False)
                return _member(symbol, offset, f"[{cpu}]")
        return None


class Kallsyms:
    """Address → symbol lookups over a snapshot of /proc/kallsyms."""

    def __init__(self, text: str) -> None:
        # Addresses stay 16-digit hex strings: sorted as strings they are sorted as numbers,
        # and no int() is paid for the ~150,000 symbols a lookup never visits.
        rows = _SYMBOL_LINE.findall(text)
        if not rows:
            raise IrqlockError(
                f"{KALLSYMS} shows no addresses: run as root (kernel.kptr_restrict hides them)"
            )
        rows.sort(key=itemgetter(0))  # stable: of aliases at one address, the last listed wins
        self._text = text  # per-CPU variables are read from it when first asked for
        self._keys = [row[0] for row in rows]
        self._rows = rows
        self._by_name: dict[str, int] | None = None  # name -> index, built when first asked
        self._frames: dict[int, str] = {}  # symbolize()'s answers: stacks repeat a lot
        self._per_cpu: PerCpuSymbols | None = None

    @classmethod
    def load(cls, path: Path = KALLSYMS) -> Kallsyms:
        """A fresh snapshot (modules loaded since are only in a new one)."""
        try:
            return cls(path.read_text())
        except OSError as exc:
            raise IrqlockError(f"cannot read {path}: {exc.strerror}") from None

    def _symbol(self, i: int) -> Symbol:
        hex_address, kind, name, module = self._rows[i]
        address = int(hex_address, 16)
        end = int(self._keys[i + 1], 16) if i + 1 < len(self._keys) else address + 1
        return Symbol(address, min(max(end - address, 1), MAX_SYMBOL_SIZE), name,
                      module or None, kind in _TEXT_TYPES)

    def lookup(self, address: int) -> Symbol | None:
        """The symbol containing ``address``, or None."""
        i = bisect.bisect_right(self._keys, f"{address:016x}") - 1
        if i < 0:
            return None
        symbol = self._symbol(i)
        return symbol if address < symbol.address + symbol.size else None

    def symbolize(self, address: int) -> str:
        """``func+0xoff/0xsize [module]`` for code, or ``0x…`` when no function holds it."""
        frame = self._frames.get(address)
        if frame is None:
            symbol = self.lookup(address)
            frame = symbol.format(address) if symbol and symbol.is_text else f"{address:#x}"
            self._frames[address] = frame
        return frame

    def data_name(self, address: int) -> str | None:
        """Name of the data object at ``address`` (a static lock: ``jiffies_lock``, a
        member: ``ptype_lock+0x8``, a CPU's copy of a per-CPU one: ``runqueues[1]``), or None."""
        symbol = self.lookup(address)
        if symbol is None:
            return self._per_cpu_name(address)
        if symbol.is_text:
            return None
        return _member(symbol, address)

    def _per_cpu_name(self, address: int) -> str | None:
        if self._per_cpu is None:
            self._per_cpu = PerCpuSymbols.load(self._text, self.address_of("__per_cpu_offset"))
            self._text = ""  # ~10 MB not to keep for the life of a session
        return self._per_cpu.name(address)

    def find(self, name: str) -> Symbol | None:
        """The symbol called ``name`` (the lowest address of several)."""
        if self._by_name is None:
            self._by_name = {}
            for i, row in enumerate(self._rows):
                self._by_name.setdefault(row[2], i)
        index = self._by_name.get(name)
        return None if index is None else self._symbol(index)

    def address_of(self, name: str) -> int | None:
        symbol = self.find(name)
        return symbol.address if symbol else None

    def stack(self, addresses: list[int]) -> list[str]:
        """Symbolize a stack, innermost frame first, stopping at the first zero.

        The innermost frames of a stack taken by a BPF program are that program and
        its trampoline: they say nothing about the kernel and are left out.
        """
        frames: list[str] = []
        for address in addresses:
            if address == 0:
                break
            frame = self.symbolize(address)
            if not frames and frame.startswith(BPF_FRAME_PREFIXES):
                continue
            frames.append(frame)
        return frames


class Symbols:
    """The snapshot a tracer names addresses with, taken after its programs are attached
    (their frames are dropped from stacks by name).  A tracer alone takes its own; the
    tracers of one run (record, serve) share one, which their owner takes again once
    they are all attached and after any of them is restarted: reading /proc/kallsyms
    costs seconds under emulation."""

    def __init__(self) -> None:
        self._snapshot: Kallsyms | None = None

    @classmethod
    def after_attach(cls, shared: Symbols | None) -> Symbols:
        """For a tracer whose programs are now attached: the run's shared snapshot (its
        owner takes it), or one of its own, taken now."""
        if shared is not None:
            return shared
        own = cls()
        own.refresh()
        return own

    def refresh(self) -> None:
        self._snapshot = Kallsyms.load()

    @property
    def current(self) -> Kallsyms:
        if self._snapshot is None:
            self.refresh()
        assert self._snapshot is not None
        return self._snapshot
