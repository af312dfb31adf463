"""Defaults and names the command line shows in --help, kept apart from the modules that use
them so that parsing arguments imports no BPF loader, no HTTP client, no tracer."""

from __future__ import annotations

from pathlib import Path

DEFAULT_BTF = Path("/sys/kernel/btf/vmlinux")

# In the order of enum lock_kind (locks.h); raw_spinlock is a kind of its own on PREEMPT_RT.
LOCK_KINDS = ("spinlock", "rwlock", "mutex", "rwsem", "raw_spinlock")
# Per-lock statistics kept (LRU under fentry): with their holders and the other maps, the
# lock tracer's BPF memory stays under 64 MiB by default (stats.map_bytes says how much).
DEFAULT_MAX_LOCKS = 16384
# irqlock deadlock shows no lock statistics: it keeps them only to check held locks (and the
# locks held are the ones in use), and spends the memory on edges.
DEFAULT_DEADLOCK_MAX_LOCKS = 8192
# record and serve with both --locks and --deadlock: lock statistics and edges share the budget.
DEFAULT_COMBINED_MAX_LOCKS = 12288
DEFAULT_COMBINED_MAX_EDGES = 16384
DEFAULT_MAX_EDGES = 32768
DEFAULT_LISTEN = "127.0.0.1:9464"
# How lock functions can be traced: fentry/fexit where the kernel has them (auto), or kprobes.
LOCK_PROBES = ("auto", "fentry", "kprobe")
# What `irqlock config` can change in a running `irqlock serve` session.
CONFIG_KEYS = {
    "threshold": "IRQ-off threshold (TIME: 500us, 2ms)",
    "irq": "IRQ lines to watch (N[,N...], all, or none)",
    "irq_threshold": "IRQ-line window threshold (TIME)",
    "hung_after": "hung-task threshold (seconds)",
}
