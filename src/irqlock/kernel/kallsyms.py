"""Kernel symbolizer over /proc/kallsyms: functions and data, kernel and modules.

Addresses become ``func+0x1a/0x40`` or ``func+0x1a/0x40 [module]`` (the kernel's
own %pS format); a data address (a static lock) becomes its variable name.  A
symbol's size is the distance to the next symbol, as the kernel's own
kallsyms_lookup_size_offset() computes it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from irqlock.errors import IrqlockError

KALLSYMS = Path("/proc/kallsyms")
# Symbol types that are code or data we can name ('a'/'A' are absolute values,
# 'U' undefined, and per-CPU offsets are tiny numbers: none is an address).
_TEXT_TYPES = frozenset("tTwW")
_DATA_TYPES = frozenset("dDbBrRgGsSvV")
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


class Kallsyms:
    """Address → symbol lookups over a snapshot of /proc/kallsyms."""

    def __init__(self, lines: list[str]) -> None:
        entries: list[tuple[int, str, str | None, bool]] = []
        for line in lines:
            parts = line.split()
            if len(parts) < 3:
                continue
            try:
                address = int(parts[0], 16)
            except ValueError:
                continue
            kind = parts[1]
            is_text = kind in _TEXT_TYPES
            if address == 0 or not (is_text or kind in _DATA_TYPES):
                continue
            module = parts[3].strip("[]") if len(parts) > 3 else None
            entries.append((address, parts[2], module, is_text))
        if not entries:
            raise IrqlockError(
                f"{KALLSYMS} shows no addresses: run as root (kernel.kptr_restrict hides them)"
            )
        entries.sort(key=lambda e: e[0])
        self._addresses = [e[0] for e in entries]
        self._symbols: list[Symbol] = []
        self._by_name: dict[str, Symbol] = {}
        for i, (address, name, module, is_text) in enumerate(entries):
            end = entries[i + 1][0] if i + 1 < len(entries) else address + 1
            symbol = Symbol(address, min(max(end - address, 1), MAX_SYMBOL_SIZE), name, module,
                            is_text)
            self._symbols.append(symbol)
            self._by_name.setdefault(name, symbol)

    @classmethod
    def load(cls, path: Path = KALLSYMS) -> Kallsyms:
        try:
            return cls(path.read_text().splitlines())
        except OSError as exc:
            raise IrqlockError(f"cannot read {path}: {exc.strerror}") from None

    def lookup(self, address: int) -> Symbol | None:
        """The symbol containing ``address``, or None."""
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0:
            return None
        symbol = self._symbols[i]
        return symbol if address < symbol.address + symbol.size else None

    def symbolize(self, address: int) -> str:
        """``func+0xoff/0xsize [module]`` for code, or ``0x…`` when no function holds it."""
        symbol = self.lookup(address)
        return symbol.format(address) if symbol and symbol.is_text else f"{address:#x}"

    def data_name(self, address: int) -> str | None:
        """Name of the data object starting exactly at ``address`` (a static lock), or None."""
        symbol = self.lookup(address)
        if symbol is None or symbol.is_text:
            return None
        return symbol.name if symbol.address == address else f"{symbol.name}+{address - symbol.address:#x}"

    def address_of(self, name: str) -> int | None:
        symbol = self._by_name.get(name)
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
