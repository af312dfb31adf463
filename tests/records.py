"""docs/records.md read as a schema: every record type, its fields, which are optional; and
the check of one record against it (the kernel tests check every record a tool prints)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

RECORDS_DOC = Path(__file__).resolve().parents[1] / "docs" / "records.md"
_HEADING = re.compile(r"^### `(\w+)`\s*$")
_ROW = re.compile(r"^\| `([\w.\[\]]+)` \|(.*)$")
_SAME_AS = re.compile(r"^The fields of `(\w+)`\.")


@dataclass
class Shape:
    """The fields of a record (or of an object in one): name -> optional, and the shapes of
    the objects (or objects in lists) a field holds, where the page says."""

    fields: dict[str, bool] = field(default_factory=dict)
    nested: dict[str, Shape] = field(default_factory=dict)

    def add(self, path: str, optional: bool) -> None:
        """``holders[].pid`` is field pid of the objects in list holders; ``hold_ns.max``,
        field max of the object hold_ns."""
        parts = re.split(r"\[\]\.|\.", path, maxsplit=1)
        if len(parts) == 1:
            self.fields[path] = optional
        else:
            self.nested.setdefault(parts[0], Shape()).add(parts[1], optional)


@cache
def schema() -> dict[str, Shape]:
    """type -> Shape, from docs/records.md."""
    shapes: dict[str, Shape] = {}
    current: Shape | None = None
    for line in RECORDS_DOC.read_text().splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = shapes.setdefault(heading.group(1), Shape())
            continue
        same = _SAME_AS.match(line)
        if same and current is not None:
            source = shapes[same.group(1)]
            current.fields, current.nested = dict(source.fields), dict(source.nested)
            continue
        row = _ROW.match(line)
        if row and current is not None:
            current.add(row.group(1), "*optional*" in row.group(2))
    return shapes


def _problems(value: dict[str, Any], shape: Shape, where: str) -> list[str]:
    found = []
    for name in value.keys() - shape.fields.keys() - {"type"}:
        found.append(f"{where}.{name} is not in docs/records.md")
    for name, optional in shape.fields.items():
        if name not in value and not optional:
            found.append(f"{where}.{name} is missing")
    for name, inner in shape.nested.items():
        item = value.get(name)
        items = item if isinstance(item, list) else [item] if isinstance(item, dict) else []
        for i, element in enumerate(items):
            if isinstance(element, dict):
                found += _problems(element, inner, f"{where}.{name}[{i}]")
    return found


def record_problems(record: dict[str, Any]) -> list[str]:
    """How a record differs from docs/records.md ([] if it matches)."""
    kind = record.get("type")
    shape = schema().get(str(kind))
    if shape is None:
        return [f"record type {kind!r} is not in docs/records.md"]
    return _problems(record, shape, str(kind))
