"""Every recipe says what it shows and is run by some test, so none can rot unnoticed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.py"))
TESTS = ROOT / "tests"
THIS = Path(__file__).resolve()


def test_there_are_recipes():
    assert RECIPES, "no recipes/*.py found"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_recipe_has_a_header_saying_what_it_shows(recipe: Path):
    docstring = ast.get_docstring(ast.parse(recipe.read_text(encoding="utf-8")))
    assert docstring, f"{recipe.name} has no module docstring"
    summary, _, body = docstring.partition("\n")
    assert len(summary.split()) >= 5, f"{recipe.name}: the first line should say what it does"
    # ... and how to run it: a command line in the header.
    assert re.search(rf"python (recipes/)?{re.escape(recipe.name)}", body), (
        f"{recipe.name}: the header should show how to run it (python recipes/{recipe.name})"
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_recipe_is_run_by_a_test(recipe: Path):
    name = recipe.stem
    pattern = re.compile(rf"""["'/]{re.escape(name)}(\.py)?["']""")
    users = [
        path.relative_to(ROOT)
        for path in TESTS.rglob("test_*.py")
        if path.resolve() != THIS and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert users, f"recipes/{recipe.name} is not used by any test: add one that runs it"
