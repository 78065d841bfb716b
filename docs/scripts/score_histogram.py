"""Make docs/images/score_histogram.png from a real ``thinking-judge batch`` run.

The run scores 48 question/response pairs (a third of them with the example chart)
with ``--constrained --expected-score`` against a local vLLM server (started here with
``VLLMServerBackend.launch``) serving the tiny random-weight test model that
:func:`judge.testing.build_tiny_model` builds: the pipeline is real, the scores are
noise. Needs the ``cpu`` and ``docs`` extras::

    python docs/scripts/score_histogram.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from examples import QUESTION, draw_bar_chart  # noqa: E402

RESPONSES = [
    "<think>{a} plus {b} is {c}.</think><answer>{c}</answer>",
    "<think>Adding {a} and {b}: {a} + {b} = {c}. Check: {c} - {b} = {a}.</think>"
    "<answer>{c}</answer>",
    "<think>{a} + {b} is probably {d}, since both are small.</think><answer>{d}</answer>",
    "<think>I will guess.</think><answer>{d}</answer>",
]


def inputs(chart: Path) -> list[dict[str, object]]:
    """48 records: arithmetic questions with sound and flawed reasoning, and chart ones."""
    records: list[dict[str, object]] = []
    for i in range(32):
        a, b = 3 + i, 11 + 2 * i
        response = RESPONSES[i % len(RESPONSES)].format(a=a, b=b, c=a + b, d=a + b + 1 + i % 3)
        records.append({"id": f"sum-{i}", "question": f"What is {a} + {b}?", "response": response})
    for i in range(16):
        good = i % 2 == 0
        response = (
            "<think>A is 4, B is 9, C is 6. The most is B (9), the least is A (4); "
            "9 - 4 = 5.</think><answer>B, 5 more</answer>"
            if good
            else "<think>B is in the middle, so it is the largest. B is 10 and A is 5, "
            "so 10 - 5 = 5.</think><answer>B, 5 more</answer>"
        )
        records.append(
            {"id": f"chart-{i}", "question": QUESTION, "response": response, "image": str(chart)}
        )
    return records


def main() -> None:
    """Build the model, run the batch, draw the histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from judge.testing import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="score-histogram-"))
    model = build_tiny_model(work / "tiny-qwen2.5-vl")
    chart = draw_bar_chart(work / "chart.png")
    source = work / "inputs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in inputs(chart)), encoding="utf-8")
    results = work / "scores.jsonl"
    for key, value in {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}.items():
        os.environ.setdefault(key, value)
    from backends.vllm_server import VLLMServerBackend

    with VLLMServerBackend.launch(
        str(model),
        max_model_len=4096,
        dtype="bfloat16",
        enforce_eager=True,
        skip_mm_profiling=True,
        limit_mm_per_prompt={"image": 1, "video": 0},
    ) as server:
        command = [
            sys.executable, "-m", "judge.cli", "batch", str(source), "-o", str(results),
            "--base-url", str(server.base_url), "--constrained", "--expected-score",
            "--progress", "off",
        ]  # fmt: skip
        print("$ thinking-judge", " ".join(command[3:]), file=sys.stderr)
        subprocess.run(command, check=True)
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    greedy = [r["score"] for r in rows if r.get("score") is not None]
    expected = [r["expected_score"] for r in rows if r.get("expected_score") is not None]
    print(f"{len(rows)} results: {len(greedy)} scores, {len(expected)} expected scores")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    bins = [i / 10 - 0.05 for i in range(12)]
    axes[0].hist(greedy, bins=bins, color="#3f6fb5", edgecolor="white")
    axes[0].set_title("score (constrained greedy answer)")
    axes[1].hist(expected, bins=[i / 40 for i in range(41)], color="#c2603a", edgecolor="white")
    axes[1].set_title("expected_score (from logprobs)")
    for axis in axes:
        axis.set_xlim(-0.05, 1.05)
        axis.set_xlabel("thinking score")
    axes[0].set_ylabel("judgments")
    fig.suptitle(
        f"thinking-judge batch, {len(rows)} judgments, tiny RANDOM-WEIGHT model: shape only",
        fontsize=10,
    )
    fig.tight_layout()
    out = DOCS / "images" / "score_histogram.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    main()
