"""Reliability against the real kernel: nothing left attached after any signal, no silent loss,
a short soak of every tracer at once (scripts/soak.py runs the long one)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.kernel.fixture import Fixture
from tests.kernel.soak import soak
from tests.kernel.tool import Tool, wait_until_gone

TOOLS = {
    "irqoff": ["irqoff", "-t", "1ms"],
    "irq": ["irq", "--all"],
    "locks": ["locks"],
    "deadlock": ["deadlock"],
    "record": ["record", "-o", "{tmp}/run.db", "--irqoff", "--locks"],
    "serve": ["serve", "--irqoff", "--locks", "--listen", "127.0.0.1:{port}"],
}



@pytest.mark.parametrize("tool", list(TOOLS))
def test_nothing_stays_attached_after_sigkill(tool: str, tmp_path: Path, fixture: Fixture) -> None:
    """Links and programs die with the process's file descriptors, even unannounced.

    SIGINT is how most kernel tests stop their tool and SIGTERM how one test per
    tool does; Tool.stop() checks after each that the tool's programs are gone.
    """
    args = [a.format(tmp=tmp_path, port=free_port()) for a in TOOLS[tool]]
    with Tool(*args) as running:
        ours = running.program_ids
        assert ours, "the tool attached no BPF program"
        fixture.run("hold spin 10 10")
        running.proc.send_signal(signal.SIGKILL)
        running.wait(timeout=120)
        assert running.proc.returncode == -signal.SIGKILL
    assert not wait_until_gone(ours), f"{tool}: programs left after SIGKILL"


def test_tiny_ring_buffer_loses_events_and_says_so(fixture: Fixture) -> None:
    """Every lock-path window (threshold 0) into one page: the burst cannot fit."""
    with Tool("irqoff", "-t", "0", "-m", "exact", "--ringbuf-pages", "1") as tool:
        fixture.run("irqoff spin_irqsave 100 64")
        fixture.run("lockloop spin_irqsave 100000")
        tool.stop()
    stats = tool.of_type("stats")[0]
    assert stats["lost_events"] > 0
    console = subprocess.run([sys.executable, "-m", "irqlock", "irqoff", "-t", "0", "-m", "exact",
                              "--ringbuf-pages", "1", "-d", "20"], capture_output=True, text=True,
                             timeout=300)
    assert console.returncode == 0, console.stderr
    assert "windows were lost" in console.stdout


def test_full_lock_map_and_recursion_misses_are_said(fixture: Fixture) -> None:
    done = subprocess.run([sys.executable, "-m", "irqlock", "locks", "--max-locks", "8", "-d", "15"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "WARNING:" in done.stdout and "raise --max-locks" in done.stdout
    assert "recursion misses" in done.stdout


def test_serve_listens_on_loopback_only_by_default(fixture: Fixture) -> None:
    with Tool("serve", "--irqoff") as tool:
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = [line.split()[1] for line in listening if line.split()[3] == "0A"]
        assert "0100007F:24F8" in local  # 127.0.0.1:9464
        assert not [a for a in local if a.endswith(":24F8") and a != "0100007F:24F8"]
        tool.stop()


def test_short_soak_every_tracer_at_once(fixture: Fixture, tmp_path: Path) -> None:
    figures = soak(seconds=60, results=tmp_path)
    print(json.dumps(figures))
    assert figures["answered"] == figures["queries"] > 0, figures["unanswered"]
    assert figures["rss_growth"] <= 0.10 and abs(figures["rss_drift"]) <= 0.10, figures
    assert figures["map_bytes"] <= figures["map_cap_bytes"], figures
