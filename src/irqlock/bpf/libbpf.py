"""A thin, typed ctypes binding over the system libbpf (Debian: libbpf1).

Only the calls irqlock needs are declared.  Every function that can fail is
wrapped so that a failure raises :class:`LibbpfError` carrying errno and the
lines libbpf logged while the call ran (the verifier log on a failed load).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from irqlock.errors import IrqlockError

LIBBPF_SONAME = "libbpf.so.1"

_VA_LIST_SIZE = 24  # x86-64 SysV: gp_offset, fp_offset, overflow_arg_area, reg_save_area
# enum libbpf_print_level
_PRINT_WARN, _PRINT_INFO, _PRINT_DEBUG = 0, 1, 2
# BTF kinds we parse (uapi linux/btf.h)
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_FUNC = 12
BTF_KIND_DATASEC = 15


# The verifier's closing lines, after the one that says why it refused
_VERIFIER_TRAILER = re.compile(r"processed \d+ insns|verification time|stack depth|\s*$")


def rejection_reason(log: list[str]) -> str:
    """Why the verifier refused a program, from libbpf's log of a failed load: the program
    and the log's last line before its statistics ("tick_ring: invalid bpf_context access
    off=136 size=2"); "" if the log holds no verifier log."""
    text = "".join(log)
    failed = re.search(r"prog '([^']+)': BPF program load failed", text)
    begin, end = text.find("-- BEGIN PROG LOAD LOG --"), text.find("-- END PROG LOAD LOG --")
    if not failed or begin < 0 or end < begin:
        return ""
    lines = text[begin:end].splitlines()[1:]
    said = [line.strip() for line in lines if not _VERIFIER_TRAILER.match(line)]
    return f"{failed.group(1)}: {said[-1]}" if said else ""


class LibbpfError(IrqlockError):
    """A libbpf call failed; message holds the call, errno text (and, for a program the
    verifier refused, why) on its first line, then libbpf's log."""

    def __init__(self, what: str, err: int, log: list[str]) -> None:
        self.errno = abs(err)
        self.log = log
        detail = os.strerror(self.errno) if self.errno else "failed"
        message = f"{what}: {detail}"
        reason = rejection_reason(log)
        if reason:
            message += f" ({reason})"
        if log:
            message += "\n" + "".join(log).rstrip()
        super().__init__(message)


class BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size", ctypes.c_uint32)]


class _BtfVarSecinfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32)]


class BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info from uapi linux/bpf.h, up to verified_insns (5.16)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
    ]


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
RINGBUF_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (_P, [_PRINT_FN]),
    "libbpf_get_error": (ctypes.c_long, [_P]),
    "libbpf_major_version": (ctypes.c_uint32, []),
    "libbpf_minor_version": (ctypes.c_uint32, []),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
    "bpf_object__open_file": (_P, [ctypes.c_char_p, _P]),
    "bpf_object__load": (ctypes.c_int, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_object__btf": (_P, [_P]),
    "bpf_object__find_program_by_name": (_P, [_P, ctypes.c_char_p]),
    "bpf_object__find_map_by_name": (_P, [_P, ctypes.c_char_p]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_program__name": (ctypes.c_char_p, [_P]),
    "bpf_program__fd": (ctypes.c_int, [_P]),
    "bpf_program__set_autoload": (ctypes.c_int, [_P, ctypes.c_bool]),
    "bpf_program__autoload": (ctypes.c_bool, [_P]),
    "bpf_program__set_attach_target": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_char_p]),
    "bpf_program__attach": (_P, [_P]),
    "bpf_program__attach_kprobe": (_P, [_P, ctypes.c_bool, ctypes.c_char_p]),
    "bpf_program__attach_perf_event": (_P, [_P, ctypes.c_int]),
    "bpf_link__destroy": (ctypes.c_int, [_P]),
    "bpf_map__fd": (ctypes.c_int, [_P]),
    "bpf_map__set_max_entries": (ctypes.c_int, [_P, ctypes.c_uint32]),
    "bpf_map__set_type": (ctypes.c_int, [_P, ctypes.c_int]),
    "bpf_map__initial_value": (_P, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "bpf_map__key_size": (ctypes.c_uint32, [_P]),
    "bpf_map__value_size": (ctypes.c_uint32, [_P]),
    "bpf_map__lookup_elem": (ctypes.c_int, [_P, _P, ctypes.c_size_t, _P, ctypes.c_size_t, ctypes.c_uint64]),
    "bpf_map__get_next_key": (ctypes.c_int, [_P, _P, _P, ctypes.c_size_t]),
    "bpf_map__delete_elem": (ctypes.c_int, [_P, _P, ctypes.c_size_t, ctypes.c_uint64]),
    "bpf_map__update_elem": (ctypes.c_int, [_P, _P, ctypes.c_size_t, _P, ctypes.c_size_t,
                                            ctypes.c_uint64]),
    "bpf_map__max_entries": (ctypes.c_uint32, [_P]),
    "bpf_map__type": (ctypes.c_int, [_P]),
    "bpf_map_lookup_batch": (ctypes.c_int, [ctypes.c_int, _P, _P, _P, _P,
                                            ctypes.POINTER(ctypes.c_uint32), _P]),
    "bpf_obj_get_info_by_fd": (ctypes.c_int, [ctypes.c_int, _P, ctypes.POINTER(ctypes.c_uint32)]),
    "btf__parse": (_P, [ctypes.c_char_p, _P]),
    "btf__free": (None, [_P]),
    "btf__find_by_name_kind": (ctypes.c_int32, [_P, ctypes.c_char_p, ctypes.c_uint32]),
    "btf__type_by_id": (ctypes.POINTER(BtfType), [_P, ctypes.c_uint32]),
    "btf__name_by_offset": (ctypes.c_char_p, [_P, ctypes.c_uint32]),
    "btf__resolve_type": (ctypes.c_int, [_P, ctypes.c_uint32]),
    "btf__resolve_size": (ctypes.c_int64, [_P, ctypes.c_uint32]),
    "bpf_map__btf_key_type_id": (ctypes.c_uint32, [_P]),
    "bpf_map__btf_value_type_id": (ctypes.c_uint32, [_P]),
    "ring_buffer__new": (_P, [ctypes.c_int, RINGBUF_SAMPLE_FN, _P, _P]),
    "ring_buffer__poll": (ctypes.c_int, [_P, ctypes.c_int]),
    "ring_buffer__free": (None, [_P]),
}


