"""The kernel's interrupt lines: which exist and what they are called.

Names are the action names /proc/interrupts shows in its last column (the
``name`` given to request_irq), read from /sys/kernel/irq/N/actions when the
kernel has it (CONFIG_SPARSE_IRQ, as Debian's) and from /proc/interrupts
otherwise.
"""

from __future__ import annotations

from pathlib import Path

SYS_IRQ = Path("/sys/kernel/irq")
PROC_INTERRUPTS = Path("/proc/interrupts")


def _proc_interrupts() -> dict[int, str]:
    """irq -> action names from /proc/interrupts (numbered lines only).

    After the per-CPU counts come the chip's name, the hardware IRQ number with
    the flow ("2-edge"; absent without an IRQ domain), then the action names.
    """
    try:
        lines = PROC_INTERRUPTS.read_text().splitlines()
    except OSError:
        return {}
    ncpus = len(lines[0].split()) if lines else 0
    result = {}
    for line in lines[1:]:
        label, _, rest = line.partition(":")
        if not label.strip().isdigit():
            continue
        fields = rest.split()[ncpus + 1:]  # past the counts and the chip
        if fields and fields[0][:1].isdigit():
            fields = fields[1:]
        result[int(label)] = " ".join(fields)
    return result


def existing_irqs() -> dict[int, str]:
    """Every IRQ number the kernel has a descriptor for, with its action names ("" if none)."""
    if SYS_IRQ.is_dir():
        result = {}
        for entry in SYS_IRQ.iterdir():
            if entry.name.isdigit():
                try:
                    result[int(entry.name)] = (entry / "actions").read_text().strip()
                except OSError:
                    result[int(entry.name)] = ""
        return result
    return _proc_interrupts()


def irq_name(irq: int) -> str:
    """The line's action names now ("" for a line nobody has requested)."""
    try:
        return (SYS_IRQ / str(irq) / "actions").read_text().strip()
    except OSError:
        return _proc_interrupts().get(irq, "")
