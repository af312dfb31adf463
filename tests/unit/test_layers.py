"""irqlock's import layers (CONTRIBUTING.md): a module imports from its own layer or below,
never from above, so each layer can be read, tested and changed without those on top."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Lowest first; a module belongs to the longest prefix listed.
LAYERS: list[tuple[str, ...]] = [
    # 0: what everything may use: errors, units, defaults, the headers' numbers, libbpf
    ("irqlock", "irqlock.errors", "irqlock.units", "irqlock.defaults", "irqlock.bpf",
     "irqlock.bpf.constants", "irqlock.bpf.libbpf", "irqlock.kernel"),
    # 1: pure logic and facts: graphs and histograms, the running kernel, output formats
    ("irqlock.analysis", "irqlock.kernel.", "irqlock.report", "irqlock.session",
     "irqlock.client", "irqlock.bpf.btf"),
    # 2: BPF objects: open, configure, load, attach, read
    ("irqlock.bpf.loader", "irqlock.bpf.tracer", "irqlock.bpf.hitcount"),
    # 3: one tracer per tool, its config and validation
    ("irqlock.tracers",),
    # 4: what combines tracers
    ("irqlock.check", "irqlock.tracerset"),
    # 5: what prints and runs them
    ("irqlock.commands",),
    # 6: the command line
    ("irqlock.cli", "irqlock.__main__"),
]


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix.endswith(".") and module.startswith(prefix)) \
                or module.startswith(prefix + ".")
            if matches and len(prefix) > best:
                best, layer = len(prefix), index
    assert layer >= 0, f"{module} is in no layer: add it to LAYERS and CONTRIBUTING.md"
    return layer


def module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(SRC).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every irqlock module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("irqlock"):
            for alias in node.names:  # `from irqlock.kernel import perf` imports a module
                submodule = f"{node.module}.{alias.name}"
                is_module = any((SRC / submodule.replace(".", "/")).with_suffix(s).exists()
                                for s in (".py", ""))
                names.add(submodule if is_module else node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("irqlock")}
    return names


def test_layer_of_takes_the_longest_prefix() -> None:
    assert layer_of("irqlock.bpf.loader") == 2
    assert layer_of("irqlock.bpf.constants") == 0
    assert layer_of("irqlock.kernel.features") == 1
    assert layer_of("irqlock.tracers.locks") == 3


def test_no_import_runs_upward() -> None:
    upward = []
    for path in sorted((SRC / "irqlock").rglob("*.py")):
        module = module_name(path)
        for name in sorted(imported(path)):
            if layer_of(name) > layer_of(module):
                upward.append(f"{module} (layer {layer_of(module)}) imports {name} "
                              f"(layer {layer_of(name)})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from irqlock.commands import locks\n")
    assert any(layer_of(name) > layer_of("irqlock.tracers.probe") for name in imported(source))
