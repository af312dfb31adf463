"""Recognizing the kernel's own hang and lockup reports in /dev/kmsg records."""

from __future__ import annotations

from irqlock.kernel.kmsg import parse_record


def test_hung_task_report() -> None:
    report = parse_record("3,1234,56789012,-;INFO: task fx_hung_waiter:321 blocked for more "
                          "than 2 seconds.")
    assert report is not None
    assert (report.kind, report.pid, report.comm, report.time_ns) == \
        ("hung_task", 321, "fx_hung_waiter", 56789012000)


def test_soft_lockup_names_cpu_and_task() -> None:
    report = parse_record("0,7,100,-;watchdog: BUG: soft lockup - CPU#1 stuck for 22s! "
                          "[kworker/1:2:99]")
    assert report is not None
    assert (report.kind, report.cpu, report.pid, report.comm) == ("soft_lockup", 1, 99, "kworker/1:2")


def test_lockdep_and_rcu_stall() -> None:
    lockdep = parse_record("4,8,100,-;WARNING: possible circular locking dependency detected")
    stall = parse_record("3,9,100,-;rcu: INFO: rcu_preempt self-detected stall on CPU")
    assert lockdep is not None and lockdep.kind == "lockdep"
    assert stall is not None and stall.kind == "rcu_stall"


def test_other_messages_and_bad_records_are_ignored() -> None:
    assert parse_record("6,10,100,-;irqlock_fixture: loaded, irq 41") is None
    assert parse_record("no header at all") is None
    assert parse_record("6,10,notanumber,-;INFO: task a:1 blocked for more than 2 seconds.") is None
