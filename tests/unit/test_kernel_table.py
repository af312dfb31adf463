"""docs/kernels.md is what scripts/kernel_table.py renders from the kept check records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def kernel_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernel_table", ROOT / "scripts" / "kernel_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kernel_table", module)
    spec.loader.exec_module(module)
    return module


def test_table_is_rendered_from_the_records() -> None:
    table = kernel_table()
    records = table.load_records()
    assert {"stock", "rt", "cloud", "6.12", "6.12-rt", "6.12-cloud"} <= set(records)
    assert table.TABLE.read_text() == table.render(records), \
        "docs/kernels.md differs from its records: run scripts/kernel_table.py --render"


def test_every_record_plans_every_tool() -> None:
    for name, record in kernel_table().load_records().items():
        assert {p["tool"] for p in record["plan"]} == set(kernel_table().TOOLS), name
        assert record["tested"], name
