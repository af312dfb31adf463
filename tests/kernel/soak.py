"""Every tracer at once under load, with the figures a soak is judged by.

`irqlock serve` runs irqoff, every IRQ line, locks and deadlock together while
stress-ng's mix (tests/kernel/load.py) and the fixture keep the kernel busy; the session is asked for its
status every few seconds.  Returned: how many queries it answered, its memory over
time (VmRSS and RssAnon; after warm-up RssAnon may not grow nor drift over 10 %), the
memory its BPF maps hold at the start and the end, and what it counted as lost.
tests/kernel/test_reliability.py runs a minute of it; scripts/soak.py the long one.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from irqlock import client
from irqlock.errors import IrqlockError
from tests.helpers import free_port
from tests.kernel.fixture import Fixture
from tests.kernel.load import stress_ng
from tests.kernel.tool import Tool, bpf_maps_of

FIXTURE_LOAD = ["irqoff spin_irqsave 500 3", "hold spin 50 20", "irqline disable 500",
                "order abba", "fire 10", "hold mutex 50 10", "irqoff irq_save 2000 1"]
QUERY_EVERY_S = 5.0
WARM_UP_SHARE = 0.3


def _memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process.  What irqlock allocates is anonymous memory: judged
    on that, as file pages it maps (libraries, the venv) come and go with reclaim."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["RssAnon"].split()[0])


def memory_trend(samples: list[int]) -> dict[str, float]:
    """How RssAnon moved after warm-up.

    rss_growth: the highest sample over the first third's median (a leak only grows);
    rss_drift: the last third's median over the first's, either way (flat or not);
    rss_dip: the lowest sample under the first third's median, for the record only
    (malloc handing a large freed block back to the kernel, refilled at the next refresh).
    """
    if len(samples) < 3:
        return {"rss_growth": 0.0, "rss_drift": 0.0, "rss_dip": 0.0}
    third = len(samples) // 3
    first, last = statistics.median(samples[:third]), statistics.median(samples[-third:])
    return {"rss_growth": (max(samples) - first) / first, "rss_drift": (last - first) / first,
            "rss_dip": (first - min(samples)) / first}


def soak(seconds: float, results: Path) -> dict[str, Any]:
    fixture = Fixture()
    port = free_port()
    figures: dict[str, Any] = {"seconds": seconds, "queries": 0, "answered": 0, "unanswered": [],
                               "rss_kib": []}
    # Attached first: under TCG, attaching every tracer beside stress-ng's workers can
    # take longer than any sane ready timeout, and the load is what the soak is about.
    with Tool("serve", "--irqoff", "-t", "1ms", "--irq", "all", "--locks", "--deadlock",
              "--listen", f"127.0.0.1:{port}", ready_timeout=300) as tool, \
            stress_ng(seconds + 30, results):
        maps_at_start = bpf_maps_of(tool.program_ids)
        start = time.monotonic()
        step = 0
        next_query = start
        while time.monotonic() - start < seconds:
            fixture.run(FIXTURE_LOAD[step % len(FIXTURE_LOAD)])
            step += 1
            if time.monotonic() >= next_query:
                figures["queries"] += 1
                try:
                    status = client.request(f"127.0.0.1:{port}", "GET", "/status")
                except IrqlockError as exc:
                    figures["unanswered"].append(str(exc))
                else:
                    figures["answered"] += status["type"] == "status"
                    figures["stats"] = status["stats"]  # the last the session published
                figures["rss_kib"].append((round(time.monotonic() - start, 1),
                                           *_memory_kib(tool.proc.pid)))
                next_query += QUERY_EVERY_S
            time.sleep(0.5)
        maps_at_end = bpf_maps_of(tool.program_ids)
        tool.stop()
    figures.update(memory_trend(
        [anon for t, _rss, anon in figures["rss_kib"] if t >= seconds * WARM_UP_SHARE]))
    figures["map_bytes"] = sum(maps_at_end.values())
    figures["map_cap_bytes"] = sum(maps_at_start.values())
    figures["fixture_commands"] = step
    return figures
