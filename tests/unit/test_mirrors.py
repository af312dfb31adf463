"""The Python mirrors of the BPF headers' structs against the objects' BTF, and the headers'
numbers against src/irqlock/bpf/constants.py.  Objects are opened, not loaded: no kernel."""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import irqlock.bpf.hitcount
import irqlock.tracers.deadlock
import irqlock.tracers.irqline
import irqlock.tracers.irqoff
import irqlock.tracers.lock_maps
import irqlock.tracers.locks
from irqlock.bpf.btf import Mirror, MirrorMismatch
from irqlock.bpf.loader import BpfObject, object_path
from irqlock.tracers.lock_maps import HolderKey, HolderStruct, LockMaps

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = ("locks", "irqoff", "irqline", "hitcount")
TRACER_MODULES = (irqlock.tracers.deadlock, irqlock.tracers.lock_maps, irqlock.tracers.irqline,
                  irqlock.tracers.irqoff, irqlock.tracers.locks, irqlock.bpf.hitcount)


def every_mirror() -> list[type[Mirror]]:
    found: list[type[Mirror]] = []
    pending = list(Mirror.__subclasses__())
    while pending:
        mirror = pending.pop()
        found.append(mirror)
        pending += mirror.__subclasses__()
    return sorted(found, key=lambda m: m.__name__)


@pytest.fixture(scope="module")
def objects() -> Iterator[dict[str, BpfObject]]:
    opened = {name: BpfObject.open(name, object_path(name)) for name in OBJECTS}
    yield opened
    for obj in opened.values():
        obj.close()


def test_the_tracers_define_mirrors() -> None:
    assert TRACER_MODULES  # imported above: their mirrors are Mirror's subclasses now
    assert len(every_mirror()) >= 20


@pytest.mark.parametrize("mirror", every_mirror(), ids=lambda m: m.__name__)
def test_every_mirror_matches_its_struct_in_an_object(
        objects: dict[str, BpfObject], mirror: type[Mirror]) -> None:
    holders = [obj for obj in objects.values() if obj.btf().struct_id(mirror.c_struct)]
    assert holders, f"no object has struct {mirror.c_struct}"
    for obj in holders:
        obj.check_record(mirror)  # raises MirrorMismatch with the first difference


def test_a_mirror_missing_a_field_fails_at_map_open(objects: dict[str, BpfObject]) -> None:
    class HolderWithoutTgid(Mirror):  # struct holder before tgid was added in C: the same
        c_struct = "holder"         # size (alignment), comm and stack 4 bytes early
        _fields_ = tuple(f for f in HolderStruct._fields_ if f[0] != "tgid")

    assert ctypes.sizeof(HolderWithoutTgid) == ctypes.sizeof(HolderStruct)
    with pytest.raises(MirrorMismatch, match="map holders's value: struct holder has tgid, "
                                             "HolderWithoutTgid does not"):
        objects["locks"].map("holders", value=HolderWithoutTgid)


def test_a_mirror_of_another_size_fails_at_map_open(objects: dict[str, BpfObject]) -> None:
    class HolderWithoutAcquisitions(Mirror):
        c_struct = "holder"
        _fields_ = HolderStruct._fields_[1:]

    with pytest.raises(MirrorMismatch, match=r"map holders's value is \d+ bytes, "
                                             r"HolderWithoutAcquisitions \d+"):
        objects["locks"].map("holders", value=HolderWithoutAcquisitions)


def test_a_mirror_with_fields_swapped_fails_though_its_size_is_right(
        objects: dict[str, BpfObject]) -> None:
    fields = HolderStruct._fields_  # fields 1 and 2, tgid and stack_bytes: 4 bytes each

    class HolderSwapped(Mirror):
        c_struct = "holder"
        _fields_ = (fields[0], fields[2], fields[1], *fields[3:])

    assert ctypes.sizeof(HolderSwapped) == ctypes.sizeof(HolderStruct)
    with pytest.raises(MirrorMismatch, match=r"holder\.\w+ is at \d+ \(4 bytes\), "
                                             r"in HolderSwapped at \d+"):
        objects["locks"].map("holders", key=HolderKey, value=HolderSwapped)


def test_a_nested_struct_is_compared_too(objects: dict[str, BpfObject]) -> None:
    class ShortStack(Mirror):  # the nested lock_class, a field renamed
        c_struct = "lock_class"
        _fields_ = (("cache", ctypes.c_uint64), ("offset", ctypes.c_uint64))

    class HeldLockRenamed(Mirror):
        c_struct = "held_lock"
        _fields_ = tuple((f[0], ShortStack if f[0] == "cls" else f[1])
                         for f in irqlock.tracers.lock_maps.HeldLockStruct._fields_)

    with pytest.raises(MirrorMismatch, match="lock_class has where, ShortStack does not"):
        objects["locks"].check_record(HeldLockRenamed)


def test_a_record_of_another_struct_is_refused(objects: dict[str, BpfObject]) -> None:
    class WrongName(Mirror):
        c_struct = "holder"
        _fields_ = HolderKey._fields_

    with pytest.raises(MirrorMismatch, match="it is struct holder_key, WrongName mirrors "
                                             "struct holder"):
        objects["locks"].map("holders", key=WrongName)


def test_constants_are_generated_from_the_headers() -> None:
    spec = importlib.util.spec_from_file_location("gen_constants", ROOT / "scripts" / "gen_constants.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    committed = (ROOT / "src" / "irqlock" / "bpf" / "constants.py").read_text()
    assert generator.render() == committed, "run scripts/gen_constants.py"


def test_header_expressions_are_evaluated() -> None:
    spec = importlib.util.spec_from_file_location("gen_constants", ROOT / "scripts" / "gen_constants.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    text = ("#define A 3\n#define B ((A - 1) * 8)\t/* sixteen */\n#define TAG 1ULL\n"
            "enum e { X = 0, /* x */ Y = 2 };\n")
    assert generator.header_constants(text, {}) == {"A": 3, "B": 16, "TAG": 1, "X": 0, "Y": 2}


def test_every_lock_map_opens_with_its_mirrors(objects: dict[str, BpfObject]) -> None:
    """The typed view of locks.bpf.o (tracers/lock_maps.py): each map matches its mirrors."""
    maps = LockMaps(objects["locks"])
    opened = [getattr(maps, name)() for name in dir(maps) if not name.startswith("_")]
    assert len(opened) == 11 and all(m.value_size > 0 for m in opened)
