"""The package reads like a map: layers that import only downward (imports inside functions count), no
import cycle, no private name used outside its module, no file over 500 lines, and every relative
import resolves to a module of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "headstart"

# From the bottom up; a module may import its own layer and the layers below. A name matches a module
# or a package (the longest match wins: zoo.card sits below zoo).
LAYERS = [
    ["errors", "console", "fileio", "runtime", "rundir", "onnxio", "launch", "schemas"],  # core
    ["zoo.card", "zoo.builtin", "data", "text.words", "text.vectors", "text.options", "cache", "options"],  # data
    ["zoo.build", "zoo.weights", "surgery", "heads", "fuse", "text", "darknet"],  # networks
    ["zoo"],  # finding cards, the user's zoo
    ["strategies", "probe", "features", "engine", "auto", "adapt"],  # the engine and what decides
    ["classify", "run", "detection"],  # tasks
    ["rank", "advise", "conditions", "baselines", "pretrain", "export", "lr_find", "report"],  # commands
    ["api", "cli", "demo"],  # dispatch
]
TASKS = ("classify", "detection")
KNOWN_LONG: set[str] = set()  # files still to split; none left


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = modules()


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import of the package in `name`,
    at any depth of the file."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in MODULES:
                    found.append((sub, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("headstart"):
            raise AssertionError(f"{name}:{node.lineno} imports its own package absolutely; use a relative import")
    return found


def layer(name: str) -> int:
    parts = name.split(".") if name else []
    for k in range(len(parts), 0, -1):
        for i, names in enumerate(LAYERS):
            if ".".join(parts[:k]) in names:
                return i
    return -1  # the package itself (__version__)


def test_every_relative_import_resolves():
    missing = [f"{m}: {t}" for m in MODULES for t, _, _ in imports(m) if t not in MODULES]
    assert not missing, missing


def test_layers_import_only_downward():
    unplaced = [m for m in MODULES if m and layer(m) < 0]
    assert not unplaced, f"modules in no layer: {unplaced}"
    upward = [f"{m}:{line} -> {t}" for m in MODULES for t, _, line in imports(m) if t in MODULES and layer(t) > layer(m)]
    assert not upward, upward
    into_tasks = [f"{m}:{line} -> {t}" for m in MODULES for t, _, line in imports(m)
                  if t.split(".")[0] in TASKS and layer(m) < layer(t) and t.split(".")[0] != m.split(".")[0]]
    assert not into_tasks, into_tasks


def test_no_import_cycle():
    graph = {m: {t for t, _, _ in imports(m) if t in MODULES and t != m} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_private_name_is_used_outside_its_module():
    used = [f"{m}:{line} takes {n} from {t}" for m in MODULES for t, n, line in imports(m)
            if n and n.startswith("_") and not n.startswith("__")]
    assert not used, used


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_file_over_500_lines(name):
    n = len(MODULES[name].read_text().splitlines())
    if name in KNOWN_LONG:
        assert n > 500, f"{name} is down to {n} lines: take it off KNOWN_LONG"
        return
    assert n <= 500, f"{MODULES[name].relative_to(ROOT.parent)} has {n} lines; split it (at most 500)"
