"""The HTML report in headless Chromium, on the host: the page the VM tests made from the fixture.

tests/kernel/test_report.py renders a recording of the fixture's windows, IRQ
line, locks and ABBA into build/vm-results/<kernel>/report/ with what the page
must show (expected.json); scripts/test.sh runs this after the VM tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "build" / "vm-results"
REPORTS = sorted(RESULTS.glob("*/report/expected.json"))


class Elements(HTMLParser):
    """Attributes of every element with an id, and the names of the flame graph's frames."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.frames: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.by_id[str(values["id"])] = values
        if values.get("class") == "frame" and values.get("data-name"):
            self.frames.append(str(values["data-name"]))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    assert browser, "no chromium: scripts/setup.sh installs Debian's"
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-crash-reporter", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=300, check=True)


def test_vm_tests_left_a_report() -> None:
    assert REPORTS, f"no report in {RESULTS}/*/report: run the VM tests first (scripts/test.sh)"


@pytest.mark.parametrize("expected_file", REPORTS, ids=[p.parts[-3] for p in REPORTS])
def test_page_renders_with_the_fixture_data(expected_file: Path, tmp_path: Path) -> None:
    expected: dict[str, Any] = json.loads(expected_file.read_text())
    page = expected_file.with_name("run.html")
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri(),
             profile=tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    shutil.copy2(shot, expected_file.with_name("run.png"))  # for a human to look at
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    elements = Elements()
    elements.feed(dom)
    found = elements.by_id
    assert found["irqoff-histogram"]["data-count"] == str(expected["irqoff_windows"])
    assert found["irqoff-timeline"]["data-count"] == str(expected["irqoff_windows"])
    assert found["irqoff-flamegraph"]["data-total"] == str(expected["irqoff_ns"])
    assert found["irqoff-enable-flamegraph"]["data-total"] == str(expected["irqoff_sampled_ns"])
    assert any(expected["irqoff_function"] in name for name in elements.frames)
    assert found["irq-histogram"]["data-count"] == str(expected["irq_windows"])
    assert int(str(found["lock-graph"]["data-cycle-edges"])) >= 2
    for name in expected["cycle_locks"]:
        assert f'data-name="{name}"' in dom
    assert "lock-hold-histogram-0" in found and "findings" in found
    assert expected["lock"] in dom
