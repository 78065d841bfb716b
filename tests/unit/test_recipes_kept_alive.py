"""Every recipe says what it shows and is run by some test, so none can rot unnoticed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.py"))
TESTS = ROOT / "tests"


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


def _recipes_reached_by_tests(tests: Path = TESTS) -> dict[str, list[str]]:
    """Recipe name -> the tests that call ``load_recipe(name)`` or ``recipe_path(name)``.

    Only a call of one of the two functions that import or hand over the recipe's file
    (``tests/support/recipe_files.py``), with the name as a literal, inside a test
    function or a fixture counts: a name in a string, a comment or a docstring does not.
    """
    reached: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in LOADERS
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    where = f"{path.name}::{function.name}"
                    reached.setdefault(node.args[0].value, []).append(where)
    return reached


LOADERS = frozenset({"load_recipe", "recipe_path"})


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_recipe_is_run_by_a_test(recipe: Path):
    users = _recipes_reached_by_tests().get(recipe.stem, [])
    assert users, (
        f"recipes/{recipe.name} is not run by any test: add one that calls "
        f"load_recipe({recipe.stem!r}) or runs recipe_path({recipe.stem!r})"
    )


def test_a_name_in_a_string_does_not_count(tmp_path: Path):
    (tmp_path / "test_mentions.py").write_text(
        "def test_x():\n    print('recipes/rerank_chain.py', 'rerank_chain')  # rerank_chain\n"
    )
    assert "rerank_chain" not in _recipes_reached_by_tests(tmp_path)
    (tmp_path / "test_calls.py").write_text("def test_y():\n    load_recipe('rerank_chain')\n")
    assert _recipes_reached_by_tests(tmp_path) == {"rerank_chain": ["test_calls.py::test_y"]}
