"""Loader for irqlock's CO-RE BPF objects: open, configure, load, attach, poll, close.

The life of a tool's BPF object, as in libbpf-tools::

    with BpfObject.open("hitcount") as obj:
        obj.set_rodata(target_comm=b"fx_", target_comm_len=3)   # const volatile
        probe = obj.plan_function("hit", "_raw_spin_lock_irqsave", features)
        obj.load()                                               # verifier log on failure
        obj.attach_planned()
        ring = obj.open_ringbuf("events", HitEvent, handler)     # mirror checked
        obj.poll(ring, timeout_ms=100)
    # links destroyed and object closed on every exit path

Each traced function has two programs in the object, ``<base>_fentry`` and
``<base>_kprobe``; the loader keeps the one the kernel supports (fentry when
it can attach to that function, else kprobe) and disables the other's autoload.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType

from irqlock.bpf.btf import Btf, Mirror, MirrorMismatch, check_mirror
from irqlock.bpf.libbpf import (
    RINGBUF_SAMPLE_FN,
    BpfProgInfo,
    Libbpf,
    LibbpfError,
    libbpf,
)
from irqlock.errors import IrqlockError
from irqlock.kernel.sysmap import preempt_count_source

DETACH_WAVE = 8  # links destroyed at once (see BpfObject.detach)
POLL_BATCH = 1024  # records per poll() at most, so a flood cannot keep it from returning
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_LRU_HASH = 9
READ_BATCH = 4096  # hash map entries per lookup-batch call, at most ...
READ_BATCH_BYTES = 1 << 20  # ... and at most this many bytes of values
_BATCH_FULL = -7  # what the sample callback returns to end a poll early (not an errno used)


# The objects that read preempt_count (see preempt_count.h), built for System.map too, and
# the one that can run without it (no softirq-off sampling)
PREEMPT_COUNT_OBJECTS = ("irqoff", "locks")
RUNS_WITHOUT_PREEMPT_COUNT = ("irqoff",)


def object_path(name: str) -> Path:
    """Path of the installed CO-RE object ``<name>.bpf.o``."""
    path = Path(str(resources.files("irqlock.bpf").joinpath(f"{name}.bpf.o")))
    if not path.exists():
        raise IrqlockError(
            f"BPF object {path} is missing: build it with 'make -C src/irqlock/bpf' "
            "(or reinstall irqlock)"
        )
    return path


@dataclass(frozen=True)
class Attachment:
    """What the loader chose for one traced function."""

    program: str
    function: str
    method: str  # "fentry" | "fexit" | "kprobe" | "kretprobe"


class Map:
    """A BPF map of a loaded object: lookups and iteration by raw bytes."""

    def __init__(self, lib: Libbpf, ptr: int, name: str) -> None:
        self._lib = lib
        self._ptr = ptr
        self.name = name
        self.key_size = int(lib.lib.bpf_map__key_size(ptr))
        self.value_size = int(lib.lib.bpf_map__value_size(ptr))

    @property
    def max_entries(self) -> int:
        return int(self._lib.lib.bpf_map__max_entries(self._ptr))

    @property
    def fd(self) -> int:
        return int(self._lib.lib.bpf_map__fd(self._ptr))

    def memlock_bytes(self) -> int:
        """The memory the kernel charges for this map (fdinfo's memlock); if it cannot be
        read, its entries' keys and values."""
        try:
            for line in Path(f"/proc/self/fdinfo/{self.fd}").read_text().splitlines():
                if line.startswith("memlock:"):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return self.max_entries * (self.key_size + self.value_size)

    def lookup(self, key: bytes) -> bytes | None:
        value = ctypes.create_string_buffer(self.value_size)
        ret = self._lib.lib.bpf_map__lookup_elem(
            self._ptr, key, len(key), value, self.value_size, 0
        )
        return value.raw if ret == 0 else None

    def lookup_per_cpu(self, key: bytes) -> list[bytes]:
        """A per-CPU map's value on every possible CPU (empty if the key is not there)."""
        cpus = int(self._lib.lib.libbpf_num_possible_cpus())
        stride = (self.value_size + 7) // 8 * 8  # the kernel pads each CPU's copy to 8 bytes
        values = ctypes.create_string_buffer(stride * cpus)
        ret = self._lib.lib.bpf_map__lookup_elem(self._ptr, key, len(key), values, len(values), 0)
        if ret:
            return []
        return [values.raw[i * stride:i * stride + self.value_size] for i in range(cpus)]

    def update(self, key: bytes, value: bytes) -> None:
        ret = self._lib.lib.bpf_map__update_elem(self._ptr, key, len(key), value, len(value), 0)
        if ret:
            raise LibbpfError(f"update map {self.name}", ret, [])

    def delete(self, key: bytes) -> bool:
        """Remove an entry; False if it was not there."""
        return bool(self._lib.lib.bpf_map__delete_elem(self._ptr, key, len(key), 0) == 0)

    def keys(self) -> Iterator[bytes]:
        key = ctypes.create_string_buffer(self.key_size)
        prev: ctypes.Array[ctypes.c_char] | None = None
        while self._lib.lib.bpf_map__get_next_key(self._ptr, prev, key, self.key_size) == 0:
            yield key.raw
            prev = ctypes.create_string_buffer(key.raw, self.key_size)

    def count(self) -> int:
        """Entries now (walks the keys: a hash map keeps no count user space can read)."""
        return sum(1 for _key in self.keys())

    def items_singly(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry, a lookup each: where kprobe programs must keep running while we read.
        A map lookup from user space holds the CPU's kprobe programs off (bpf_prog_active)
        while it copies: one value here, where a batch holds them off for the whole batch --
        and on PREEMPT_RT, were our process preempted meanwhile, every other task's calls on
        that CPU would go unseen."""
        for key in self.keys():  # (a key walk does not hold them off)
            value = self.lookup(key)
            if value is not None:  # the entry may have gone meanwhile
                yield key, value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry; a hash map is read a batch at a time (a syscall per entry is slow),
        each batch handed on before the next is read (a big map is never all in memory)."""
        if self._lib.lib.bpf_map__type(self._ptr) in (BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH):
            batches = self._batches()
            first = next(batches, None)
            if first is not None:
                yield from first
                for batch in batches:
                    yield from batch
                return
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:  # the entry may have gone meanwhile
                yield key, value

    def _batches(self) -> Iterator[list[tuple[bytes, bytes]]]:
        """A hash map's entries by BPF_MAP_LOOKUP_BATCH, a batch at a time; nothing at all if
        the kernel cannot do it (the caller walks the keys then)."""
        size = max(1, min(READ_BATCH, READ_BATCH_BYTES // max(self.value_size, 1),
                          self.max_entries))
        token_in = ctypes.create_string_buffer(8)  # a hash map's batch token: a bucket index
        token_out = ctypes.create_string_buffer(8)
        first = True
        ks, vs = self.key_size, self.value_size
        while True:
            keys = ctypes.create_string_buffer(ks * size)
            values = ctypes.create_string_buffer(vs * size)
            count = ctypes.c_uint32(size)
            ctypes.set_errno(0)
            ret = self._lib.lib.bpf_map_lookup_batch(
                self.fd, None if first else token_in, token_out, keys, values,
                ctypes.byref(count), None)
            err = ctypes.get_errno() if ret else 0
            if ret and err == errno.ENOSPC and size < self.max_entries:
                size = min(size * 2, self.max_entries)  # a bucket held more than a batch
                continue
            if ret and err != errno.ENOENT:
                if first:
                    return  # no batch lookups here
                raise LibbpfError(f"read map {self.name}", -err, [])
            key_view, value_view = memoryview(keys), memoryview(values)
            yield [(key_view[i * ks:(i + 1) * ks].tobytes(), value_view[i * vs:(i + 1) * vs].tobytes())
                   for i in range(count.value)]
            if ret:  # ENOENT: that was the last batch
                return
            ctypes.memmove(token_in, token_out, 8)
            first = False


class BpfObject:
    """One opened BPF object and everything attached from it."""

    def __init__(self, name: str, lib: Libbpf, ptr: int) -> None:
        self.name = name
        self._lib = lib
        self._obj: int | None = ptr
        self._links: list[int] = []
        self._ringbufs: list[tuple[int, object]] = []
        self._plan: list[Attachment] = []
        self._handler_error: BaseException | None = None
        self._batch = 0
        self._checked: set[tuple[str, str, type[Mirror]]] = set()
        self._checked_records: set[type[Mirror]] = set()
        self.loaded = False
        # where the programs find preempt_count (PreemptCountSource.describe())
        self.preempt_count_from = "per-CPU ksym"

    # ---- open / configure ------------------------------------------------

    @classmethod
    def open(cls, name: str, path: Path | None = None) -> BpfObject:
        """Open `name`'s object; where it reads preempt_count and the kernel's kallsyms has
        no data symbols, its build that takes the addresses from System.map, or, with no
        map, the build without it (irqoff's only)."""
        lib = libbpf()
        source = preempt_count_source() if path is None and name in PREEMPT_COUNT_OBJECTS \
            else None
        build = name
        if source and source.unplaced:
            if name not in RUNS_WITHOUT_PREEMPT_COUNT:
                raise IrqlockError(f"{name}: {source.unplaced}")
            build = f"{name}.nopc"
        elif source and source.place:
            build = f"{name}.sysmap"
        file = path or object_path(build)
        ptr = lib.call_ptr(f"open BPF object {file}", lib.lib.bpf_object__open_file,
                           str(file).encode(), None)
        obj = cls(name, lib, ptr)
        if source:
            obj.preempt_count_from = source.describe()
            if source.place:
                obj.set_rodata(**source.place.rodata())
        return obj

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def _handle(self) -> int:
        if self._obj is None:
            raise IrqlockError(f"BPF object {self.name} is closed")
        return self._obj

    def _program(self, name: str) -> int:
        return self._lib.call_ptr(f"{self.name}: no program {name}",
                                  self._lib.lib.bpf_object__find_program_by_name,
                                  self._handle, name.encode())

    def _map_ptr(self, name: str) -> int:
        return self._lib.call_ptr(f"{self.name}: no map {name}",
                                  self._lib.lib.bpf_object__find_map_by_name,
                                  self._handle, name.encode())

    def program_names(self) -> list[str]:
        names = []
        prog = self._lib.lib.bpf_object__next_program(self._handle, None)
        while prog:
            names.append(self._lib.lib.bpf_program__name(prog).decode())
            prog = self._lib.lib.bpf_object__next_program(self._handle, prog)
        return names

    def _section_data(self, section: str) -> tuple[int, int]:
        """(address, size) of a data section: its initial value before load, live memory after."""
        size = ctypes.c_size_t()
        ptr = self._lib.lib.bpf_map__initial_value(self._map_ptr(section), ctypes.byref(size))
        if not ptr:
            raise IrqlockError(f"{self.name}: section {section} has no data")
        return int(ptr), size.value

    def set_rodata(self, **values: int | bytes) -> None:
        """Set ``const volatile`` globals before load (ints little-endian, bytes zero-padded)."""
        if self.loaded:
            raise IrqlockError(f"{self.name}: rodata can only be set before load")
        layout = self.btf().datasec_vars(".rodata")
        base, _size = self._section_data(".rodata")
        for name, value in values.items():
            if name not in layout:
                raise IrqlockError(f"{self.name}: no const volatile variable {name}")
            offset, size = layout[name]
            raw = value.to_bytes(size, "little", signed=value < 0) if isinstance(value, int) \
                else value.ljust(size, b"\0")
            if len(raw) > size:
                raise IrqlockError(f"{self.name}: value for {name} exceeds {size} bytes")
            ctypes.memmove(base + offset, raw, size)

    def read_global(self, name: str, section: str = ".bss") -> int:
        """Read an integer global: its initial value before load, the kernel's value after."""
        layout = self.btf().datasec_vars(section)
        if name not in layout:
            raise IrqlockError(f"{self.name}: no global {name} in {section}")
        offset, size = layout[name]
        if self.loaded:  # the kernel's copy, not libbpf's initial image
            data = self.map(section).lookup(bytes(4))
            if data is None:
                raise IrqlockError(f"{self.name}: cannot read {section}")
            return int.from_bytes(data[offset:offset + size], "little")
        base, _size = self._section_data(section)
        return int.from_bytes(ctypes.string_at(base + offset, size), "little")

    def set_max_entries(self, map_name: str, entries: int) -> None:
        self._lib.call(f"{self.name}: resize map {map_name}", self._lib.lib.bpf_map__set_max_entries,
                       self._map_ptr(map_name), entries)

    def set_type(self, map_name: str, map_type: int) -> None:
        """Change a map's type before load (e.g. BPF_MAP_TYPE_HASH to LRU_HASH)."""
        self._lib.call(f"{self.name}: set type of map {map_name}", self._lib.lib.bpf_map__set_type,
                       self._map_ptr(map_name), map_type)

    def plan_function(self, base: str, function: str, use_fentry: bool,
                      ret: bool = False) -> Attachment:
        """Pick fentry/fexit or kprobe/kretprobe for program pair ``base`` on ``function``."""
        entry, fallback = ("fexit", "kretprobe") if ret else ("fentry", "kprobe")
        keep, drop = (entry, fallback) if use_fentry else (fallback, entry)
        prog = self._program(f"{base}_{keep}")
        self._lib.lib.bpf_program__set_autoload(self._program(f"{base}_{drop}"), False)
        if use_fentry:
            self._lib.call(f"{self.name}: set {entry} target {function}",
                           self._lib.lib.bpf_program__set_attach_target, prog, 0, function.encode())
        attachment = Attachment(f"{base}_{keep}", function, keep)
        self._plan.append(attachment)
        return attachment

    def disable(self, program: str) -> None:
        """Do not load ``program`` (a capability this run does not use)."""
        self._lib.lib.bpf_program__set_autoload(self._program(program), False)

    # ---- load / attach -------------------------------------------------

    def load(self) -> None:
        try:
            self._lib.call(f"load BPF object {self.name}", self._lib.lib.bpf_object__load, self._handle)
        except LibbpfError as exc:
            if exc.errno == 1:  # EPERM
                why = ("the kernel or a sandbox forbids BPF here" if os.geteuid() == 0
                       else "irqlock needs root or CAP_BPF+CAP_PERFMON")
                raise IrqlockError(f"load BPF object {self.name}: permission denied ({why})") from None
            raise
        self.loaded = True

    def _keep_link(self, link: int) -> int:
        self._links.append(link)
        return link

    def attach_planned(self) -> list[Attachment]:
        """Attach every program chosen by plan_function()."""
        lib = self._lib.lib
        for att in self._plan:
            prog = self._program(att.program)
            if att.method in ("kprobe", "kretprobe"):
                self._keep_link(self._lib.call_ptr(
                    f"attach {att.method} to {att.function}", lib.bpf_program__attach_kprobe,
                    prog, att.method == "kretprobe", att.function.encode()))
            else:
                self._keep_link(self._lib.call_ptr(
                    f"attach {att.method} to {att.function}", lib.bpf_program__attach, prog))
        return list(self._plan)

    def attach(self, program: str) -> None:
        """Attach by the program's own section (tp_btf/..., fentry/...)."""
        self._keep_link(self._lib.call_ptr(f"attach {program}", self._lib.lib.bpf_program__attach,
                                           self._program(program)))

    def attach_perf_event(self, program: str, perf_fd: int) -> None:
        """Attach to an open perf event; the link owns (and closes) the fd."""
        self._keep_link(self._lib.call_ptr(
            f"attach {program} to perf event", self._lib.lib.bpf_program__attach_perf_event,
            self._program(program), perf_fd))

    # ---- maps, ring buffers, statistics -----------------------------------

    def btf(self) -> Btf:
        return Btf(self._lib, self._lib.call_ptr(f"{self.name}: object has no BTF",
                                                 self._lib.lib.bpf_object__btf, self._handle))

    def map(self, name: str, key: type[Mirror] | None = None,
            value: type[Mirror] | None = None) -> Map:
        """Map ``name``; ``key`` and ``value``, the mirrors it is read through, are checked
        against its C types (MirrorMismatch) the first time."""
        ptr = self._map_ptr(name)
        for side, mirror in (("key", key), ("value", value)):
            if mirror is not None and (name, side, mirror) not in self._checked:
                self._check_map_mirror(ptr, name, side, mirror)
                self._checked.add((name, side, mirror))
        return Map(self._lib, ptr, name)

    def _check_map_mirror(self, ptr: int, name: str, side: str, mirror: type[Mirror]) -> None:
        lib = self._lib.lib
        size = lib.bpf_map__key_size(ptr) if side == "key" else lib.bpf_map__value_size(ptr)
        where = f"{self.name}: map {name}'s {side}"
        if size != ctypes.sizeof(mirror):
            raise MirrorMismatch(f"{where} is {size} bytes, {mirror.__name__} "
                                 f"{ctypes.sizeof(mirror)}")
        type_id = lib.bpf_map__btf_key_type_id(ptr) if side == "key" \
            else lib.bpf_map__btf_value_type_id(ptr)
        if type_id:
            check_mirror(self.btf(), type_id, mirror, where)

    def check_record(self, record: type[Mirror]) -> None:
        """Check the mirror of a ring buffer's records against the object's struct."""
        if record in self._checked_records:
            return
        btf = self.btf()
        type_id = btf.struct_id(record.c_struct)
        if not type_id:
            raise MirrorMismatch(f"{self.name}: no struct {record.c_struct}, which "
                                 f"{record.__name__} mirrors")
        check_mirror(btf, type_id, record, f"{self.name}: records of struct {record.c_struct}")
        self._checked_records.add(record)

    def open_ringbuf(self, map_name: str, record: type[Mirror],
                     handler: Callable[[bytes], None]) -> int:
        """Register ``handler`` for ``record``s of ring buffer ``map_name`` (the mirror checked
        first); returns a handle for poll."""
        self.check_record(record)
        def on_sample(_ctx: int | None, data: int, size: int) -> int:
            try:
                handler(ctypes.string_at(data, size))
            except BaseException as exc:  # must not unwind through C: re-raised by poll()
                self._handler_error = exc
                return -1
            # libbpf keeps consuming while records keep coming: under a flood one poll would
            # never return.  Stop after a batch (this record is consumed; the rest waits).
            self._batch += 1
            return _BATCH_FULL if self._batch >= POLL_BATCH else 0

        callback = RINGBUF_SAMPLE_FN(on_sample)
        rb = self._lib.call_ptr(f"open ring buffer {map_name}", self._lib.lib.ring_buffer__new,
                                self.map(map_name).fd, callback, None, None)
        self._ringbufs.append((rb, callback))  # keep the callback alive
        return rb

    def poll(self, ringbuf: int, timeout_ms: int) -> int:
        """Consume ready records, at most POLL_BATCH (waiting up to timeout_ms); returns how many."""
        self._batch = 0
        ret: int = self._lib.lib.ring_buffer__poll(ringbuf, timeout_ms)
        if ret == _BATCH_FULL:
            return self._batch
        if self._handler_error is not None:
            error, self._handler_error = self._handler_error, None
            raise error
        if ret == -4:  # EINTR: a signal arrived; the caller decides whether to stop
            return 0
        if ret < 0:
            raise LibbpfError(f"{self.name}: poll ring buffer", ret, [])
        return ret

    def _program_infos(self) -> Iterator[tuple[str, BpfProgInfo]]:
        lib = self._lib.lib
        prog = lib.bpf_object__next_program(self._handle, None)
        while prog:
            fd = lib.bpf_program__fd(prog)
            if fd >= 0:  # not loaded (autoload off) programs have no fd
                info = BpfProgInfo()
                size = ctypes.c_uint32(ctypes.sizeof(info))
                if lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) == 0:
                    yield lib.bpf_program__name(prog).decode(), info
            prog = lib.bpf_object__next_program(self._handle, prog)

    def recursion_misses(self) -> dict[str, int]:
        """Per loaded program: hits the kernel skipped because a BPF program was already running."""
        return {name: info.recursion_misses for name, info in self._program_infos()}

    def verified_insns(self) -> dict[str, int]:
        """Per loaded program: the instructions the verifier walked (what its load cost)."""
        return {name: info.verified_insns for name, info in self._program_infos()}

    def program_ids(self) -> list[int]:
        """Kernel ids of the loaded programs (to check that they are gone after close)."""
        return [info.id for _name, info in self._program_infos()]

    # ---- teardown ----------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether any program is attached now."""
        return bool(self._links)

    def detach(self) -> None:
        """Detach every program (no new records); maps and ring buffers stay readable.

        Last attached, first detached, DETACH_WAVE links at a time: each detach waits
        for the kernel's RCU grace periods (seconds for fifty links, one by one), and
        waits side by side overlap.  Within a wave the order is loose, which costs at
        most an event that starts and is never ended: such an event is never reported.
        """
        pending = list(reversed(self._links))
        self._links.clear()
        destroy = self._lib.lib.bpf_link__destroy
        with ThreadPoolExecutor(max_workers=DETACH_WAVE) as pool:
            for start in range(0, len(pending), DETACH_WAVE):
                list(pool.map(destroy, pending[start:start + DETACH_WAVE]))

    def close(self) -> None:
        """Detach everything and free the object; safe to call twice."""
        self.detach()
        for rb, _callback in self._ringbufs:
            self._lib.lib.ring_buffer__free(rb)
        self._ringbufs.clear()
        if self._obj is not None:
            self._lib.lib.bpf_object__close(self._obj)
            self._obj = None

