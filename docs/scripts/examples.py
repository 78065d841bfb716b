"""The worked example of docs/examples/: a bar chart, a question, two responses.

``draw_bar_chart`` draws the chart with Pillow (the tests draw it too, and run the
documented commands on it). Run as a script, it writes ``docs/examples/chart.png`` and
the two response files, starts a vLLM server on the tiny random-weight test model, and
prints what ``thinking-judge score`` says about each response (the outputs shown on the
page)::

    python docs/scripts/examples.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

VALUES = {"A": 4, "B": 9, "C": 6}
"""Units sold per product: what the chart shows."""

QUESTION = (
    "The chart shows how many units of three products were sold. Which product sold "
    "the most, and how many more units did it sell than the product that sold the least?"
)

SOUND = (
    "<think>Reading the bars against the axis: A reaches 4, B reaches 9 and C reaches 6. "
    "The largest value is 9, so B sold the most. The smallest value is 4, so A sold the "
    "least. The difference is 9 - 4 = 5.</think><answer>B, 5 more units than A</answer>"
)
"""Reads every bar, names the extremes, subtracts: sound reasoning, right answer."""

FLAWED = (
    "<think>B is the middle bar, and the middle bar is always the largest, so B sold the "
    "most. A comes first, so it sold the least. B looks like 10 and A like 5, so the "
    "difference is 10 - 5 = 5.</think><answer>B, 5 more units than A</answer>"
)
"""The same final answer, reached by invalid rules and misread values."""


def draw_bar_chart(path: Path) -> Path:
    """Draw the example's bar chart (480 x 320 PNG) at ``path`` and return the path."""
    width, height, left, bottom, top = 480, 320, 60, 270, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    scale = (bottom - top) / 10
    for tick in range(0, 11, 2):  # horizontal grid and axis labels
        y = bottom - tick * scale
        draw.line([(left, y), (width - 20, y)], fill=(220, 220, 220))
        draw.text((left - 25, y - 6), str(tick), fill="black", font=font)
    draw.line([(left, top), (left, bottom)], fill="black", width=2)
    draw.line([(left, bottom), (width - 20, bottom)], fill="black", width=2)
    colors = {"A": (66, 111, 181), "B": (194, 96, 58), "C": (90, 160, 90)}
    for i, (name, value) in enumerate(VALUES.items()):
        x0 = left + 40 + i * 130
        draw.rectangle([(x0, bottom - value * scale), (x0 + 80, bottom)], fill=colors[name])
        draw.text((x0 + 36, bottom + 8), name, fill="black", font=font)
    draw.text((left, 12), "Units sold", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def main() -> None:
    """Write the example files and print the judge's outputs on the tiny model."""
    import os

    for key, value in {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}.items():
        os.environ.setdefault(key, value)
    from backends.vllm_server import VLLMServerBackend
    from judge.testing import build_tiny_model

    chart = draw_bar_chart(EXAMPLES / "chart.png")
    (EXAMPLES / "question.txt").write_text(QUESTION + "\n", encoding="utf-8")
    (EXAMPLES / "sound.txt").write_text(SOUND + "\n", encoding="utf-8")
    (EXAMPLES / "flawed.txt").write_text(FLAWED + "\n", encoding="utf-8")
    model = build_tiny_model(Path.home() / ".cache" / "thinking-reward-judge" / "tiny-qwen2.5-vl")
    with VLLMServerBackend.launch(
        str(model),
        max_model_len=4096,
        dtype="bfloat16",
        enforce_eager=True,
        skip_mm_profiling=True,
        limit_mm_per_prompt={"image": 1, "video": 0},
    ) as server:
        for name, response in (("sound", SOUND), ("flawed", FLAWED)):
            command = [
                "thinking-judge", "score", "--base-url", "http://127.0.0.1:8000/v1",
                "--constrained", "--expected-score", "--question", QUESTION,
                "--image", "docs/examples/chart.png", "--response", response,
            ]  # fmt: skip
            shown = command.copy()
            command[3] = str(server.base_url)
            command[0:1] = [sys.executable, "-m", "judge.cli"]
            command[command.index("docs/examples/chart.png")] = str(chart)
            done = subprocess.run(command, capture_output=True, text=True)
            print(f"== {name}: exit {done.returncode}\n$ {' '.join(shown[:8])} ...")
            print(done.stdout, end="")
            print("\n".join(line for line in done.stderr.splitlines() if "thinking-judge" in line))


if __name__ == "__main__":
    main()
