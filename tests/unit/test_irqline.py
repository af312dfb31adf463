"""Pure logic of the IRQ-line tracer: handler histogram percentiles, /proc/interrupts names."""

from __future__ import annotations

from pathlib import Path

import pytest

from irqlock.kernel import irqs
from irqlock.tracers.irqline import HandlerStats


def stats(buckets: list[tuple[int, int]], max_ns: int) -> HandlerStats:
    return HandlerStats(irq=24, irq_name="eth0", count=sum(c for _, c in buckets),
                        total_ns=0, max_ns=max_ns, buckets=buckets)


def test_percentile_bound_is_the_upper_edge_of_its_bucket() -> None:
    h = stats([(1024, 90), (8192, 9), (65536, 1)], max_ns=70_000)
    assert h.percentile_bound(0.5) == 2048
    assert h.percentile_bound(0.99) == 16384
    assert h.percentile_bound(1.0) == 70_000, "never above the largest run seen"


def test_json_carries_the_histogram() -> None:
    record = stats([(1024, 3)], max_ns=1500).to_json()
    assert record["type"] == "irq_handler" and record["count"] == 3
    assert record["histogram"] == [[1024, 3]] and record["p99_bound_ns"] == 1500


PROC_INTERRUPTS = """\
           CPU0       CPU1
  0:         44          0   IO-APIC   2-edge      timer
 24:       1200        301   PCI-MSI 65536-edge      virtio0-config
 41:          0          0  dummy   0  irqlock_fixture
 42:          5          0   PCI-MSI 1-edge      ahci[0000:00:1f.2], eth0
NMI:          0          0   Non-maskable interrupts
"""


def test_proc_interrupts_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = tmp_path / "interrupts"
    proc.write_text(PROC_INTERRUPTS)
    monkeypatch.setattr(irqs, "PROC_INTERRUPTS", proc)
    monkeypatch.setattr(irqs, "SYS_IRQ", tmp_path / "no-sysfs")
    assert irqs.existing_irqs() == {0: "timer", 24: "virtio0-config", 41: "irqlock_fixture",
                                    42: "ahci[0000:00:1f.2], eth0"}
    assert irqs.irq_name(24) == "virtio0-config"
