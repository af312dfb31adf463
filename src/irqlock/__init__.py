"""irqlock: IRQ-off windows, kernel lock statistics and deadlocks, traced with eBPF."""

__version__ = "0.1.0"
