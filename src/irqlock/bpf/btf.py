"""The BTF of an opened BPF object, and the check that a Python mirror of one of its C structs
still matches it.

Python reads maps and ring-buffer records through ``ctypes`` copies of the structs in the
programs' headers.  A field added in C and not in Python would shift every later field read
in Python, silently; so each mirror names its C struct and is compared, member by member
(name, offset, size, nested structs), with the object's BTF when a map or ring buffer of it
is opened.
"""

from __future__ import annotations

import ctypes
from typing import ClassVar

from irqlock.bpf.libbpf import (
    BTF_KIND_ARRAY,
    BTF_KIND_DATASEC,
    BTF_KIND_STRUCT,
    BtfType,
    Libbpf,
    _BtfVarSecinfo,
)
from irqlock.errors import IrqlockError


class Mirror(ctypes.Structure):
    """A ``ctypes`` copy of the C struct ``c_struct`` of a BPF header."""

    c_struct: ClassVar[str] = ""


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("offset", ctypes.c_uint32)]


class _BtfArray(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("index_type", ctypes.c_uint32),
                ("nelems", ctypes.c_uint32)]


class MirrorMismatch(IrqlockError):
    """A Python mirror does not match its C struct."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}: the C struct and its Python mirror must change together "
                         "(a rebuilt object with an old irqlock?)")


class Btf:
    """Types of one object's BTF, as far as mirrors need them."""

    def __init__(self, lib: Libbpf, ptr: int) -> None:
        self._lib = lib.lib
        self._ptr = ptr

    def struct_id(self, name: str) -> int:
        """The id of ``struct name``; 0 if the object has none."""
        found = int(self._lib.btf__find_by_name_kind(self._ptr, name.encode(), BTF_KIND_STRUCT))
        return max(found, 0)

    def _type(self, type_id: int) -> BtfType:
        return self._lib.btf__type_by_id(self._ptr, type_id).contents  # type: ignore[no-any-return]

    def resolve(self, type_id: int) -> int:
        """The type under typedefs and qualifiers."""
        return int(self._lib.btf__resolve_type(self._ptr, type_id))

    def kind(self, type_id: int) -> int:
        return int(self._type(type_id).info >> 24) & 0x1F

    def name(self, type_id: int) -> str:
        return str(self._lib.btf__name_by_offset(self._ptr, self._type(type_id).name_off).decode())

    def size(self, type_id: int) -> int:
        return int(self._lib.btf__resolve_size(self._ptr, type_id))

    def members(self, struct_id: int) -> list[tuple[str, int, int]]:
        """(name, byte offset, type id) of a struct's members."""
        t = self._type(struct_id)
        kind_flag, vlen = t.info >> 31, t.info & 0xFFFF
        first = ctypes.addressof(t) + ctypes.sizeof(BtfType)
        members = (_BtfMember * vlen).from_address(first)
        result = []
        for m in members:
            bits = m.offset & 0xFFFFFF if kind_flag else m.offset
            name = self._lib.btf__name_by_offset(self._ptr, m.name_off).decode()
            result.append((name, bits // 8, self.resolve(m.type)))
        return result

    def array_element(self, array_id: int) -> int:
        t = self._type(array_id)
        info = _BtfArray.from_address(ctypes.addressof(t) + ctypes.sizeof(BtfType))
        return self.resolve(info.type)

    def datasec_vars(self, section: str) -> dict[str, tuple[int, int]]:
        """name -> (offset, size) of the variables in a data section ({} if there is none)."""
        sec_id = int(self._lib.btf__find_by_name_kind(self._ptr, section.encode(),
                                                      BTF_KIND_DATASEC))
        if sec_id < 0:
            return {}
        sec = self._type(sec_id)
        first = ctypes.addressof(sec) + ctypes.sizeof(BtfType)
        infos = (_BtfVarSecinfo * (sec.info & 0xFFFF)).from_address(first)
        return {self.name(info.type): (info.offset, info.size) for info in infos}


def mismatches(btf: Btf, type_id: int, mirror: type[ctypes.Structure]) -> list[str]:
    """How ``mirror`` differs from BTF type ``type_id`` (a struct): [] if it matches."""
    type_id = btf.resolve(type_id)
    c_name = btf.name(type_id)
    if btf.kind(type_id) != BTF_KIND_STRUCT:
        return [f"{c_name or 'the C type'} is not a struct"]
    problems = []
    if btf.size(type_id) != ctypes.sizeof(mirror):
        problems.append(f"struct {c_name} is {btf.size(type_id)} bytes, "
                        f"{mirror.__name__} {ctypes.sizeof(mirror)}")
    c_members = {name: (offset, member_id) for name, offset, member_id in btf.members(type_id)}
    fields = {field[0]: field[1] for field in mirror._fields_}
    for name in c_members.keys() - fields.keys():
        problems.append(f"struct {c_name} has {name}, {mirror.__name__} does not")
    for name in fields.keys() - c_members.keys():
        problems.append(f"{mirror.__name__} has {name}, struct {c_name} does not")
    for name, field_type in fields.items():
        if name not in c_members:
            continue
        offset, member_id = c_members[name]
        field = getattr(mirror, name)
        if (field.offset, field.size) != (offset, btf.size(member_id)):
            problems.append(f"{c_name}.{name} is at {offset} ({btf.size(member_id)} bytes), "
                            f"in {mirror.__name__} at {field.offset} ({field.size} bytes)")
            continue
        problems += _nested_mismatches(btf, member_id, field_type)
    return problems


def _nested_mismatches(btf: Btf, member_id: int, field_type: type) -> list[str]:
    """A member that is a struct (or an array of them) is compared with its mirror too."""
    while btf.kind(member_id) == BTF_KIND_ARRAY and hasattr(field_type, "_type_"):
        member_id, field_type = btf.array_element(member_id), field_type._type_
    if btf.kind(member_id) == BTF_KIND_STRUCT and issubclass(field_type, ctypes.Structure):
        return mismatches(btf, member_id, field_type)
    return []


def check_mirror(btf: Btf, type_id: int, mirror: type[Mirror], where: str) -> None:
    """Raise MirrorMismatch, naming the first difference, unless ``mirror`` matches."""
    if mirror.c_struct and btf.name(btf.resolve(type_id)) != mirror.c_struct:
        problems = [f"it is struct {btf.name(btf.resolve(type_id))}, "
                    f"{mirror.__name__} mirrors struct {mirror.c_struct}"]
    else:
        problems = mismatches(btf, type_id, mirror)
    if problems:
        raise MirrorMismatch(f"{where}: {problems[0]}")