class Libbpf:
    """The loaded libbpf.so.1 with typed signatures and a captured log."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
        except OSError as exc:
            raise IrqlockError(
                f"cannot load {LIBBPF_SONAME} ({exc}); install it: apt-get install libbpf1"
            ) from None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        self._log: list[str] = []
        self._log_lock = threading.Lock()
        self._verbose = False
        # Keep the callback object alive as long as libbpf may call it.
        self._print_cb = _PRINT_FN(self._on_print)
        self.lib.libbpf_set_print(self._print_cb)

    def _on_print(self, level: int, fmt: bytes, va_list: int) -> int:
        # libbpf's debug lines run to thousands per load: formatting them through ctypes
        # costs seconds under emulation, so only what is kept gets formatted.
        if level > _PRINT_INFO and not self._verbose:
            return 0
        # On x86-64 a va_list argument decays to a pointer to a 24-byte struct; copying
        # the struct is va_copy.  A first pass on a copy measures the message (a verifier
        # log can run to megabytes), the second formats it whole.
        copy = ctypes.create_string_buffer(ctypes.string_at(va_list, _VA_LIST_SIZE),
                                           _VA_LIST_SIZE)
        size = self._vsnprintf(None, 0, fmt, ctypes.addressof(copy))
        buf = ctypes.create_string_buffer(max(size, 0) + 1)
        self._vsnprintf(buf, len(buf), fmt, va_list)
        with self._log_lock:
            self._log.append(buf.value.decode(errors="replace"))
        return 0

    def set_verbose(self, verbose: bool) -> None:
        self._verbose = verbose

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect what libbpf logs while the block runs."""
        with self._log_lock:
            start = len(self._log)
        captured: list[str] = []
        try:
            yield captured
        finally:
            with self._log_lock:
                captured.extend(self._log[start:])
                del self._log[start:]

    def call(self, what: str, fn: Callable[..., int], *args: Any) -> int:
        """Call an int-returning libbpf function; raise LibbpfError on < 0."""
        with self.capture() as log:
            ret = fn(*args)
        if ret < 0:
            raise LibbpfError(what, ret, log)
        return ret

    def call_ptr(self, what: str, fn: Callable[..., int | None], *args: Any) -> int:
        """Call a pointer-returning libbpf function; raise LibbpfError on NULL."""
        with self.capture() as log:
            ctypes.set_errno(0)
            ptr = fn(*args)
            err = ctypes.get_errno()
        if not ptr:
            raise LibbpfError(what, err or errno.EINVAL, log)
        return ptr

    def version(self) -> str:
        return f"{self.lib.libbpf_major_version()}.{self.lib.libbpf_minor_version()}"


_instance: Libbpf | None = None


def libbpf() -> Libbpf:
    """The process-wide binding (libbpf's print callback is global)."""
    global _instance
    if _instance is None:
        _instance = Libbpf()
    return _instance
