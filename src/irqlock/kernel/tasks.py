"""Tasks as /proc shows them: name, state, kernel stack, and who is in D state now."""

from __future__ import annotations

from pathlib import Path


def tgid_exists(tgid: int) -> bool:
    return Path(f"/proc/{tgid}").is_dir()


def task_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def task_state(pid: int) -> str | None:
    """The one-letter state of /proc/PID/stat (None: the task is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def kernel_stack(pid: int) -> list[str]:
    """/proc/PID/stack without the trailing "[<0>]" markers (root only; empty if unreadable)."""
    try:
        lines = Path(f"/proc/{pid}/stack").read_text().splitlines()
    except OSError:
        return []
    return [line.split("] ", 1)[-1] for line in lines if line.strip()]


def d_state_tasks() -> list[tuple[int, int]]:
    """(pid, tgid) of every task in D state now."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            threads = list((proc / "task").iterdir())
        except OSError:
            continue
        for thread in threads:
            if thread.name.isdigit() and task_state(int(thread.name)) == "D":
                found.append((int(thread.name), int(proc.name)))
    return found
