"""The life of a tool's BPF object, which every tracer shares (as libbpf-tools' tools do):
open, configure, load -- with kprobes where the kernel refuses fentry, for a tracer that
can -- attach, then symbolize, with one cleanup path whatever fails; detach and close.

A tracer says what is its own: its object's name, how to configure the opened object
(``_configure``), how to attach (``_attach``), what to open once attached (``_opened``:
ring buffers) and whether it may fall back to kprobes (``_fall_back_to_kprobes``).
"""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self

from irqlock.bpf.libbpf import LibbpfError
from irqlock.bpf.loader import BpfObject
from irqlock.kernel.kallsyms import Symbols


class BpfTracer:
    """One BPF object, loaded and attached by ``_start``; a context manager that closes it."""

    OBJECT: ClassVar[str]
    SYMBOLIZES: ClassVar[bool] = True  # reads kallsyms once attached (names stacks)
    obj: BpfObject
    symbols: Symbols

    def _start(self, use_fentry: bool, attach: bool = True,
               symbols: Symbols | None = None) -> None:
        """Load the object; then, with ``attach``, attach and open what the tracer reads.
        attach=False: only load (irqlock check proves the object loads here)."""
        self.obj = self._load(use_fentry)
        if not attach:
            return
        try:
            self._attach()
            if self.SYMBOLIZES:
                # After attaching, so that our own programs and trampolines have names too.
                self.symbols = Symbols.after_attach(symbols)
            self._opened()
        except BaseException:
            self.obj.close()
            raise

    def _load(self, use_fentry: bool) -> BpfObject:
        obj = BpfObject.open(self.OBJECT)
        try:
            self._configure(obj, use_fentry)
            obj.load()
            return obj
        except LibbpfError:
            obj.close()
            if use_fentry and self._fall_back_to_kprobes():
                return self._load(False)
            raise
        except BaseException:
            obj.close()
            raise

    def _configure(self, obj: BpfObject, use_fentry: bool) -> None:
        """Set the opened object's rodata, map sizes and programs before load."""
        raise NotImplementedError

    def _attach(self) -> None:
        raise NotImplementedError

    def _opened(self) -> None:
        """Once attached: open the ring buffers the tracer polls (none by default)."""

    def _fall_back_to_kprobes(self) -> bool:
        """fentry did not load: whether to load again with kprobes (and note it)."""
        return False

    def detach(self) -> None:
        """No new records; maps and ring buffers stay readable."""
        self.obj.detach()

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
