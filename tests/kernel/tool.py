"""Running an irqlock tool the way pwru's tests do: start, wait for --ready-file, load, stop, read.

Every record a tool prints is checked against docs/records.md (tests/records.py).

Every tool is also checked to leave nothing behind: the BPF programs that
appeared while it started must all be gone once it has stopped.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.records import record_problems

GONE_TIMEOUT_S = 30  # programs are freed once their last file descriptor is closed


def _bpftool(*args: str) -> list[dict[str, Any]]:
    done = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, timeout=120,
                          check=True)
    result: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return result


def irqlock(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`irqlock ARGS` in the foreground, to its end: its exit code and output."""
    return subprocess.run([sys.executable, "-m", "irqlock", *args], capture_output=True,
                          text=True, timeout=timeout)


def bpf_program_ids() -> set[int]:
    """Every BPF program loaded in the kernel now."""
    return {int(p["id"]) for p in _bpftool("prog", "show")}


def bpf_maps_of(programs: set[int]) -> dict[int, int]:
    """map id -> bytes of locked memory, for the maps these programs use."""
    used = {int(m) for p in _bpftool("prog", "show") if p["id"] in programs
            for m in p.get("map_ids", [])}
    return {int(m["id"]): int(m.get("bytes_memlock", 0)) for m in _bpftool("map", "show")
            if m["id"] in used}


class Tool:
    """`irqlock ARGS -j --ready-file F` in the background; stop() returns its JSON records."""

    def __init__(self, *args: str, ready_timeout: float = 120) -> None:
        self._dir = tempfile.TemporaryDirectory()
        ready = Path(self._dir.name) / "ready"
        # Output goes to files, not pipes: nobody reads a pipe until the tool stops, and a
        # full one would block the tool in the middle of its run.
        self._stdout = Path(self._dir.name) / "stdout"
        self._stderr = Path(self._dir.name) / "stderr"
        before = bpf_program_ids()
        with self._stdout.open("w") as out, self._stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "irqlock", *args, "-j", "--ready-file", str(ready)],
                stdout=out, stderr=err)
        deadline = time.monotonic() + ready_timeout
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError(f"irqlock {' '.join(args)} did not get ready: "
                                     f"{self._stderr.read_text()}{self._stdout.read_text()}")
            time.sleep(0.05)
        self.program_ids = bpf_program_ids() - before  # what this tool loaded
        self.records: list[dict[str, Any]] = []
        self.stderr = ""

    def wait(self, timeout: float) -> str:
        """Wait for the tool to end; returns what it wrote to stderr."""
        self.proc.wait(timeout=timeout)
        self.stderr = self._stderr.read_text()
        return self.stderr

    def stop(self, sig: int = signal.SIGINT) -> list[dict[str, Any]]:
        self.proc.send_signal(sig)
        self.wait(timeout=300)
        out = self._stdout.read_text()
        assert self.proc.returncode == 0, f"exit {self.proc.returncode}: {self.stderr}"
        assert "Traceback" not in self.stderr
        self.records = [json.loads(line) for line in out.splitlines() if line.strip()]
        off_the_page = [problem for record in self.records for problem in record_problems(record)]
        assert not off_the_page, "records unlike docs/records.md:\n" + "\n".join(off_the_page[:20])
        left = wait_until_gone(self.program_ids)
        assert not left, f"BPF programs {sorted(left)} still loaded after the tool stopped"
        return self.records

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == kind]

    def __enter__(self) -> Tool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._dir.cleanup()


def wait_until_gone(ids: set[int], timeout_s: float = GONE_TIMEOUT_S) -> set[int]:
    """Those of `ids` still loaded after waiting up to timeout_s for them to go."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = ids & bpf_program_ids()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
