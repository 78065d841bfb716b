"""Headless chromium for the tests that look at pages as a reader does (1280 px wide).

Debian's ``chromium`` package (``apt-get install -y chromium``). Where it is absent the
tests that need it skip, saying so, unless ``THINKING_JUDGE_REQUIRE_BROWSER=1`` (CI sets
it), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

WIDTH = 1280
HEIGHT = 2000
REQUIRE = "THINKING_JUDGE_REQUIRE_BROWSER"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    """The chromium executable; skips the test (or fails it, when required) without one."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no headless chromium (Debian: apt-get install -y chromium)"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}, and {REQUIRE}=1")
    pytest.skip(reason)


def _run(arguments: list[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def screenshot(page: Path, png: Path, *, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A screenshot of the local ``page`` in a ``width`` x ``height`` window."""
    _run(
        [f"--window-size={width},{height}", f"--screenshot={png}", page.absolute().as_uri()],
        timeout=120,
    )
    assert png.is_file(), f"chromium wrote no screenshot of {page}"
    return png


def dump_dom(page: Path, *, budget_ms: int = 30_000, timeout: float = 180) -> str:
    """The DOM of the local ``page`` once its scripts have run (virtual time ``budget_ms``).

    Files next to ``page`` may be read by its scripts (``--allow-file-access-from-files``).
    """
    return _run(
        [
            f"--window-size={WIDTH + 120},{HEIGHT + 100}",
            "--allow-file-access-from-files",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            page.absolute().as_uri(),
        ],
        timeout=timeout,
    )


def pixels_near(png: Path, color: str, tolerance: int = 24) -> int:
    """How many pixels of ``png`` are within ``tolerance`` of ``color`` (``#rrggbb``)."""
    from PIL import Image

    match = re.fullmatch(r"#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})", color.lower())
    assert match is not None, color
    target = [int(part, 16) for part in match.groups()]
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        return sum(
            count
            for count, pixel in rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, target, strict=True))
        )


def non_white_share(png: Path) -> float:
    """The share of ``png``'s pixels that are not (near) white."""
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    return 1 - sum(histogram[245:]) / (grey.width * grey.height)
