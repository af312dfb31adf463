"""Units a reader can hold in their head (CONTRIBUTING.md): no source file (Python, BPF C) over
600 lines, no function over 60."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "irqlock"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60
BPF = SRC / "bpf"
GENERATED = {"vmlinux.h"}  # bpftool's dump of the kernel's types


def bpf_sources() -> list[Path]:
    return [p for pattern in ("*.bpf.c", "*.h") for p in BPF.glob(pattern)
            if p.name not in GENERATED]


def c_functions(text: str) -> dict[str, int]:
    """Kernel style: a function's body opens with "{" alone at column 0 and ends with "}"
    there; its signature starts at the last line before that which is not indented."""
    lines, found = text.splitlines(), {}
    for i, line in enumerate(lines):
        if line != "{":
            continue
        start = i - 1
        while start > 0 and lines[start][:1] in ("\t", " "):
            start -= 1
        end = next(j for j in range(i, len(lines)) if lines[j].startswith("}"))
        name = re.search(r"(\w+)\s*\(", lines[start])
        found[name.group(1) if name else lines[start]] = end - start + 1
    return found


def test_no_python_file_is_over_the_limit() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"over {MAX_FILE_LINES} lines: {long}"


def test_no_bpf_source_is_over_the_limit() -> None:
    long = {p.name: n for p in bpf_sources()
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"over {MAX_FILE_LINES} lines: {long}"


def test_no_bpf_function_is_over_the_limit() -> None:
    long = {f"{p.name}:{name}": n for p in bpf_sources()
            for name, n in c_functions(p.read_text()).items() if n > MAX_FUNCTION_LINES}
    assert not long, f"over {MAX_FUNCTION_LINES} lines: {long}"


def test_c_functions_are_found() -> None:
    text = "static int f(int a,\n\t      int b)\n{\n\treturn a;\n}\n\nint g(void)\n{\n}\n"
    assert c_functions(text) == {"f": 5, "g": 3}


def test_no_function_is_over_the_limit() -> None:
    long = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = lines
    assert not long, f"over {MAX_FUNCTION_LINES} lines: {long}"
