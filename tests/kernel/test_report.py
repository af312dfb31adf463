"""Recordings, reports and the serve session, against the fixture's own windows and locks."""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from irqlock import client
from tests.helpers import free_port
from tests.kernel.fixture import Fixture
from tests.kernel.tool import Tool, irqlock


def fixture_windows(records: list[dict[str, Any]], truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The irqoff records of the fixture's task that cover one of its windows."""
    spans = [(w["start_ns"], w["end_ns"]) for w in truth["windows"]]
    return [r for r in records if r["type"] == "irqoff" and r["pid"] == truth["task"]["pid"]
            and any(r["start_ns"] <= start and r["end_ns"] >= end for start, end in spans)]


def top_lock_label(records: list[dict[str, Any]]) -> str:
    """The lock a report lists first: the longest held in all (rarely the fixture's)."""
    top = max((r for r in records if r["type"] == "lock"), key=lambda r: r["hold_ns"]["total"])
    return str(top["name"] or f"{top['kind']}@{top['site'] or top['addr']}")


class Recording:
    """One fixture-driven recording with every tracer, shared by the tests below."""

    def __init__(self, fixture: Fixture, directory: Path) -> None:
        self.path = directory / "run.db"
        self.irq = fixture.run("fire 1")["irq"]
        with Tool("record", "-o", str(self.path), "--irqoff", "-t", "500us", "-m", "exact",
                  "--irq", str(self.irq), "--deadlock", "--locks") as tool:
            self.irqoff = fixture.run("irqoff spin_irqsave 1000 3")
            self.line = fixture.run("irqline disable 2000")
            self.hold = fixture.run("hold spin 50 50")
            self.order = fixture.run("order abba")
            self.live = tool.stop(signal.SIGTERM)  # the same clean end as Ctrl-C


@pytest.fixture(scope="module")
def recording(fixture: Fixture) -> Iterator[Recording]:
    with tempfile.TemporaryDirectory() as directory:
        yield Recording(fixture, Path(directory))


def test_report_json_equals_what_the_live_run_printed(recording: Recording) -> None:
    done = irqlock("report", str(recording.path), "-j")
    assert done.returncode == 0, done.stderr
    reported = [json.loads(line) for line in done.stdout.splitlines()]
    assert reported == recording.live
    assert len(fixture_windows(reported, recording.irqoff)) == 3
    line = [r for r in reported if r["type"] == "irq_disabled" and r["irq"] == recording.irq]
    assert len(line) == 1 and line[0]["disable_pid"] == recording.line["disable_task"]["pid"]
    (spin,) = [r for r in reported if r["type"] == "lock" and r["name"] == "fx_spin"]
    assert spin["acquisitions"] == sum(t["acquisitions"] for t in recording.hold["threads"])
    assert [c for c in reported if c["type"] == "lock_cycle"
            and {lock["name"] for lock in c["locks"]} == {"fx_order_a", "fx_order_b"}]


def test_console_summary_and_folded_stacks(recording: Recording, tmp_path: Path) -> None:
    folded = tmp_path / "run.folded"
    done = irqlock("report", str(recording.path), "--folded", str(folded))
    assert done.returncode == 0, done.stderr
    assert "IRQ-off windows:" in done.stdout
    assert top_lock_label(recording.live)[:40] in done.stdout  # the busiest locks, by name
    assert "fx_order_a -> fx_order_b -> fx_order_a" in done.stdout \
        or "fx_order_b -> fx_order_a -> fx_order_b" in done.stdout
    lines = folded.read_text().splitlines()
    ours = [line for line in lines if "fx_irqoff_spin_irqsave" in line]
    assert ours and all(int(line.rsplit(" ", 1)[1]) > 0 for line in ours)
    # each window is at least the fixture's 1 ms: their stack weighs at least 3 ms
    assert sum(int(line.rsplit(" ", 1)[1]) for line in ours) >= 3_000_000


def test_html_report_for_the_browser_test(recording: Recording) -> None:
    """The page of the fixture's recording, and what it must show, for tests/browser.

    Chromium under the VM's emulation takes minutes to start; the browser test
    runs on the host (scripts/test.sh) on what this test leaves in the results
    directory shared with it.
    """
    out = Path(os.environ["IRQLOCK_RESULTS"]) / "report"
    out.mkdir(exist_ok=True)
    page = out / "run.html"
    done = irqlock("report", str(recording.path), "--html", str(page))
    assert done.returncode == 0, done.stderr
    windows = [r for r in recording.live if r["type"] == "irqoff"]
    expected = {
        "irqoff_windows": len(windows),
        "irqoff_ns": sum(w["duration_ns"] for w in windows if w["disable_stack"]),
        "irqoff_sampled_ns": sum(w["duration_ns"] for w in windows
                                 if w["source"] == "sample" and w["confirmed"]),
        "irqoff_function": recording.irqoff["function"],
        "irq_windows": len([r for r in recording.live if r["type"] == "irq_disabled"]),
        "cycle_locks": ["fx_order_a", "fx_order_b"],
        "lock": top_lock_label(recording.live),
    }
    (out / "expected.json").write_text(json.dumps(expected))
    assert expected["irqoff_windows"] >= 3 and expected["irq_windows"] >= 1


def test_killed_recording_still_reports_what_was_flushed(fixture: Fixture, tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    def reported() -> list[dict[str, Any]]:
        done = irqlock("report", str(path), "-j")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    # Over what the 9p root's irqsave windows take under TCG: each `irqlock report` below
    # starts a Python whose reads would otherwise flood the recording.
    with Tool("record", "-o", str(path), "--irqoff", "-t", "3ms", "-m", "exact") as tool:
        truth = fixture.run("irqoff spin_irqsave 5000 2")
        # committed (a commit every second): readable by another process while it runs
        eventually(lambda: len(fixture_windows(reported(), truth)) == 2,
                   "the fixture's windows committed")
        tool.proc.send_signal(signal.SIGKILL)
        tool.wait(timeout=60)
    assert len(fixture_windows(reported(), truth)) == 2
    summary = irqlock("report", str(path))
    assert "cut short" in summary.stdout



def test_recording_on_a_9p_share_works(fixture: Fixture) -> None:
    """The VM's results directory is a 9p share, which lacks the shared memory WAL needs:
    the recording falls back to a rollback journal and reads back whole."""
    share = Path(os.environ["IRQLOCK_RESULTS"])
    assert os.statvfs(share).f_fsid != os.statvfs("/run").f_fsid
    assert "9p" in {line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()
                    if line.split()[1] == str(share)}, "the results directory is not 9p"
    path = share / "on-9p.db"
    path.unlink(missing_ok=True)
    with Tool("record", "-o", str(path), "--locks") as tool:
        truth = fixture.run("hold spin 10 10")
        tool.stop()
    done = irqlock("report", str(path), "-j")
    assert done.returncode == 0, done.stderr
    (lock,) = [r for r in map(json.loads, done.stdout.splitlines())
               if r["type"] == "lock" and r["name"] == "fx_spin"]
    assert lock["acquisitions"] == sum(t["acquisitions"] for t in truth["threads"])
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-journal").exists()


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def status(port: int) -> dict[str, Any]:
    """GET /status from this process: polling through `irqlock status` would start a Python
    for each look, whose reads of the 9p root take ~0.5 ms irqsave windows under TCG and
    crowd the fixture's windows out of the session's latest records."""
    return client.request(f"127.0.0.1:{port}", "GET", "/status")


def status_client(port: int) -> dict[str, Any]:
    done = irqlock("status", "--connect", f"127.0.0.1:{port}", "-j")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 120,
               seen: Callable[[], Any] | None = None) -> None:
    """Until `check` holds: the session publishes what it saw every second, slower under TCG.
    `seen`: what the session shows instead, for the failure's message."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, \
            f"not within {timeout_s} s: {what}" + (f"; seen: {seen()}" if seen else "")
        time.sleep(1)


def fixture_task_view(port: int, truth: dict[str, Any]) -> dict[str, Any]:
    """The session's irqoff statistics and records of the fixture's task, beside its windows."""
    view = status(port)
    return {"windows": truth["windows"], "settings": view["settings"],
            "stats": [s for s in view["stats"] if s.get("tool") == "irqoff"],
            "records": [r for r in view["recent"] if r.get("pid") == truth["task"]["pid"]]}


def test_serve_metrics_config_and_clear(fixture: Fixture) -> None:
    port = free_port()
    connect = f"127.0.0.1:{port}"
    with Tool("serve", "--irqoff", "-t", "500us", "-m", "exact", "--locks",
              "--listen", connect) as tool:
        # Lock series are the 50 locks held longest since the start or the last clear.  In
        # the guest the 50th has ~35 ms after 50 s: a clear makes room in the lock map, and
        # the fixture's lock, held 2 ms at a time, ranks well above that.
        client.request(connect, "POST", "/clear", {})
        hold = fixture.run("hold spin 2000 20")
        acquired = sum(t["acquisitions"] for t in hold["threads"])
        spin_key = ("irqlock_lock_acquisitions_total", (("kind", "spinlock"), ("lock", "fx_spin")))
        eventually(lambda: metrics(port).get(spin_key) == acquired,
                   f"fx_spin acquired {acquired} times in /metrics")
        first = fixture.run("irqoff spin_irqsave 1000 3")
        eventually(lambda: len(fixture_windows(status(port)["recent"], first)) == 3,
                   "the fixture's three windows in /status")
        # The client is another Python starting up: under TCG its own reads of the 9p
        # root are enough 0.5 ms windows to push the fixture's out of the latest records.
        assert status_client(port)["counts"]["irqoff"] >= 3
        windows = sum(v for (name, labels), v in metrics(port).items()
                      if name == "irqlock_irqoff_duration_seconds_count" and ("source", "lock")
                      in labels)
        assert windows >= 3

        def under_3ms() -> float:
            return sum(v for (name, labels), v in metrics(port).items()
                       if name == "irqlock_irqoff_duration_seconds_bucket"
                       and ("le", "0.0025") in labels)

        done = irqlock("config", "threshold=3ms", "--connect", connect, "-j")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["settings"]["irqoff_threshold_ns"] == 3_000_000
        shorter = under_3ms()
        short = fixture.run("irqoff spin_irqsave 1000 2")
        long = fixture.run("irqoff spin_irqsave 5000 1")
        eventually(lambda: len(fixture_windows(status(port)["recent"], long)) == 1,
                   "the 5 ms window in /status", seen=lambda: fixture_task_view(port, long))
        # An exact window lies inside the fixture's calls: one of 3 ms or more made of a
        # 1 ms spin means the guest stalled in those calls, and it is over the threshold.
        assert all(r["duration_ns"] >= 3_000_000
                   for r in fixture_windows(status(port)["recent"], short))
        assert under_3ms() == shorter  # nothing under the new threshold, from any task

        before_clear = status(port)["counts"]["irqoff"]
        assert before_clear >= 4  # the fixture's 3 + 1 at least
        done = irqlock("clear", "--connect", connect)
        assert done.returncode == 0, done.stderr
        eventually(lambda: spin_key not in metrics(port), "fx_spin gone from /metrics")
        assert not [r for r in status(port)["recent"] if r.get("pid") == first["task"]["pid"]]
        assert status(port)["counts"].get("irqoff", 0) < before_clear

        bad = irqlock("config", "threshold=fast", "--connect", connect)
        assert bad.returncode == 2 and "bad duration" in bad.stderr
        assert len(bad.stderr.splitlines()) == 1
        tool.stop(signal.SIGTERM)


def test_clients_without_a_session_fail_in_one_line() -> None:
    done = irqlock("status", "--connect", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "no irqlock serve session" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_port_in_use_is_one_line(fixture: Fixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = irqlock("serve", "--irqoff", "--listen", f"127.0.0.1:{port}", "-d", "1")
    assert done.returncode == 2 and "cannot listen" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1
