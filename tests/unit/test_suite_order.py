"""The suite's own order: unit tests, then the fuzz stage, then the integration tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from suite_order import stage

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("tests/unit/test_parse.py::test_grid", 0),
        ("tests/fuzz/test_batch_fuzz.py::test_rows", 1),
        ("tests/integration/test_scoring.py::test_greedy[a]", 2),
        ("tests/other/test_x.py::test_y", -1),
        ("tests/unit/test_x.py::test_y[integration]", 0),
    ],
)
def test_stage_of_a_node(nodeid: str, expected: int) -> None:
    """A test's stage is read from its folder, never from its name or parameters."""
    assert stage(nodeid) == expected


def test_collected_order_is_unit_fuzz_integration() -> None:
    """Named in the opposite order on the command line, the folders still run unit first."""
    named = [
        "tests/integration/test_special_tokens.py",
        "tests/fuzz",
        "tests/unit/test_sanitize.py",
    ]
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *named],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    folders = [
        line.split("/")[1]
        for line in listed.stdout.splitlines()
        if line.startswith("tests/") and "::" in line
    ]
    assert {"unit", "fuzz", "integration"} <= set(folders)
    order = {"unit": 0, "fuzz": 1, "integration": 2}
    stages = [order[f] for f in folders if f in order]
    assert stages == sorted(stages)
