"""perf_event_open(2) for the software events irqlock samples with (cpu-clock)."""

from __future__ import annotations

import ctypes
import os

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_PERF_FLAG_FD_CLOEXEC = 1 << 3


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr, PERF_ATTR_SIZE_VER5 layout (112 bytes)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),  # bitfield: disabled, inherit, ..., freq (bit 10)
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("reserved_2", ctypes.c_uint16),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_cpu_clock(cpu: int, period_ns: int) -> int:
    """A cpu-clock event on ``cpu`` firing every ``period_ns``; returns its fd (raises OSError)."""
    attr = PerfEventAttr()
    attr.type = PERF_TYPE_SOFTWARE
    attr.size = ctypes.sizeof(attr)
    attr.config = PERF_COUNT_SW_CPU_CLOCK
    attr.sample_period = period_ns
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise OSError(0, f"perf_event_open: unsupported architecture {os.uname().machine}")
    # syscall(2) is variadic: pass every argument as a full long, or the upper
    # halves of the int ones (pid, cpu, group_fd, flags) are whatever was in the register.
    long = ctypes.c_long
    fd = _libc.syscall(long(nr), ctypes.byref(attr), long(-1), long(cpu), long(-1),
                       ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open(cpu-clock, cpu {cpu}): {os.strerror(err)}")
    return int(fd)
