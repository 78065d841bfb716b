"""The order the suite runs in: the fast tests first, the real vLLM server last."""

from __future__ import annotations

STAGES = ("unit", "fuzz", "integration")
"""Test folders in the order they run."""


def stage(nodeid: str) -> int:
    """The position of a test's folder in :data:`STAGES` (other folders run first).

    Args:
        nodeid: pytest's node id, such as ``tests/unit/test_parse.py::test_x``.

    Returns:
        0 for ``unit``, 1 for ``fuzz``, 2 for ``integration``, -1 for anything else.
    """
    parts = nodeid.split("::", 1)[0].split("/")
    for position, name in enumerate(STAGES):
        if name in parts:
            return position
    return -1
