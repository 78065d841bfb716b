"""The one way tests reach a recipe: import it by file, or give its path to a process.

``tests/unit/test_recipes_kept_alive.py`` counts a recipe as run only where a test
calls :func:`load_recipe` or :func:`recipe_path` with the recipe's name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def recipe_path(name: str) -> Path:
    """The file of recipe ``name`` (``recipes/<name>.py``), which must exist."""
    path = RECIPES / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_recipe(name: str) -> ModuleType:
    """Import recipe ``name`` by file (``recipes/`` is not a package), once per session."""
    module_name = f"recipe_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, recipe_path(name))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and LangGraph look their module up
    spec.loader.exec_module(module)
    return module
