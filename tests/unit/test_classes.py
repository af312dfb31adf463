"""Lock classes named and folded (classes.py), and lock records added up per class."""

from __future__ import annotations

import pytest

from irqlock.analysis.histograms import LOGLIN_BUCKETS, loglinear_index
from irqlock.kernel import kallsyms
from irqlock.kernel.kallsyms import Kallsyms
from irqlock.tracers.classes import CacheInfoStruct, ClassNames, LockClassStruct
from irqlock.tracers.locks import Holder, LockRecord, Timing, by_class
from tests.unit.test_kallsyms import PER_CPU_TEXT

BASES = [0xff11_0000_7dc0_0000, 0xff11_0000_7de0_0000]
FOO, KMALLOC = 0xff11_0000_0100_0000, 0xff11_0000_0200_0000


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> ClassNames:
    monkeypatch.setattr(kallsyms, "possible_cpus", lambda: 2)
    monkeypatch.setattr(kallsyms, "per_cpu_bases", lambda at, cpus: BASES)
    caches = [(FOO.to_bytes(8, "little"),
               bytes(CacheInfoStruct(name=b"irqlock_fx_foo", size=64, object_size=56,
                                     refcount=1, flags=1))),
              (KMALLOC.to_bytes(8, "little"),
               bytes(CacheInfoStruct(name=b"kmalloc-64", size=64, object_size=64, refcount=1)))]
    return ClassNames.from_map(caches, Kallsyms(PER_CPU_TEXT))


def test_slab_class_is_cache_and_offset(names: ClassNames) -> None:
    cls = names.of(LockClassStruct(cache=FOO, where=8))
    assert (cls.label, cls.merged) == ("&irqlock_fx_foo+0x8", False)
    assert cls.key == names.of(LockClassStruct(cache=FOO, where=8)).key
    assert cls.key != names.of(LockClassStruct(cache=FOO, where=16)).key


def test_kmalloc_cache_is_merged(names: ClassNames) -> None:
    cls = names.of(LockClassStruct(cache=KMALLOC, where=0))
    assert (cls.label, cls.merged) == ("&kmalloc-64+0x0", True)


def test_per_cpu_copies_are_one_class(names: ClassNames) -> None:
    zero = names.of(LockClassStruct(cache=0, where=BASES[0] + 0x29e40))
    one = names.of(LockClassStruct(cache=0, where=BASES[1] + 0x29e40))
    assert zero.key == one.key and zero.label == "runqueues"
    member = names.of(LockClassStruct(cache=0, where=BASES[1] + 0x29e48))
    assert member.label == "runqueues+0x8" and member.key != zero.key


def test_raw_tag_keeps_a_class_apart_from_its_sleeping_lock(names: ClassNames) -> None:
    sleeping = names.of(LockClassStruct(cache=FOO, where=8))
    raw = names.of(LockClassStruct(cache=FOO, where=8 | 1))
    assert sleeping.key != raw.key and sleeping.label == raw.label


def test_static_and_unknown_locks_are_their_own_class(names: ClassNames) -> None:
    assert names.of(LockClassStruct(cache=0, where=0xffffffff82000000)).label == "jiffies_lock"
    unknown = names.of(LockClassStruct(cache=1, where=0xff11_0000_1234_5678))  # anonymous
    assert unknown.label == "0xff11000012345678" and unknown.key[0] == "addr"


def timing(values: list[int]) -> Timing:
    counts = [0] * LOGLIN_BUCKETS
    for v in values:
        counts[loglinear_index(v)] += 1
    return Timing.of(sum(values), max(values), counts)


def test_records_add_up_per_class(names: ClassNames) -> None:
    cls = names.of(LockClassStruct(cache=FOO, where=8))
    holder = Holder(pid=7, tgid=7, comm="a", acquisitions=3, first_stack=[])
    records = [LockRecord(addr=FOO + 8 + 64 * i, name=None, site=None, kind="spinlock",
                          acquisitions=3, contended=0, hold=timing([100, 200, 300 * (i + 1)]),
                          wait=Timing.of(0, 0, [0] * LOGLIN_BUCKETS), holders=[holder], cls=cls)
               for i in range(2)]
    (row,) = by_class(records)
    assert (row.locks, row.acquisitions, row.label) == (2, 6, "&irqlock_fx_foo+0x8")
    assert row.hold.count == 6 and row.hold.total == 1500 and row.hold.max == 600
    assert row.hold.p50 <= row.hold.p99 <= row.hold.max
    assert [(h.pid, h.acquisitions) for h in row.holders] == [(7, 6)]
