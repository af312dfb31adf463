"""The kernel's own reports, read live from /dev/kmsg: hung tasks, lockups, RCU stalls, lockdep.

irqlock deadlock shows them beside its own findings, with the task they name,
so a user sees what the kernel itself concluded and what irqlock knows about it.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KMSG = Path("/dev/kmsg")
READ_SIZE = 8192
MAX_RECORDS_PER_READ = 1000

# (kind, pattern); a "task" group names the task where the message does.
_PATTERNS = [
    ("hung_task", re.compile(r"INFO: task (?P<comm>.+?):(?P<pid>\d+) blocked for more than "
                             r"(?P<seconds>\d+) seconds")),
    ("soft_lockup", re.compile(r"watchdog: BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for "
                               r"(?P<seconds>\d+)s! \[(?P<comm>.+?):(?P<pid>\d+)\]")),
    ("hard_lockup", re.compile(r"Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)")),
    ("rcu_stall", re.compile(r"rcu: INFO: \S+ (?:self-)?detected stalls? on CPU")),
    ("lockdep", re.compile(r"(possible circular locking dependency detected|"
                           r"possible recursive locking detected|"
                           r"inconsistent lock state|possible irq lock inversion dependency)")),
]


@dataclass(frozen=True)
class KernelReport:
    """One kernel message that reports a hang, a lockup or a lock problem."""

    kind: str
    message: str
    time_ns: int  # the kernel's timestamp (CLOCK_MONOTONIC, microsecond resolution)
    pid: int | None
    comm: str | None
    cpu: int | None

    def to_json(self) -> dict[str, Any]:
        return {"type": "kernel_report", "kind": self.kind, "message": self.message,
                "time_ns": self.time_ns, "pid": self.pid, "comm": self.comm, "cpu": self.cpu}


def parse_record(record: str) -> KernelReport | None:
    """A /dev/kmsg record ("prio,seq,usec,flags;text") if it is a report we know, else None."""
    header, sep, text = record.partition(";")
    if not sep:
        return None
    fields = header.split(",")
    try:
        time_ns = int(fields[2]) * 1000
    except (IndexError, ValueError):
        return None
    message = text.split("\n", 1)[0].strip()
    for kind, pattern in _PATTERNS:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            return KernelReport(kind=kind, message=message, time_ns=time_ns,
                                pid=int(groups["pid"]) if groups.get("pid") else None,
                                comm=groups.get("comm"),
                                cpu=int(groups["cpu"]) if groups.get("cpu") else None)
    return None


class KernelLog:
    """New /dev/kmsg records since opening, without blocking."""

    def __init__(self, path: Path = KMSG) -> None:
        self.error: str | None = None
        self.lost = 0
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError as exc:
            self._fd = None
            self.error = f"cannot read {path}: {exc.strerror}"

    def reports(self) -> list[KernelReport]:
        found: list[KernelReport] = []
        if self._fd is None:
            return found
        for _ in range(MAX_RECORDS_PER_READ):
            try:
                raw = os.read(self._fd, READ_SIZE)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read them
                    self.lost += 1
                    continue
                if exc.errno == errno.EAGAIN:
                    break
                raise
            if not raw:
                break
            report = parse_record(raw.decode(errors="replace"))
            if report:
                found.append(report)
        return found

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
