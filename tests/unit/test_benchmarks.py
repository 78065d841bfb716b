"""The benchmark runner keeps working: its smallest section prints a table (no timing checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def test_quick_overhead_section_prints_one_table():
    out = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--quick",
            "--sections",
            "overhead",
            "--n",
            "12",  # not a multiple of the groups of 8: a last, partial group
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("section "))
    assert lines[header + 1].startswith("-")
    rows = [line for line in lines[header + 2 :] if line.startswith("overhead ")]
    assert len(rows) == 5
    assert all(" CPU " in row for row in rows)
    assert sum("FakeBackend" in row for row in rows) == 4
    assert "backends.retries vs tenacity around it" in rows[-1]


def test_unknown_section_is_a_usage_error():
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--sections", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown sections" in done.stderr
