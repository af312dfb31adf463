"""Driving the fixture module (tests/kmod) from the kernel tests: the ground truth."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CONTROL = Path("/proc/irqlock_fixture")


class Fixture:
    """Writes commands to /proc/irqlock_fixture and returns the module's own JSON report."""

    def run(self, command: str) -> dict[str, Any]:
        fd = os.open(CONTROL, os.O_RDWR)
        try:
            os.write(fd, command.encode())
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        report: dict[str, Any] = json.loads(b"".join(chunks))
        return report
