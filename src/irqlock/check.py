"""`irqlock check`: what this kernel offers and what each tool will do with it.

Besides reading the kernel's facts, check proves the attach paths it plans:
it attaches a counter to a lock function with fentry and with kprobe for a
moment and reports how many calls each saw (or why it could not attach), and
it loads each tool's own BPF object as the tool would: a plan says `exact` or
`sampled` only for what the kernel's verifier then accepts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from irqlock.bpf.hitcount import HitCounter
from irqlock.errors import IrqlockError
from irqlock.kernel.features import PROOF_FUNCTION, KernelFeatures, ToolPlan, plan, probe
from irqlock.tracers.irqline import IrqlineConfig, IrqlineTracer, check_supported
from irqlock.tracers.irqoff import IrqoffConfig, IrqoffTracer, choose_sources
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from irqlock.tracers.locks import LocksTracer

PROOF_SECONDS = 0.2


def _prove(features: KernelFeatures, use_fentry: bool) -> str:
    """Attach the hit counter by one method; returns what it saw, raises on failure."""
    with HitCounter(PROOF_FUNCTION, use_fentry) as counter:
        counter.run_for(PROOF_SECONDS)
        calls = sum(counter.counts().values())
    return f"attached to {PROOF_FUNCTION}, saw {calls} calls in {PROOF_SECONDS:g} s"


def prove_attach(features: KernelFeatures) -> None:
    """Replace the fentry/kprobe capabilities by what a real attach shows."""
    if not (features.root and features.btf.available):
        return
    for capability, use_fentry in ((features.fentry, True), (features.kprobes, False)):
        support = features.functions.get(PROOF_FUNCTION)
        if not capability.available or not support:
            continue
        if not (support.fentry if use_fentry else support.kprobe):
            capability.detail += f"; {PROOF_FUNCTION} not attachable, not proven"
            continue
        try:
            capability.detail = _prove(features, use_fentry)
        except IrqlockError as exc:
            capability.available = False
            capability.detail = f"attach failed: {str(exc).splitlines()[0]}"
            for support in features.functions.values():
                if use_fentry:
                    support.fentry = False
                else:
                    support.kprobe = False


def _load_irqoff(features: KernelFeatures) -> None:
    config = IrqoffConfig()
    with IrqoffTracer(config, choose_sources(config, features), lambda _w: None, attach=False):
        pass


def _load_irq(features: KernelFeatures) -> None:
    config = IrqlineConfig(irqs=None)
    with IrqlineTracer(config, check_supported(config, features), lambda _w: None, attach=False):
        pass


def _load_locks(config: LocksConfig, features: KernelFeatures) -> None:
    with LocksTracer(config, choose_functions(config, features), attach=False):
        pass


# Each tool's own BPF object, configured as the tool configures it by default.
LOADERS: dict[str, Callable[[KernelFeatures], None]] = {
    "irqoff": _load_irqoff,
    "irq": _load_irq,
    "locks": lambda f: _load_locks(LocksConfig(), f),
    "deadlock": lambda f: _load_locks(LocksConfig(order=True, irq_safety=True, blocked=True), f),
}


def prove_loads(features: KernelFeatures, plans: list[ToolPlan]) -> None:
    """Load each planned tool's real BPF object here (the verifier's word, not ours): a
    tool whose object does not load is unavailable, with libbpf's reason."""
    for tool_plan in plans:
        if tool_plan.mode == "unavailable":
            continue
        try:
            LOADERS[tool_plan.tool](features)
        except IrqlockError as exc:
            tool_plan.mode = "unavailable"
            tool_plan.detail = f"its BPF object does not load here: {str(exc).splitlines()[0]}"


def run(btf: Path, as_json: bool, out: TextIO = sys.stdout) -> int:
    features = probe(btf)
    prove_attach(features)
    plans = plan(features)
    if features.root and features.btf.available:
        prove_loads(features, plans)
    if as_json:
        record = {"type": "check", **features.to_json(), "plan": [asdict(p) for p in plans]}
        out.write(json.dumps(record) + "\n")
        return 0
    _print_console(features, plans, out)
    return 0


def _print_console(f: KernelFeatures, plans: list[ToolPlan], out: TextIO) -> None:
    rows = [
        ("kernel", f.release),
        ("root", "yes" if f.root else "no"),
        ("BTF", str(f.btf)),
        ("config", f.config_source or "not found (/proc/config.gz, /boot/config-*)"),
        ("tracefs", f.tracefs or "not mounted"),
        ("fentry", str(f.fentry)),
        ("kprobes", str(f.kprobes)),
        ("preemptirq tracepoints", str(f.preemptirq_tracepoints)),
        ("lock contention tracepoints", str(f.lock_contention_tracepoints)),
        ("irq handler tracepoints", str(f.irq_handler_tracepoints)),
        ("perf cpu-clock", str(f.perf_cpu_clock)),
        ("sampled windows: tick site", str(f.tick_site)),
        ("sampled windows: steal clock", str(f.steal_clock)),
        ("preempt_count", str(f.preempt_count)),
        ("preemption", f.preemption),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")
    traceable = [n for n in f.functions if f.can_trace(n)]
    missing = [n for n in f.functions if not f.can_trace(n)]
    out.write(f"\nattachable functions: {len(traceable)} of {len(f.functions)}")
    out.write(f" (fentry: {sum(s.fentry for s in f.functions.values())}, "
              f"kprobe: {sum(s.kprobe for s in f.functions.values())})\n")
    if missing:
        out.write(f"  not attachable: {' '.join(missing)}\n")
    out.write("\nplan:\n")
    for p in plans:
        out.write(f"  {p.tool:<9} {p.mode:<14} {p.detail}\n")
