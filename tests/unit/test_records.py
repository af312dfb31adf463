"""docs/records.md, the record schema: every type the code emits is on it, and the check
the kernel tests make of every record catches what the page does not say."""

from __future__ import annotations

import re
from pathlib import Path

from irqlock.kernel.kmsg import KernelReport
from irqlock.tracers.findings import LockCycle, LockRef, OrderEdge
from tests.records import record_problems, schema

SRC = Path(__file__).resolve().parents[2] / "src" / "irqlock"
TYPE_LITERAL = re.compile(r'"type": "(\w+)"(?: if [^}]* else "(\w+)")?')


def test_every_type_the_code_emits_is_on_the_page() -> None:
    emitted = set()
    for path in SRC.rglob("*.py"):
        for match in TYPE_LITERAL.finditer(path.read_text()):
            emitted |= {name for name in match.groups() if name}
    assert "irq_still_disabled" in emitted and "lock_cycle" in emitted
    assert emitted - schema().keys() == set()


def test_the_page_says_which_fields_are_optional() -> None:
    stats = schema()["stats"]
    assert stats.fields["tool"] is False and stats.fields["edges"] is True
    assert schema()["lock"].nested["holders"].fields["first_stack"] is False


def cycle() -> LockCycle:
    a, b = LockRef(0x10, "fx_order_a"), LockRef(0x20, "fx_order_b")
    edges = [OrderEdge(held=x, acquired=y, pid=1, tgid=1, comm="t", held_stack=[],
                       acquire_stack=[]) for x, y in ((a, b), (b, a))]
    return LockCycle(locks=[a, b], edges=edges, also_class=True)


def test_records_made_by_the_code_match_the_page() -> None:
    report = KernelReport(kind="lockdep", message="m", time_ns=1, pid=None, comm=None, cpu=None)
    assert record_problems(cycle().to_json()) == []
    assert record_problems(report.to_json()) == []


def test_a_field_not_on_the_page_or_missing_is_named() -> None:
    record = cycle().to_json()
    record["surprise"] = 1
    del record["edges"][1]["comm"]
    assert record_problems(record) == ["lock_cycle.surprise is not in docs/records.md",
                                       "lock_cycle.edges[1].comm is missing"]
    assert record_problems({"type": "nonsense"}) == ["record type 'nonsense' is not in "
                                                     "docs/records.md"]
