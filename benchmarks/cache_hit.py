"""The cache's hit path: judgments per second served from the cache vs judged again.

Measured side by side, in one run, on the same inputs (a question, a response and, with
``--image``, a small PNG), with ``FakeBackend`` as the model (it answers at once, so a
miss costs only the judge's own work: render, hash, look up, parse, score, store):

(a) no cache: ``judge.batch(chunk)`` on a judge without a cache, the floor of a miss;
(b) misses: the same on a judge with a fresh, empty cache (key, lookup, model call,
    store of the completion, judgment);
(c) hits: the same inputs again, every completion answered from the cache file
    (``backends.caching.CachingBackend``), then parsed and scored as usual.

Each is run ``--repeat`` times, interleaved, keeping the median. Against a real model a
miss costs a model call (tens of milliseconds to seconds), so (c) over a real miss is
far larger than the ratio printed here. Run::

    python benchmarks/cache_hit.py --n 5000
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout works too

from PIL import Image

from backends import FakeBackend
from judge import JudgmentCache, ThinkingRewardJudge


def make_inputs(n: int, *, image: bool) -> list[dict[str, Any]]:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    items: list[dict[str, Any]] = [
        {
            "question": f"Which bar is the tallest? (item {i})",
            "response": f"<think>Bar {i % 7} reaches {i % 11}; it is the tallest.</think>"
            f"<answer>{i % 7}</answer>",
        }
        for i in range(n)
    ]
    if image:
        for item in items:
            item["image"] = png.getvalue()
    return items


def run(judge: ThinkingRewardJudge, items: list[dict[str, Any]], chunk: int) -> float:
    """Judgments per second over ``items``, ``chunk`` inputs per batch call."""
    started = time.perf_counter()
    for start in range(0, len(items), chunk):
        scores = judge.batch(items[start : start + chunk])
        assert all(score.ok for score in scores)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="inputs per run (5000)")
    parser.add_argument("--chunk", type=int, default=256, help="inputs per batch call (256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, median kept (3)")
    parser.add_argument("--image", action="store_true", help="a 64x64 PNG with every input")
    args = parser.parse_args()

    items = make_inputs(args.n, image=args.image)
    floor, misses, hits = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeat):
            plain = ThinkingRewardJudge(backend=FakeBackend(scores=[0.7]))
            floor.append(run(plain, items, args.chunk))
            cache = JudgmentCache(Path(folder) / f"run{repeat}.sqlite")
            backend = FakeBackend(scores=[0.7])
            cached = ThinkingRewardJudge(backend=backend, cache=cache)
            misses.append(run(cached, items, args.chunk))
            sent = len(backend.requests)
            hits.append(run(cached, items, args.chunk))
            assert len(backend.requests) == sent, "a hit reached the backend"
            assert cache.stats.hits == args.n
            cache.close()

    a, b, c = (statistics.median(x) for x in (floor, misses, hits))
    print(
        f"machine: {platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}; n={args.n}, chunk={args.chunk}, "
        f"image={'64x64 PNG' if args.image else 'none'}, median of {args.repeat}"
    )
    print(f"{'path':<34}{'judgments/s':>14}{'us/judgment':>14}{'vs (a)':>9}")
    for name, rate in (
        ("(a) no cache (FakeBackend)", a),
        ("(b) cache misses (FakeBackend)", b),
        ("(c) cache hits", c),
    ):
        print(f"{name:<34}{rate:>14,.0f}{1e6 / rate:>14.1f}{rate / a:>8.2f}x")
    print(f"hits / misses: {c / b:.2f}x")


if __name__ == "__main__":
    main()
