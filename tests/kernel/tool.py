"""Running an irqlock tool the way pwru's tests do: start, wait for --ready-file, load, stop, read."""

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


class Tool:
    """`irqlock ARGS -j --ready-file F` in the background; stop() returns its JSON records."""

    def __init__(self, *args: str, ready_timeout: float = 120) -> None:
        self._dir = tempfile.TemporaryDirectory()
        ready = Path(self._dir.name) / "ready"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "irqlock", *args, "-j", "--ready-file", str(ready)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + ready_timeout
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.proc.communicate(timeout=30) if self.proc.poll() is not None \
                    else ("", "")
                self.proc.kill()
                raise AssertionError(f"irqlock {' '.join(args)} did not get ready: {err}{out}")
            time.sleep(0.05)
        self.records: list[dict[str, Any]] = []
        self.stderr = ""

    def stop(self, sig: int = signal.SIGINT) -> list[dict[str, Any]]:
        self.proc.send_signal(sig)
        out, self.stderr = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, f"exit {self.proc.returncode}: {self.stderr}"
        assert "Traceback" not in self.stderr
        self.records = [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.records

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == kind]

    def __enter__(self) -> Tool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self._dir.cleanup()
