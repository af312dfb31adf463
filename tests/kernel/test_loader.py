"""The whole BPF path against the fixture: load, configure, attach, count, poll, detach."""

from __future__ import annotations

import os
import subprocess

import pytest

from irqlock.bpf.hitcount import Hit, HitCounter
from irqlock.bpf.loader import BpfObject
from irqlock.errors import IrqlockError
from irqlock.kernel.kallsyms import Kallsyms
from tests.kernel.fixture import Fixture

# What spin_lock_irqsave(&fx_spin) calls: on PREEMPT_RT a spinlock_t sleeps, rt_spin_lock
# (whose slow path takes the rt_mutex's raw wait_lock, at fx_spin's very address).
SPIN_IRQSAVE = "rt_spin_lock" if "PREEMPT_RT" in os.uname().version else "_raw_spin_lock_irqsave"


@pytest.mark.parametrize("use_fentry", [True, False], ids=["fentry", "kprobe"])
def test_counts_fixture_spin_lock_irqsave_calls(fixture: Fixture, kallsyms: Kallsyms,
                                                use_fentry: bool) -> None:
    lock = kallsyms.address_of("fx_spin")
    assert lock, "fx_spin not in /proc/kallsyms"
    hits: list[Hit] = []
    with HitCounter(SPIN_IRQSAVE, use_fentry, comm_prefix="fx_hold", first_arg=lock,
                    on_hit=hits.append) as counter:
        assert counter.attachment.method == ("fentry" if use_fentry else "kprobe")
        truth = fixture.run("hold spin_irqsave 0 500 1")
        counter.run_for(0.5)
        counts = counter.counts()
        stats = counter.stats()
    thread = truth["threads"][0]
    pid, done = thread["task"]["pid"], thread["acquisitions"]
    assert done == 500
    assert counts == {pid: done}, "only the fixture's kthread takes fx_spin"
    assert len(hits) == done and {h.pid for h in hits} == {pid}
    assert {h.comm for h in hits} == {thread["task"]["comm"]}
    assert stats["lost_events"] == 0 and stats["map_full"] == 0


def test_two_kthreads_counted_apart(fixture: Fixture, kallsyms: Kallsyms) -> None:
    lock = kallsyms.address_of("fx_spin")
    assert lock
    with HitCounter(SPIN_IRQSAVE, True, first_arg=lock) as counter:
        truth = fixture.run("hold spin_irqsave 5 40 2")
        counts = counter.counts()
    expected = {t["task"]["pid"]: t["acquisitions"] for t in truth["threads"]}
    assert counts == expected and sum(expected.values()) == 80


def test_close_detaches_and_frees_programs(fixture: Fixture) -> None:
    counter = HitCounter(SPIN_IRQSAVE, True)
    ids = counter.obj.program_ids()
    assert ids, "a loaded program has an id"
    shown = subprocess.run(["bpftool", "prog", "show", "id", str(ids[0])], capture_output=True)
    assert shown.returncode == 0
    counter.close()
    counter.close()  # twice is harmless
    gone = subprocess.run(["bpftool", "prog", "show", "id", str(ids[0])], capture_output=True)
    assert gone.returncode != 0, "the program outlived close()"


def test_detach_on_exception(fixture: Fixture) -> None:
    with pytest.raises(RuntimeError), HitCounter(SPIN_IRQSAVE, True) as counter:
        ids = counter.obj.program_ids()
        raise RuntimeError("boom")
    gone = subprocess.run(["bpftool", "prog", "show", "id", str(ids[0])], capture_output=True)
    assert gone.returncode != 0


def test_unknown_function_is_one_clear_error(fixture: Fixture) -> None:
    with pytest.raises(IrqlockError, match="irqlock_no_such_function"):
        HitCounter("irqlock_no_such_function", True)


def test_failed_kprobe_attach_carries_libbpf_log(fixture: Fixture) -> None:
    with pytest.raises(IrqlockError) as err:
        HitCounter("irqlock_no_such_function", False)
    lines = str(err.value).splitlines()
    assert "attach kprobe to irqlock_no_such_function" in lines[0]
    assert any("hit_kprobe" in line for line in lines[1:]), "libbpf's own log belongs in the message"


def test_verifier_rejection_carries_verifier_log(fixture: Fixture) -> None:
    # schedule() takes no argument: the fentry program's read of arg 0 is invalid.
    with pytest.raises(IrqlockError) as err:
        HitCounter("schedule", True)
    message = str(err.value)
    assert message.startswith("load BPF object hitcount")
    assert "hit_fentry" in message and len(message.splitlines()) > 3, message


def test_recursion_misses_are_read(fixture: Fixture) -> None:
    with HitCounter(SPIN_IRQSAVE, True) as counter:
        fixture.run("hold spin_irqsave 0 10 1")
        misses = counter.obj.recursion_misses()
    assert set(misses) == {"hit_fentry"}
    assert all(isinstance(v, int) and v >= 0 for v in misses.values())


def test_rodata_is_set_before_load(fixture: Fixture) -> None:
    with BpfObject.open("hitcount") as obj:
        obj.set_rodata(target_comm=b"abc", target_comm_len=3)
        obj.plan_function("hit", SPIN_IRQSAVE, True)
        obj.load()
        assert obj.read_global("target_comm_len", ".rodata") == 3
        with pytest.raises(IrqlockError):
            obj.set_rodata(target_comm_len=1)
