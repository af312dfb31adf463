"""The commands: each checks its input, runs its tracers (irqlock.tracers) and prints what
they found (console tables, JSON lines), one module per command."""
