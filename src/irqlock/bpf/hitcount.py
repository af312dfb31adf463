"""Python side of hitcount.bpf.c: count calls of one kernel function per task.

Used by ``irqlock check`` to prove an attach method really works, and by the
kernel tests to check the loader end to end against the fixture's own count.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass

from irqlock.bpf.btf import Mirror
from irqlock.bpf.constants import TASK_COMM_LEN
from irqlock.bpf.loader import Attachment, BpfObject
from irqlock.bpf.tracer import BpfTracer


class HitEvent(Mirror):
    """struct hit_event (hitcount.h)."""

    c_struct = "hit_event"
    _fields_ = (
        ("ts_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("comm", ctypes.c_char * TASK_COMM_LEN),
    )


@dataclass(frozen=True)
class Hit:
    ts_ns: int
    pid: int
    cpu: int
    comm: str


class HitCounter(BpfTracer):
    """Counts calls of ``function`` per pid (only those with ``first_arg``, if given), and
    records each counted call of tasks whose comm starts with ``comm_prefix``."""

    OBJECT = "hitcount"
    SYMBOLIZES = False  # counts, no stacks: kallsyms is not read

    def __init__(self, function: str, use_fentry: bool, comm_prefix: str = "",
                 first_arg: int = 0, on_hit: Callable[[Hit], None] | None = None) -> None:
        self._function = function
        self._comm_prefix = comm_prefix.encode()[:TASK_COMM_LEN]
        self._first_arg = first_arg
        self._on_hit = on_hit
        self._start(use_fentry)

    def _configure(self, obj: BpfObject, use_fentry: bool) -> None:
        obj.set_rodata(target_comm=self._comm_prefix, target_comm_len=len(self._comm_prefix),
                       target_arg0=self._first_arg)
        self.attachment: Attachment = obj.plan_function("hit", self._function, use_fentry)

    def _attach(self) -> None:
        self.obj.attach_planned()

    def _opened(self) -> None:
        self._ringbuf = self.obj.open_ringbuf("events", HitEvent, self._on_record)

    def _on_record(self, data: bytes) -> None:
        event = HitEvent.from_buffer_copy(data)
        if self._on_hit:
            self._on_hit(Hit(event.ts_ns, event.pid, event.cpu, event.comm.decode(errors="replace")))

    def poll(self, timeout_ms: int = 100) -> int:
        return self.obj.poll(self._ringbuf, timeout_ms)

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.poll(max(1, int(left * 1000)))

    def counts(self) -> dict[int, int]:
        """pid -> calls seen so far."""
        return {int.from_bytes(k, "little"): int.from_bytes(v, "little")
                for k, v in self.obj.map("hits").items()}

    def stats(self) -> dict[str, int]:
        return {
            "lost_events": self.obj.read_global("lost_events"),
            "map_full": self.obj.read_global("map_full"),
            "recursion_misses": sum(self.obj.recursion_misses().values()),
        }

