#!/usr/bin/env python3
"""What loading each tool's BPF object costs: seconds and the instructions the verifier walked.

Runs inside the VM (root, BTF), as `irqlock check` loads them:

    scripts/vmtest.py --kernel 6.12 -- .venv/bin/python bench/load_bench.py

Prints one line per tool configuration (seconds, verified instructions in all, programs) and
the programs that cost most: the verifier's time grows with the instructions it walks, and it
is what every `irqlock deadlock` start pays (under TCG, tens of seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from irqlock.bpf.loader import BpfObject
from irqlock.check import prove_attach
from irqlock.kernel.features import probe
from irqlock.tracers.irqoff import IrqoffConfig, IrqoffTracer, choose_sources
from irqlock.tracers.lock_plan import LocksConfig, choose_functions
from irqlock.tracers.locks import LocksTracer

TOP = 5


def report(name: str, load: Callable[[], tuple[BpfObject, Callable[[], None]]]) -> None:
    start = time.perf_counter()
    obj, close = load()
    seconds = time.perf_counter() - start
    try:
        insns = obj.verified_insns()
    finally:
        close()
    top = sorted(insns.items(), key=lambda kv: -kv[1])[:TOP]
    print(f"{name:10} {seconds:7.1f} s {sum(insns.values()):9} insns verified "
          f"in {len(insns)} programs; most: "
          + ", ".join(f"{prog} {n}" for prog, n in top), flush=True)


def main() -> None:
    features = probe()
    prove_attach(features)  # what decides fentry or kprobe, as in check

    def irqoff() -> tuple[BpfObject, Callable[[], None]]:
        config = IrqoffConfig()
        tracer = IrqoffTracer(config, choose_sources(config, features), lambda _w: None,
                              attach=False)
        return tracer.obj, tracer.close

    def locks(config: LocksConfig) -> Callable[[], tuple[BpfObject, Callable[[], None]]]:
        def load() -> tuple[BpfObject, Callable[[], None]]:
            tracer = LocksTracer(config, choose_functions(config, features), attach=False)
            return tracer.obj, tracer.close
        return load

    report("irqoff", irqoff)
    report("locks", locks(LocksConfig()))
    report("deadlock", locks(LocksConfig(order=True, irq_safety=True, blocked=True)))


if __name__ == "__main__":
    main()
