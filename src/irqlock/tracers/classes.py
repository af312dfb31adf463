"""Lock classes: which locks are "logically the same", as lockdep groups them, named.

locks.bpf.c gives every lock it sees a class when it is taken: a lock inside a
slab object is (its cache, its offset in the object); any other lock is its own
class, its address.  This module names them and folds what the BPF side cannot:

- slab locks: ``&task_struct+0x8d0`` (cache and offset).  A merged cache
  (``kmalloc-64``, or a cache others were merged into) holds objects of unrelated
  types at the same offsets: the class says so (``merged``), and findings through
  it say so too;
- per-CPU locks: every CPU's copy is one class, named by the variable
  (``runqueues``, as lockdep canonicalizes them);
- static locks: their symbol (``jiffies_lock``);
- the rest (stacks, vmalloc, page allocations): the address, a class of its own.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from irqlock.bpf.btf import Mirror
from irqlock.bpf.constants import CACHE_LOCK_OFFSETS, CLASS_ANONYMOUS, RAW_LOCK_TAG
from irqlock.kernel.kallsyms import Kallsyms

# Caches that every kmalloc() of its size class shares, whatever the type.
KMALLOC_PREFIXES = ("kmalloc-", "dma-kmalloc-")
_PER_CPU_COPY = re.compile(r"\[\d+\]")


class LockClassStruct(Mirror):
    """struct lock_class (locks.h)."""

    c_struct = "lock_class"
    _fields_ = (("cache", ctypes.c_uint64), ("where", ctypes.c_uint64))


class CacheInfoStruct(Mirror):
    """struct cache_info (locks.h)."""

    c_struct = "cache_info"
    _fields_ = (("name", ctypes.c_char * 32), ("size", ctypes.c_uint32),
                ("object_size", ctypes.c_uint32), ("refcount", ctypes.c_int32),
                ("flags", ctypes.c_uint32), ("nr_lock_offsets", ctypes.c_uint32),
                ("lock_offsets", ctypes.c_uint32 * CACHE_LOCK_OFFSETS))


@dataclass(frozen=True)
class SlabCache:
    name: str
    refcount: int  # > 1: other caches were merged into it

    @property
    def merged(self) -> bool:
        """Objects of unrelated types may share it: a class in it may be several."""
        return self.refcount > 1 or self.name.startswith(KMALLOC_PREFIXES)


@dataclass(frozen=True)
class LockClass:
    """One class: `key` is what makes two classes one, `label` how it is shown."""

    key: tuple[Any, ...]
    label: str
    merged: bool = False  # in a merged slab cache: maybe several types' locks

    def to_json(self) -> dict[str, Any]:
        return {"class": self.label, "merged_cache": self.merged}


def slab_label(cache: str, offset: int) -> str:
    return f"&{cache}+{offset:#x}"


class ClassNames:
    """Names classes from the caches the BPF side met and from kallsyms."""

    def __init__(self, caches: dict[int, SlabCache], kallsyms: Kallsyms) -> None:
        self.caches = caches
        self.kallsyms = kallsyms

    @classmethod
    def from_map(cls, items: Iterable[tuple[bytes, bytes]], kallsyms: Kallsyms) -> ClassNames:
        caches = {}
        for key, value in items:
            info = CacheInfoStruct.from_buffer_copy(value)
            caches[int.from_bytes(key, "little")] = SlabCache(
                name=info.name.decode(errors="replace"), refcount=info.refcount)
        return cls(caches, kallsyms)

    def of(self, raw: LockClassStruct) -> LockClass:
        """The class the BPF side computed, folded and named.  (On PREEMPT_RT a raw
        spinlock's class keeps its tag in the key, apart from a sleeping lock that
        starts at the same place; the label is the same.)"""
        where = raw.where & ~RAW_LOCK_TAG
        if raw.cache > CLASS_ANONYMOUS:
            cache = self.caches.get(raw.cache)
            name = cache.name if cache else f"cache@{raw.cache:#x}"
            return LockClass(key=("slab", raw.cache, raw.where),
                             label=slab_label(name, where),
                             merged=cache.merged if cache else False)
        symbol = self.kallsyms.data_name(where)
        if symbol is None:
            return LockClass(key=("addr", raw.where), label=hex(where))
        if _PER_CPU_COPY.search(symbol):  # one class for every CPU's copy
            variable = _PER_CPU_COPY.sub("", symbol, count=1)
            return LockClass(key=("percpu", variable, raw.where & RAW_LOCK_TAG), label=variable)
        return LockClass(key=("static", raw.where), label=symbol)
