"""What users keep and look at: SQLite recordings, console summaries, HTML reports, metrics."""

from typing import Any


def cycle_lock_label(cycle: dict[str, Any], lock: dict[str, Any]) -> str:
    """How a lock of a lock_cycle record is shown: its class in a cycle between classes."""
    if cycle.get("level") == "class" and lock.get("class"):
        return str(lock["class"])
    return str(lock["name"] or lock["addr"])


def cycle_edge_labels(cycle: dict[str, Any], edge: dict[str, Any]) -> tuple[str, str]:
    """(held, acquired) of one edge of a lock_cycle record, shown as cycle_lock_label does."""
    if cycle.get("level") == "class" and edge.get("from_class") and edge.get("to_class"):
        return str(edge["from_class"]), str(edge["to_class"])
    return str(edge["from_name"] or edge["from"]), str(edge["to_name"] or edge["to"])
