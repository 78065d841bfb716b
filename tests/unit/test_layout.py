"""The test tree's own rules."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_names():
    # pytest's default (prepend) import mode imports test modules by their base name:
    # two files of one name in unit/ and integration/ stop the whole run at collection.
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
