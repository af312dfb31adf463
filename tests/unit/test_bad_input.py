"""Bad input, on this machine: every case is one clear line on stderr and exit code 2.

These run the real command line on the machine the tests run on (no VM): they
fail before anything is loaded into a kernel, or because this machine's own
kernel cannot do it (it has no kprobes and forbids BPF: a real such kernel).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

NOBODY = 65534


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("bad_input")
    corrupt = base / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    foreign = base / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    existing = base / "existing.db"
    existing.write_text("keep me")
    yield {"corrupt": corrupt, "foreign": foreign, "existing": existing, "dir": base}


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]



def no_such_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


# (id, arguments, a pattern of what the one line must say); {placeholders} are filled in below.
CASES = [
    ("threshold unit", ["irqoff", "-t", "5xs"], "bad duration '5xs'"),
    ("threshold negative", ["irqoff", "-t=-5ms"], "bad duration '-5ms'"),
    ("duration negative", ["irqoff", "-d=-3"], "seconds must be positive"),
    ("duration zero", ["locks", "-d", "0"], "seconds must be positive"),
    ("duration not a number", ["deadlock", "-d", "soon"], "bad number of seconds"),
    ("period too short", ["irqoff", "--period", "1us"], "--period must be at least"),
    ("ring buffer not a power of two", ["irqoff", "--ringbuf-pages", "3"], "power of two"),
    ("unknown irq", ["irq", "999999"], "no IRQ 999999 on this machine"),
    ("irq and --all", ["irq", "1", "--all"], "not both"),
    ("no irq at all", ["irq"], "name the IRQ numbers"),
    ("unknown pid", ["locks", "-p", "{pid}"], "no process with pid {pid}"),
    ("unknown cpu", ["irqoff", "-c", "4096"], "cpu 4096 is not online"),
    ("unknown lock symbol", ["locks", "--lock", "no_such_lock_anywhere"],
     "no kernel or module symbol"),
    ("lock that is a function", ["locks", "--lock", "schedule"], "is a function, not a lock"),
    ("bad lock address", ["locks", "--lock", "0xnothex"], "bad address"),
    ("unknown lock kind", ["locks", "--kind", "spin,semaphore"], "unknown lock kind"),
    ("count without interval", ["locks", "-n", "0"], "must be at least 1"),
    ("no BTF", ["irqoff", "--btf", "/nonexistent/vmlinux"], "no kernel BTF"),
    ("no kprobes, no BPF (this kernel)", ["irq", "--all"], "cannot trace|forbids BPF"),
    ("deadlock on this kernel", ["deadlock", "-d", "1"],
     "cannot be traced|load BPF object locks|no System.map"),
    ("kprobes asked for, none here", ["locks", "--probe", "kprobe"], "--probe kprobe: "),
    ("unknown probe", ["deadlock", "--probe", "uprobe"], "invalid choice"),
    ("missing recording", ["report", "/nonexistent/run.db"], "no recording /nonexistent/run.db"),
    ("corrupt recording", ["report", "{corrupt}"], "is not an irqlock recording"),
    ("not a recording", ["report", "{foreign}"], "is not an irqlock recording"),
    ("directory as recording", ["report", "{dir}"], "no recording"),
    ("recording exists", ["record", "-o", "{existing}", "--irqoff"], "exists"),
    ("record without tracers", ["record", "-o", "{dir}/new.db"], "choose at least one tracer"),
    ("bad listen address", ["serve", "--irqoff", "--listen", "localhost"], "bad address"),
    ("port in use", ["serve", "--irqoff", "--listen", "127.0.0.1:{busy}"], "cannot listen"),
    ("no session", ["status", "--connect", "127.0.0.1:{free}"], "no irqlock serve session"),
    ("bad setting", ["config", "threshold", "--connect", "127.0.0.1:{free}"], "bad setting"),
    ("hung-after zero", ["deadlock", "--hung-after", "0"], "seconds must be positive"),
    ("max-locks too many", ["locks", "--max-locks", "99999999"], "--max-locks must be"),
    ("unknown command", ["lockz"], "invalid choice"),
]


@pytest.mark.parametrize("args,message", [(a, m) for _id, a, m in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, files: dict[str, Path],
                                          busy_port: int) -> None:
    values = {"pid": str(no_such_pid()), "busy": str(busy_port), "free": str(free_port()),
              **{k: str(v) for k, v in files.items()}}
    argv = [a.format(**values) for a in args]
    done = subprocess.run([sys.executable, "-m", "irqlock", *argv], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, (argv, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert re.search(message.format(**values), done.stderr), done.stderr


def test_not_root_is_one_line_and_exit_2() -> None:
    if os.geteuid() != 0:
        pytest.fail("run the tests as root: this case drops to nobody")
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-m", "irqlock", "irqoff", "-d", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": "/"})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "needs root" in done.stderr


def test_the_matrix_is_wide_enough() -> None:
    assert len(CASES) + 1 >= 20
