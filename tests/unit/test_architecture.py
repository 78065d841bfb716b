"""The layout's rules, read from the source (docs/concepts.md draws them; CONTRIBUTING.md says them).

Every import counts: module level, function level and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("judge", "backends")
MAX_LINES = 500

FACES = ("judge.cli", "judge.batch", "judge.integrations", "judge.rl", "judge.rerank")
"""What users call; they may import the Runnable and the core, never the other way."""

TAKE_ANY_JUDGE = ("judge.batch", "judge.integrations", "judge.rl", "judge.rerank")
"""Faces that take any ``JudgeRunnable`` and so never import the Runnable class (the
command line builds a judge, so it does)."""

LAZY_ALIASES = {("backends", "judge.testing.fake")}
"""Lazy re-exports by name (``__getattr__`` tables) that cross the rules on purpose:
``from backends import FakeBackend`` keeps working while FakeBackend lives with the
test tools. They are strings in a table, not imports, and are listed here to be seen."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports_of(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """``(module imported, names taken from it, line)`` for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [alias.name for alias in node.names], node.lineno


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import mod`` counts as pkg.mod)."""
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, names, _ in imports_of(name, path):
            if target not in known:
                continue
            for taken in names:
                if f"{target}.{taken}" in known:
                    edges[name].add(f"{target}.{taken}")
                    break
            else:
                edges[name].add(target)
            edges[name].discard(name)
    return edges


def test_the_walk_sees_every_module():
    found = modules()
    assert {"judge.runnable", "judge.core.pipeline", "backends.transport"} <= set(found)


def test_no_import_circles():
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == []


def test_dependencies_point_one_way():
    wrong: list[str] = []
    for name, path in modules().items():
        for target, _, line in imports_of(name, path):
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if name.startswith("backends") and target.split(".")[0] == "judge":
                wrong.append(f"{where}: backends never import judge")
            if name.startswith("judge.core") and (
                target == "judge.runnable" or target.startswith(FACES)
            ):
                wrong.append(f"{where}: the core imports no Runnable and no face")
            if name.startswith(TAKE_ANY_JUDGE) and target == "judge.runnable":
                wrong.append(f"{where}: faces take any JudgeRunnable, not the Runnable class")
    assert wrong == []


def test_no_private_name_is_imported_across_modules():
    found = [
        f"{path.relative_to(ROOT)}:{line}: {target}.{taken}"
        for name, path in modules().items()
        for target, names, line in imports_of(name, path)
        if target.split(".")[0] in PACKAGES
        for taken in names
        if taken.startswith("_") and not taken.startswith("__")
    ]
    assert found == []


def test_one_http_client():
    users = sorted(
        name
        for name, path in modules().items()
        for target, _, _ in imports_of(name, path)
        if target.split(".")[0] in ("aiohttp", "httpx", "requests", "urllib3")
        or target in ("urllib.request", "http.client")
    )
    assert set(users) <= {"backends.transport"}, users


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_are_small(name: str):
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: it has more than one job"


def test_lazy_aliases_are_the_listed_ones():
    found = set()
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if name.startswith("backends"):
            for target in ("judge.testing.fake",):
                if target in text:
                    found.add((name, target))
    assert found <= LAZY_ALIASES
