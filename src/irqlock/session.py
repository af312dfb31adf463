"""The run loop every tracer shares: ready file, duration, Ctrl-C and SIGTERM, one cleanup path."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

POLL_MS = 100


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks, so cleanup always runs."""
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(poll: Callable[[int], int], duration_s: float | None, ready_file: Path | None,
        detach: Callable[[], None], finished: Callable[[], bool] = lambda: False) -> None:
    """Poll until the duration passes, `finished` says so or a signal arrives; the ready file
    says probes are attached.

    At the end the probes are detached first, then everything already recorded is read.
    """
    with stop_on_signals() as received:
        if ready_file:
            ready_file.write_text("ready\n")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not received and not finished():
            timeout = POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                timeout = max(1, min(POLL_MS, int(left * 1000)))
            poll(timeout)
        detach()
        while poll(0):  # what was recorded before the stop
            pass
