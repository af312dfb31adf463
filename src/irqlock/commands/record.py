"""`irqlock record`: the chosen tracers in one run, into a SQLite recording."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from irqlock import __version__, session
from irqlock.errors import IrqlockError
from irqlock.kernel.features import KernelFeatures
from irqlock.report.recording import RecordingWriter
from irqlock.tracerset import Selection, TracerSet

SNAPSHOT_EVERY_S = 5.0  # lock statistics are aggregates: their latest state is saved this often
SNAPSHOT_SHARE = 0.1  # ... or less often, so that saving them takes at most this share of the time
PROGRESS_EVERY_S = 1.0


class Progress:
    """One status line on stderr: rewritten in place on a terminal, every 10 s otherwise."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def show(self, counts: dict[str, int], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (PROGRESS_EVERY_S if self.tty else 10.0):
            return
        self._last = now
        shown = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()) if n) or "nothing yet"
        line = f"recording {now - self.started:6.1f} s: {shown}"
        self.out.write(f"\r{line}\033[K" if self.tty else line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")


def run(selection: Selection, output: Path, features: KernelFeatures, duration_s: float | None,
        ready_file: Path | None, as_json: bool) -> int:
    try:
        return _record(selection, output, features, duration_s, ready_file, as_json)
    except sqlite3.Error as exc:  # the disk filled, the file system went away
        raise IrqlockError(f"writing {output} failed: {exc}") from None


def _record(selection: Selection, output: Path, features: KernelFeatures,
            duration_s: float | None, ready_file: Path | None, as_json: bool) -> int:
    if output.exists():  # before anything is attached
        raise IrqlockError(f"{output} exists: give a new file (a recording is never overwritten)")
    writer: RecordingWriter | None = None

    def emit(record: dict[str, Any]) -> None:
        assert writer is not None  # records only come from poll(), after the writer is made
        writer.add(record)
        if as_json:
            print(json.dumps(record), flush=True)

    # Tracers first: a request that cannot be met leaves no empty recording behind.
    with TracerSet(selection, features, emit) as tracers:
        writer = RecordingWriter(output, {
            "tools": selection.tools, "settings": selection.describe(),
            "kernel": features.release, "irqlock_version": __version__,
            "host": os.uname().nodename})
        finished = False
        progress = Progress()
        try:
            next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
            if not as_json:
                sys.stdout.write(f"Recording {', '.join(selection.tools)} into {output}. "
                                 "Ctrl-C to stop.\n")
                sys.stdout.flush()

            def poll(timeout_ms: int) -> int:
                nonlocal next_snapshot
                assert writer is not None
                handled = tracers.poll(timeout_ms)
                if tracers.locks and time.monotonic() >= next_snapshot:
                    started = time.monotonic()
                    writer.replace_snapshot("lock", tracers.lock_records())
                    took = time.monotonic() - started
                    next_snapshot = time.monotonic() + max(SNAPSHOT_EVERY_S, took / SNAPSHOT_SHARE)
                writer.commit_if_due()
                progress.show(writer.counts)
                return handled

            session.run(poll, duration_s, ready_file, tracers.detach)
            tracers.finish()
            if tracers.locks:
                records = tracers.lock_records()
                writer.replace_snapshot("lock", records)
                if as_json:
                    for record in records:
                        print(json.dumps(record))
            for stats in tracers.stats():
                emit(stats)
            finished = True
        finally:
            progress.show(writer.counts, force=True)
            progress.done()
            writer.close(finished=finished)
    if not as_json:
        sys.stdout.write(f"Recorded {sum(writer.counts.values())} records into {output}: "
                         f"irqlock report {output}\n")
    return 0
